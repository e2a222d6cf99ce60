// Contract: the weight layout of ONNX Runtime's com.microsoft MatMulNBits (contrib opset 1), scalar reference that
// DEFINES it here: Y[.., n] = Σ_k A[.., k] · Ŵ[n, k] with Ŵ[n, k] = (B_code[n, k] − zp[n, j]) · scale[n, j], j = ⌊k / block⌋.
//   B            uint8 [N, n_blocks, blob]   n_blocks = ceil(K / block), blob = block·bits/8; block j of row n holds codes
//                                            k = j·block .. j·block+block−1 packed low-bit-first (BitPacking's stream order),
//                                            codes past K (last block) are 0
//   scales       float [N, n_blocks]
//   zero_points  uint8 [N, ceil(n_blocks·bits/8)]  row n's n_blocks zero points packed like B (each row starts a new byte)
// block is a power of two ≥ 16; ORT 1.31's CPU kernel runs bits 2, 4 and 8.
using Matq.Kernels.Packing;

namespace Matq.Formats.Onnx;

public sealed record MatMulNBitsWeights(int K, int N, int Bits, int BlockSize, byte[] B, float[] Scales, byte[] ZeroPoints)
{
    public int BlockCount => (K + BlockSize - 1) / BlockSize;
    public int BlobSize => BlockSize * Bits / 8;
    public int ZeroPointRowBytes => (BlockCount * Bits + 7) / 8;
    public long[] BDims => [N, BlockCount, BlobSize];
    public long[] ScalesDims => [N, BlockCount];
    public long[] ZeroPointsDims => [N, ZeroPointRowBytes];
}

public static class MatMulNBitsLayout
{
    public static readonly IReadOnlyList<int> SupportedBits = [2, 4, 8];

    public static bool IsValidBlockSize(int block) => block >= 16 && (block & (block - 1)) == 0;

    /// <summary>
    /// Packs codes [N, K] (each &lt; 2^bits), block scales [N, n_blocks] and block zero points [N, n_blocks] (each &lt; 2^bits).
    /// </summary>
    public static MatMulNBitsWeights Pack(ReadOnlySpan<byte> codes, int n, int k, int bits, int blockSize,
        ReadOnlySpan<float> scales, ReadOnlySpan<byte> zeroPoints)
    {
        if (!SupportedBits.Contains(bits)) throw new MatqException($"MatMulNBits bits = {bits}: ONNX Runtime runs 2, 4 or 8 bits");
        if (!IsValidBlockSize(blockSize)) throw new MatqException($"MatMulNBits block_size = {blockSize}: it must be a power of 2 and at least 16");
        if (n < 1 || k < 1) throw new ArgumentException($"MatMulNBits shape N = {n}, K = {k} must be positive");
        int blocks = (k + blockSize - 1) / blockSize, blob = blockSize * bits / 8, zpRow = (blocks * bits + 7) / 8;
        if (codes.Length != (long)n * k) throw new ArgumentException($"codes hold {codes.Length} values, N·K = {(long)n * k}");
        if (scales.Length != (long)n * blocks || zeroPoints.Length != (long)n * blocks)
            throw new ArgumentException($"scales and zero points must hold N·n_blocks = {(long)n * blocks} values");
        int top = (1 << bits) - 1;
        var b = new byte[(long)n * blocks * blob];
        var zp = new byte[(long)n * zpRow];
        Span<byte> block = stackalloc byte[blockSize];
        for (int row = 0; row < n; row++)
        {
            var rowCodes = codes.Slice(row * k, k);
            for (int j = 0; j < blocks; j++)
            {
                block.Clear();
                int start = j * blockSize, len = Math.Min(blockSize, k - start);
                for (int i = 0; i < len; i++)
                {
                    byte c = rowCodes[start + i];
                    if (c > top) throw new ArgumentOutOfRangeException(nameof(codes), $"code {c} at [{row}, {start + i}] does not fit {bits} bits");
                    block[i] = c;
                }
                BitPacking.PackU8(block, bits, b.AsSpan((int)(((long)row * blocks + j) * blob), blob));
            }
            var rowZp = zeroPoints.Slice(row * blocks, blocks);
            foreach (var z in rowZp)
                if (z > top) throw new ArgumentOutOfRangeException(nameof(zeroPoints), $"zero point {z} of row {row} does not fit {bits} bits");
            BitPacking.PackU8(rowZp, bits, zp.AsSpan(row * zpRow, zpRow));
        }
        return new MatMulNBitsWeights(k, n, bits, blockSize, b, scales.ToArray(), zp);
    }

    /// <summary>Ŵ [N, K] row-major as the operator defines it (the reference the packing is tested against).</summary>
    public static float[] Dequantize(MatMulNBitsWeights w)
    {
        ArgumentNullException.ThrowIfNull(w);
        int blocks = w.BlockCount, blob = w.BlobSize;
        var y = new float[(long)w.N * w.K];
        var codes = new byte[w.BlockSize];
        var zps = new byte[blocks];
        for (int row = 0; row < w.N; row++)
        {
            BitPacking.UnpackU8(w.ZeroPoints.AsSpan(row * w.ZeroPointRowBytes, w.ZeroPointRowBytes), w.Bits, zps);
            for (int j = 0; j < blocks; j++)
            {
                BitPacking.UnpackU8(w.B.AsSpan((int)(((long)row * blocks + j) * blob), blob), w.Bits, codes);
                float s = w.Scales[row * blocks + j];
                for (int i = 0; i < w.BlockSize && j * w.BlockSize + i < w.K; i++)
                    y[(long)row * w.K + j * w.BlockSize + i] = (codes[i] - zps[j]) * s;
            }
        }
        return y;
    }
}
