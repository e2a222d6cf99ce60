// Contract: turns one artifact weight into GGUF data: Encode copies sliced codes into Q4_1/Q4_0/Q8_0 blocks without
// re-quantizing (callers check the conditions in GgufExporter's header), DequantizeSlice gives ŵ_r [out·in] in original
// column order; both apply an optional row permutation (GGUF row i = artifact row rowPerm[i]).
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
}
