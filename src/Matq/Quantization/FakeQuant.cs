// Contract: fake quantization with the straight-through estimator: forward = dequant(quant(x)) (optionally through
// a nested slice to r bits), bit-identical to the scalar kernels; backward passes the gradient through round and
// slice (SteMode.PassThrough for weights by default, SteMode.ClipMask zeroes it where the c-bit quantizer clipped).
// x is [out, in]; α and z are [out|1, nGroups]; the computation is float32, the result has x's dtype.
using Matq.Kernels.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>STE fake quantization, plain and nested (Matryoshka).</summary>
public static class FakeQuant
{
    /// <summary>Fake-quantizes weights [out, in] with parameters computed (without gradient) from the weights.</summary>
    public static Tensor Apply(Tensor w, QuantSpec spec, SteMode mode = SteMode.PassThrough) =>
        ApplyNested(w, spec, spec?.Bits ?? 0, extraPrecision: false, mode);

    /// <summary>Fake-quantizes x [out, in] with given α and z [out|1, nGroups] at <paramref name="bits"/>.</summary>
    public static Tensor Apply(Tensor x, Tensor scales, Tensor zeros, int groupSize, int bits, SteMode mode = SteMode.PassThrough) =>
        ApplyNested(x, scales, zeros, groupSize, bits, bits, extraPrecision: false, mode);

    /// <summary>Quantize to spec.Bits (= c) with parameters from w, slice to r bits, dequantize with the master α, z.</summary>
    public static Tensor ApplyNested(Tensor w, QuantSpec spec, int sliceBits, bool extraPrecision = false, SteMode mode = SteMode.PassThrough)
    {
        ArgumentNullException.ThrowIfNull(spec);
        using var scope = NewDisposeScope();
        (Tensor scales, Tensor zeros) = TensorAffineQuantizer.ComputeParams(w, spec);
        int g = spec.EffectiveGroupSize(checked((int)w.shape[1]));
        return ApplyNested(w, scales, zeros, g, spec.Bits, sliceBits, extraPrecision, mode).MoveToOuterDisposeScope();
    }

    /// <summary>x [out, in] → α·(S(q, r)·2^(c−r) − z) with q = clamp(round(x/α) + z, 0, 2^c − 1); S unclamped at the
    /// top when <paramref name="extraPrecision"/>. r = c gives plain fake quantization.</summary>
    public static Tensor ApplyNested(Tensor x, Tensor scales, Tensor zeros, int groupSize, int masterBits, int sliceBits,
        bool extraPrecision = false, SteMode mode = SteMode.PassThrough)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        GroupLayout.CheckMatrix(x, nameof(x));
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(nameof(mode));
        int k = masterBits - sliceBits, qmax = (1 << masterBits) - 1, top = (1 << sliceBits) - 1;
        ScalarType dtype = x.dtype;

        Tensor Forward(Tensor v)
        {
            long cols = v.shape[1];
            Tensor a = GroupLayout.Expand(scales.to(ScalarType.Float32), groupSize, cols);
            Tensor z = GroupLayout.Expand(zeros.to(ScalarType.Float32), groupSize, cols);
            Tensor q = v.to(ScalarType.Float32).div(a).round().add(z).clamp(0, qmax);
            if (k > 0)
            {
                // ⌊q/2^k + ½⌋ is exact in float32 for q ≤ 255 (power-of-two division, small integers)
                Tensor s = q.div(1 << k).add(0.5).floor();
                if (!extraPrecision) s = s.clamp_max(top);
                q = s.mul(1 << k);
            }
            return q.sub(z).mul(a).to(dtype);
        }

        Tensor ClipMask(Tensor v)
        {
            long cols = v.shape[1];
            Tensor a = GroupLayout.Expand(scales.to(ScalarType.Float32), groupSize, cols);
            Tensor z = GroupLayout.Expand(zeros.to(ScalarType.Float32), groupSize, cols);
            Tensor u = v.to(ScalarType.Float32).div(a).round().add(z);
            return u.ge(0).logical_and(u.le(qmax));
        }

        return StraightThrough.Apply(x, Forward, mode == SteMode.ClipMask ? ClipMask : null);
    }
}
