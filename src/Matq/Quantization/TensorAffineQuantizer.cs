// Contract: tensor path of the affine quantizer; equals Matq.Kernels.Quantization.AffineQuantizer exactly
// (same float32 ops, half-to-even rounding, zero-inclusive range, α floor MinScale). Weights are [out, in];
// scales and zeros are float32 [out, nGroups] (zeros integer-valued); codes are uint8 [out, in].
using Matq.Kernels.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>Affine quantize/dequantize on TorchSharp tensors (per-tensor, per-channel, group-wise).</summary>
public static class TensorAffineQuantizer
{
    /// <summary>α and z [out, nGroups] for weights [out, in]; computed in float32 without gradient.
    /// Per-tensor parameters are repeated on every row ([out, 1]).</summary>
    public static (Tensor Scales, Tensor Zeros) ComputeParams(Tensor w, QuantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        GroupLayout.CheckMatrix(w, nameof(w));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (lo, hi) = GroupRange(w, spec);
        Tensor alpha, zero;
        if (spec.Scheme == QuantScheme.Symmetric)
        {
            Tensor absMax = maximum(lo.neg(), hi);
            alpha = absMax.div(GroupLayout.Constant(absMax, (1 << (spec.Bits - 1)) - 1)).clamp_min(AffineQuantizer.MinScale);
            zero = GroupLayout.Constant(alpha, 1 << (spec.Bits - 1));
        }
        else
        {
            Tensor range = hi - lo;
            alpha = range.div(GroupLayout.Constant(range, spec.QMax)).clamp_min(AffineQuantizer.MinScale);
            zero = lo.neg().div(alpha).round().clamp(0, spec.QMax);
        }
        return (alpha.contiguous().MoveToOuterDisposeScope(), zero.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>The zero-inclusive range per group: lo = min(min w, 0), hi = max(max w, 0), float32 [out, nGroups] (per-tensor:
    /// [out, 1], the same on every row); no gradient. Throws MatqException on NaN weights.</summary>
    public static (Tensor Lo, Tensor Hi) GroupRange(Tensor w, QuantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        GroupLayout.CheckMatrix(w, nameof(w));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long rows = w.shape[0], cols = w.shape[1];
        int g = spec.EffectiveGroupSize(checked((int)cols));
        long groups = (cols + g - 1) / g;
        Tensor x = w.detach().to(ScalarType.Float32);
        if (x.isnan().any().item<bool>())
            throw new MatqException("weights contain NaN: quantization needs finite weights; check the checkpoint or the training run.");
        Tensor lo, hi;
        if (spec.Granularity == Granularity.PerTensor)
        {
            lo = x.min().clamp_max(0).reshape(1, 1).expand(rows, 1);
            hi = x.max().clamp_min(0).reshape(1, 1).expand(rows, 1);
        }
        else
        {
            // Zero padding of the short last group cannot change the zero-inclusive min/max (nor max|w|).
            long pad = groups * g - cols;
            Tensor padded = pad == 0 ? x : nn.functional.pad(x, new long[] { 0, pad });
            Tensor grouped = padded.reshape(rows, groups, g);
            lo = grouped.amin(new long[] { 2 }).clamp_max(0);
            hi = grouped.amax(new long[] { 2 }).clamp_min(0);
        }
        return (lo.contiguous().MoveToOuterDisposeScope(), hi.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>uint8 codes [out, in]: q = clamp(round(w/α) + z, 0, 2^bits − 1) with α, z [out|1, nGroups].</summary>
    public static Tensor Quantize(Tensor w, Tensor scales, Tensor zeros, int groupSize, int bits)
    {
        QuantSpec.ValidateBits(bits);
        GroupLayout.CheckMatrix(w, nameof(w));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Tensor q = QuantizeFloat(w.detach().to(ScalarType.Float32), scales, zeros, groupSize, bits);
        return q.to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>ŵ = α·(q − z), float32 [out, in], for uint8 (or any integer-valued) codes [out, in].</summary>
    public static Tensor Dequantize(Tensor codes, Tensor scales, Tensor zeros, int groupSize) =>
        Dequantize(codes, scales, zeros, groupSize, 1L << 26);

    /// <summary>As above, computed <paramref name="chunkValues"/> values (whole rows) at a time.</summary>
    internal static Tensor Dequantize(Tensor codes, Tensor scales, Tensor zeros, int groupSize, long chunkValues)
    {
        GroupLayout.CheckMatrix(codes, nameof(codes));
        using var scope = NewDisposeScope();
        long rows = codes.shape[0], cols = codes.shape[1];
        if (rows <= Math.Max(1, chunkValues / Math.Max(1, cols)) || scales.shape[0] != rows || zeros.shape[0] != rows)
            return DequantizeChunk(codes, scales, zeros, groupSize).MoveToOuterDisposeScope();
        Tensor result = empty(rows, cols, dtype: ScalarType.Float32, device: codes.device);
        return DequantizeInto(result, codes, scales, zeros, groupSize, chunkValues).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes ŵ = α·(q − z) into <paramref name="target"/> (fp32 [out, in], any device) in row chunks of at most
    /// <paramref name="chunkValues"/> values: the expanded grids and the float codes are chunk-sized temporaries, so a
    /// 128256-row head needs its output and ~1 GiB more, not five times its output (or, written over a tensor that is
    /// already there, no second full-size one). The same values as <see cref="Dequantize(Tensor, Tensor, Tensor, int)"/>.
    /// </summary>
    public static Tensor DequantizeInto(Tensor target, Tensor codes, Tensor scales, Tensor zeros, int groupSize, long chunkValues = 1L << 26)
    {
        GroupLayout.CheckMatrix(codes, nameof(codes));
        long rows = codes.shape[0], cols = codes.shape[1];
        if (target.dtype != ScalarType.Float32 || target.shape.Length != 2 || target.shape[0] != rows || target.shape[1] != cols)
            throw new ArgumentException($"the target must be fp32 [{rows}, {cols}]", nameof(target));
        using var noGrad = no_grad();
        if (scales.shape[0] != rows || zeros.shape[0] != rows)   // one grid row for all: not chunked
        {
            using var whole = NewDisposeScope();
            target.copy_(DequantizeChunk(codes, scales, zeros, groupSize));
            return target;
        }
        long step = Math.Max(1, chunkValues / Math.Max(1, cols));
        for (long r0 = 0; r0 < rows; r0 += step)
        {
            using var chunk = NewDisposeScope();
            long len = Math.Min(step, rows - r0);
            target.narrow(0, r0, len).copy_(DequantizeChunk(codes.narrow(0, r0, len), scales.narrow(0, r0, len), zeros.narrow(0, r0, len), groupSize));
        }
        return target;
    }

    private static Tensor DequantizeChunk(Tensor c, Tensor s, Tensor zz, int groupSize)
    {
        long cols = c.shape[1];
        Tensor a = GroupLayout.Expand(s.to(ScalarType.Float32), groupSize, cols);
        Tensor z = GroupLayout.Expand(zz.to(ScalarType.Float32), groupSize, cols);
        return (c.to(ScalarType.Float32) - z).mul(a);
    }

    /// <summary>Computes parameters and codes for weights [out, in].</summary>
    public static QuantizedTensor Quantize(Tensor w, QuantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        (Tensor scales, Tensor zeros) = ComputeParams(w, spec);
        int g = spec.EffectiveGroupSize(checked((int)w.shape[1]));
        Tensor codes = Quantize(w, scales, zeros, g, spec.Bits);
        return new QuantizedTensor(codes, scales, zeros, spec, g);
    }

    /// <summary>Float-valued codes (before the uint8 cast), shared with the fake-quant forward.</summary>
    internal static Tensor QuantizeFloat(Tensor w32, Tensor scales, Tensor zeros, int groupSize, int bits)
    {
        long cols = w32.shape[1];
        Tensor a = GroupLayout.Expand(scales.to(ScalarType.Float32), groupSize, cols);
        Tensor z = GroupLayout.Expand(zeros.to(ScalarType.Float32), groupSize, cols);
        return w32.div(a).round().add(z).clamp(0, (1 << bits) - 1);
    }
}
