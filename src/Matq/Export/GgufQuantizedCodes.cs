// Contract: turns one artifact weight into GGUF data: Encode copies sliced codes into Q4_1/Q4_0/Q8_0 blocks without
// re-quantizing (callers check the conditions in GgufExporter's header), DequantizeSlice gives ŵ_r [out·in] in original
// column order; EncodeK writes k-quant super-blocks from the r-bit slice (exact where GgufKQuants.TryExact fits the
// group grid, else re-quantized from ŵ_r with the group grid as a candidate); all apply an optional row permutation
// (GGUF row i = artifact row rowPerm[i]).
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Kernels.Packing;

namespace Matq.Export;

public static class GgufQuantizedCodes
{
    public static byte[] Encode(MatqQuantizedTensor q, int masterBits, GgmlType type, int[]? rowPerm)
    {
        int rows = q.OutFeatures, cols = q.InFeatures, g = q.GroupWidth, groups = q.GroupCount, bb = GgufBlocks.BlockBytes(type);
        int r = type == GgmlType.Q8_0 ? masterBits : 4, k = masterBits - r;
        var dst = new byte[(long)rows * cols / 32 * bb];
        Span<byte> s = stackalloc byte[32];
        Span<sbyte> s8 = stackalloc sbyte[32];
        for (int o = 0; o < rows; o++)
        {
            int src = rowPerm?[o] ?? o;
            for (int b = 0; b < cols / 32; b++)
            {
                int j = src * groups + b * 32 / g;
                float alpha = q.Scales[j], z = q.Zeros[j];
                NestedSlice.Slice(new ReadOnlySpan<byte>(q.Codes, src * cols + b * 32, 32), masterBits, r, s);
                var block = dst.AsSpan((o * (cols / 32) + b) * bb, bb);
                switch (type)
                {
                    case GgmlType.Q4_1: GgufBlocks.WriteQ4_1(alpha * (1 << k), -alpha * z, s, block); break;
                    case GgmlType.Q4_0: GgufBlocks.WriteQ4_0(alpha * (1 << k), s, block); break;
                    default:
                        for (int i = 0; i < 32; i++) s8[i] = (sbyte)(s[i] - 128);
                        GgufBlocks.WriteQ8_0(alpha, s8, block);
                        break;
                }
            }
        }
        return dst;
    }

    public static float[] DequantizeSlice(MatqQuantizedTensor q, int masterBits, int r, int[]? rowPerm)
    {
        int rows = q.OutFeatures, cols = q.InFeatures, g = q.GroupWidth, groups = q.GroupCount, k = masterBits - r;
        var y = new float[(long)rows * cols];
        for (int o = 0; o < rows; o++)
        {
            int src = rowPerm?[o] ?? o;
            for (int c = 0; c < cols; c++)
            {
                int j = src * groups + c / g;
                int s = NestedSlice.Slice(q.Codes[src * cols + c], masterBits, r);
                int col = q.Perm is null ? c : q.Perm[c];
                y[(long)o * cols + col] = q.Scales[j] * (s * (1 << k) - q.Zeros[j]);
            }
        }
        return y;
    }

    /// <summary>
    /// One artifact weight as k-quant rows: <paramref name="deq"/> from <paramref name="at"/> is its ŵ_r in GGUF row order
    /// (DequantizeSlice with the same permutation); returns the bytes and whether every super-block took the exact path
    /// (codes copied). Rows are encoded in parallel (each writes its own bytes).
    /// </summary>
    public static (byte[] Data, bool Exact) EncodeK(MatqQuantizedTensor q, int masterBits, KSpec spec, int r, int[]? rowPerm, float[] deq, long at)
    {
        int rows = q.OutFeatures, cols = q.InFeatures, g = q.GroupWidth, groups = q.GroupCount, k = masterBits - r, sb = GgufKQuants.SuperBlock;
        if (cols % sb != 0) throw new MatqException($"{q.Name}: {spec.Type} needs rows of a multiple of {sb} values, got {cols}");
        // the group grid applies to a sub-block when the sub-block lies in one group and columns are in their original order
        bool aligned = q.Perm is null && g % spec.Sub == 0;
        float symZero = (1 << (r - 1)) * (float)(1 << k);
        bool gridExact = aligned && r == spec.Bits && (!spec.Symmetric || q.Zeros.All(z => z == symZero));
        var dst = new byte[(long)rows * (cols / sb) * spec.Bytes];
        int requantized = 0;
        Parallel.For(0, rows, o =>
        {
            Span<float> dj = stackalloc float[spec.SubBlocks], mj = stackalloc float[spec.SubBlocks], hm = stackalloc float[spec.SubBlocks];
            Span<byte> codes = stackalloc byte[sb];
            int src = rowPerm?[o] ?? o;
            for (int b = 0; b < cols / sb; b++)
            {
                for (int j = 0; j < spec.SubBlocks; j++)
                {
                    int grp = src * groups + (b * sb + j * spec.Sub) / g;
                    float alpha = q.Scales[grp], z = q.Zeros[grp];
                    dj[j] = aligned ? alpha * (1 << k) : float.NaN;
                    // asymmetric: value = dj·S − α·z; symmetric types: value = dj·(S − offset) when z sits at the offset
                    mj[j] = spec.Symmetric ? 0f : alpha * z;
                    if (spec.Symmetric && z != symZero) dj[j] = float.NaN;
                }
                KBlock? block = null;
                if (gridExact)
                {
                    NestedSlice.Slice(new ReadOnlySpan<byte>(q.Codes, src * cols + b * sb, sb), masterBits, r, codes);
                    block = GgufKQuants.TryExact(spec, codes, dj, mj);
                }
                if (block is null)
                {
                    Interlocked.Exchange(ref requantized, 1);
                    for (int j = 0; j < spec.SubBlocks; j++) hm[j] = -mj[j];
                    block = GgufKQuants.Quantize(spec, deq.AsSpan((int)(at + (long)o * cols + b * sb), sb), dj, hm);
                }
                GgufKQuants.Pack(spec, block, dst.AsSpan((int)(((long)o * (cols / sb) + b) * spec.Bytes), spec.Bytes));
            }
        });
        return (dst, requantized == 0);
    }
}
