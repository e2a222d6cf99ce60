// Contract: one .matq quantized weight served at r bits → com.microsoft MatMulNBits (plus at most three small exact ops),
// computing y = x·Ŵ_rᵀ with Ŵ_r = α(S·2^k − z) per group (S = S(q, r) sliced from the c-bit master codes, k = c − r):
//   codes   S in stored column order, bits = r (ORT runs r ∈ {2, 4, 8}; others are refused)
//   scale   α·2^k for every block of the group         block = a power of 2 in 16..128 that tiles each group: the lowest
//   zp      ẑ = clamp(round(z/2^k), 0, 2^r − 1)          set bit of g (capped at 128); any size when one group spans the row
//   ⇒ MatMulNBits gives Σ_k x_k·α2^k(S − ẑ); the rest, Ŵ − that = α(2^k·ẑ − z) = Δ[n, group], is constant per group, so
//     y = MatMulNBits(x) + (Σ_{k∈group} x_k) · Δᵀ: group sums by MatMul with a 0/1 [K, G] indicator, then MatMul with Δᵀ [G, N].
//   z/2^k is an integer whenever r = c or z is a multiple of 2^k (symmetric z = 2^(c−1), for example): then Δ = 0 and the
//   correction is left out. Nothing is re-quantized: the export computes Ŵ_r exactly up to float rounding.
//   act-order perm (stored column j = original column perm[j]): x is gathered into stored order first (Gather on the last axis).
// Groups whose width has no power-of-2 factor ≥ 16 (e.g. 24, 40, 100) cannot be tiled by MatMulNBits blocks: refused.
using Matq.Formats.Artifact;
using Matq.Formats.Onnx;
using Matq.Kernels.Packing;

namespace Matq.Export;

/// <summary>How one quantized weight was written.</summary>
public sealed record OnnxLinearReport(string Name, int Bits, int BlockSize, bool ZeroPointCorrection, bool Permuted);

public static class OnnxQuantizedLinear
{
    public const int MaxBlockSize = 128;

    /// <summary>The MatMulNBits block size for a weight (see the file header), or a MatqException naming the fix.</summary>
    public static int BlockSize(MatqQuantizedTensor q)
    {
        ArgumentNullException.ThrowIfNull(q);
        if (q.GroupCount == 1)
        {
            int b = 16;
            while (b * 2 <= Math.Min(q.InFeatures, MaxBlockSize)) b *= 2;
            return b;
        }
        int g = q.GroupWidth, low = g & -g;
        if (low < 16)
            throw new MatqException($"{q.Name}: group size {g} is not a multiple of 16, so MatMulNBits blocks (powers of 2, 16..128) cannot tile its groups; " +
                                    "quantize with --group 16, 32, 64, 128 or 0 (per channel), or export --format hf");
        return Math.Min(low, MaxBlockSize);
    }

    /// <summary>Refuses bit-widths ORT's MatMulNBits does not run, naming those it does.</summary>
    public static void CheckBits(int bits, int masterBits)
    {
        if (bits < 1 || bits > masterBits)
            throw new MatqException($"--bits {bits} is out of range for this artifact: serve at 1..{masterBits} bits (ONNX export: 2, 4 or 8 within that)");
        if (!MatMulNBitsLayout.SupportedBits.Contains(bits))
            throw new MatqException($"--bits {bits} is not supported by ONNX Runtime's MatMulNBits, which runs 2, 4 or 8 bits; " +
                                    $"export --bits {string.Join("|", MatMulNBitsLayout.SupportedBits.Where(b => b <= masterBits))}, or --format hf for {bits}-bit weights as floats");
    }

    /// <summary>The MatMulNBits weights and the per-group residual Δ [N, G] (all zero when the zero points are exact).</summary>
    public static (MatMulNBitsWeights Weights, float[] Delta, bool Corrected) Map(MatqQuantizedTensor q, int masterBits, int bits)
    {
        ArgumentNullException.ThrowIfNull(q);
        CheckBits(bits, masterBits);
        int n = q.OutFeatures, kIn = q.InFeatures, groups = q.GroupCount, gw = q.GroupWidth, block = BlockSize(q);
        int blocks = (kIn + block - 1) / block, shift = masterBits - bits, top = (1 << bits) - 1;
        float step = 1 << shift;
        var codes = NestedSlice.Slice(q.Codes, masterBits, bits);
        var scales = new float[(long)n * blocks];
        var zps = new byte[(long)n * blocks];
        var delta = new float[(long)n * groups];
        bool corrected = false;
        var zHat = new byte[groups];
        for (int row = 0; row < n; row++)
        {
            for (int gi = 0; gi < groups; gi++)
            {
                float alpha = q.Scales[row * groups + gi], z = q.Zeros[row * groups + gi];
                int zi = (int)Math.Clamp(Math.Round(z / step, MidpointRounding.AwayFromZero), 0, top);
                zHat[gi] = (byte)zi;
                // Ŵ − α2^k(S − ẑ) = α(2^k·ẑ − z); exactly 0 when z = 2^k·ẑ
                float dlt = (float)((double)alpha * ((double)step * zi - z));
                delta[row * groups + gi] = dlt;
                corrected |= dlt != 0;
            }
            for (int j = 0; j < blocks; j++)
            {
                int gi = j * block / gw;
                scales[row * blocks + j] = q.Scales[row * groups + gi] * step;
                zps[row * blocks + j] = zHat[gi];
            }
        }
        return (MatMulNBitsLayout.Pack(codes, n, kIn, bits, block, scales, zps), delta, corrected);
    }

    /// <summary>Emits y = x·Ŵ_rᵀ for <paramref name="q"/> reading <paramref name="input"/> [.., K]; returns y [.., N].</summary>
    internal static string Emit(OnnxGraphBuilder g, MatqQuantizedTensor q, int masterBits, int bits, string input, string module, out OnnxLinearReport report)
    {
        var (w, delta, corrected) = Map(q, masterBits, bits);
        var x = input;
        if (q.Perm is not null)
        {
            var perm = g.Initializer(OnnxTensor.FromInt64(module + ".perm", [q.InFeatures], q.Perm.Select(i => (long)i).ToArray()));
            x = g.Op("Gather", module + "/stored_order", [x, perm], OnnxAttribute.Of("axis", -1L));
        }
        var b = g.Initializer(OnnxTensor.FromBytes(module + ".qweight", w.BDims, w.B));
        var s = g.Initializer(OnnxTensor.FromFloats(module + ".scales", w.ScalesDims, w.Scales));
        var z = g.Initializer(OnnxTensor.FromBytes(module + ".qzeros", w.ZeroPointsDims, w.ZeroPoints));
        var y = g.OpIn(OnnxModel.MicrosoftDomain, "MatMulNBits", module + "/out", [x, b, s, z],
            OnnxAttribute.Of("K", (long)w.K), OnnxAttribute.Of("N", (long)w.N), OnnxAttribute.Of("bits", (long)w.Bits),
            OnnxAttribute.Of("block_size", (long)w.BlockSize));
        if (corrected)
        {
            int kIn = q.InFeatures, groups = q.GroupCount, gw = q.GroupWidth, n = q.OutFeatures;
            var indicator = g.Shared($"group_indicator:{kIn}:{gw}", () =>
            {
                var ind = new float[(long)kIn * groups];
                for (int k = 0; k < kIn; k++) ind[(long)k * groups + k / gw] = 1f;
                return OnnxTensor.FromFloats($"group_indicator_{kIn}_{gw}", [kIn, groups], ind);
            });
            var deltaT = new float[(long)groups * n];
            for (int row = 0; row < n; row++)
                for (int gi = 0; gi < groups; gi++) deltaT[(long)gi * n + row] = delta[(long)row * groups + gi];
            var sums = g.Op("MatMul", module + "/group_sums", [x, indicator]);
            var corr = g.Op("MatMul", module + "/zero_point_correction", [sums, g.Initializer(OnnxTensor.FromFloats(module + ".zero_delta_t", [groups, n], deltaT))]);
            y = g.Op("Add", module + "/corrected", [y, corr]);
        }
        report = new OnnxLinearReport(q.Name, bits, w.BlockSize, corrected, q.Perm is not null);
        return y;
    }
}
