// Contract: a weight matrix W [Rows, Cols] held at r ∈ {2, 3, 4, 8} bits for GEMV, built at load time by slicing c-bit
// master codes (NestedSlice) and packing them; y[o] = Σ_g Scales[o,g]·Σ_{i∈g} S[o,i]·x[i] + Biases[o,g]·Σ_{i∈g} x[i].
// Layout: Data = [Rows][BlocksPerRow][4·r bytes]; each row's stored columns are cut into blocks of 32 (the last one
// zero-padded: activations are zero-padded too, so padding never contributes); a block is packed by PackedBlock32.
// Scales/Biases are float [Rows, GroupsPerRow]: Scales = α·2^(c−r), Biases = −α·z (so ŵ = Scales·S + Biases = α(S·2^(c−r) − z)).
// Groups: GroupSize columns, a multiple of 32 (whole blocks), or the whole row (per-channel). Perm (optional):
// stored column k holds original input column Perm[k], so the kernels read x[Perm[k]].
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Packed;

public sealed class PackedMatrix
{
    public int Rows { get; }
    public int Cols { get; }
    public int Bits { get; }
    /// <summary>Columns per group: a multiple of 32, or Cols (per-channel).</summary>
    public int GroupSize { get; }
    public int GroupsPerRow { get; }
    public int BlocksPerRow { get; }
    public int BlockBytes { get; }
    public int RowBytes => BlocksPerRow * BlockBytes;
    /// <summary>[Rows, BlocksPerRow, BlockBytes].</summary>
    public byte[] Data { get; }
    /// <summary>[Rows, GroupsPerRow]: α·2^(c−r).</summary>
    public float[] Scales { get; }
    /// <summary>[Rows, GroupsPerRow]: −α·z.</summary>
    public float[] Biases { get; }
    public int[]? Perm { get; }

    /// <summary>Bytes a GEMV reads from the weight: packed codes plus scales and biases.</summary>
    public long WeightBytes => Data.LongLength + 4L * (Scales.LongLength + Biases.LongLength);

    /// <summary>Blocks per group (BlocksPerRow for per-channel).</summary>
    public int BlocksPerGroup => GroupSize == Cols ? BlocksPerRow : GroupSize / PackedBlock32.Codes;

    private PackedMatrix(int rows, int cols, int bits, int groupSize, byte[] data, float[] scales, float[] biases, int[]? perm)
    {
        Rows = rows; Cols = cols; Bits = bits; GroupSize = groupSize;
        GroupsPerRow = (cols + groupSize - 1) / groupSize;
        BlocksPerRow = (cols + PackedBlock32.Codes - 1) / PackedBlock32.Codes;
        BlockBytes = PackedBlock32.BlockBytes(bits);
        Data = data; Scales = scales; Biases = biases; Perm = perm;
    }

    /// <summary>Packs r-bit codes [rows·cols] (row-major) with their per-group scales and biases.</summary>
    public static PackedMatrix FromCodes(ReadOnlySpan<byte> codes, int rows, int cols, int bits, int groupSize,
        float[] scales, float[] biases, int[]? perm = null)
    {
        PackedBlock32.CheckBits(bits);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        if (groupSize == -1) groupSize = cols;
        if (groupSize != cols && (groupSize <= 0 || groupSize % PackedBlock32.Codes != 0 || groupSize > cols))
            throw new MatqException($"group size {groupSize} has no packed GEMV layout: use a multiple of 32 (32, 64, 128) or per-channel.");
        if (codes.Length != rows * cols) throw new ArgumentException($"codes must hold {rows}×{cols} entries");
        int groups = (cols + groupSize - 1) / groupSize;
        if (scales.Length != rows * groups || biases.Length != rows * groups)
            throw new ArgumentException($"scales and biases must hold {rows}×{groups} entries");
        if (perm is not null && perm.Length != cols) throw new ArgumentException($"perm must hold {cols} entries");
        int bpr = (cols + 31) / 32, bb = PackedBlock32.BlockBytes(bits);
        var data = new byte[(long)rows * bpr * bb];
        Span<byte> block = stackalloc byte[32];
        for (int o = 0; o < rows; o++)
            for (int b = 0; b < bpr; b++)
            {
                block.Clear();
                int c0 = b * 32, n = Math.Min(32, cols - c0);
                codes.Slice(o * cols + c0, n).CopyTo(block);
                PackedBlock32.Pack(block, bits, data.AsSpan((o * bpr + b) * bb, bb));
            }
        return new PackedMatrix(rows, cols, bits, groupSize, data, scales, biases, perm);
    }

    /// <summary>Slices c-bit master codes to r bits and packs them; scales/zeros are the artifact's float α and z
    /// [rows, ceil(cols/g)]; groupSize −1 = per-channel.</summary>
    public static PackedMatrix FromMaster(ReadOnlySpan<byte> masterCodes, int rows, int cols, int groupSize,
        ReadOnlySpan<float> scales, ReadOnlySpan<float> zeros, int masterBits, int sliceBits, int[]? perm = null)
    {
        QuantSpec(masterBits, sliceBits);
        var sliced = NestedSlice.Slice(masterCodes, masterBits, sliceBits);
        float step = 1 << (masterBits - sliceBits);
        var s = new float[scales.Length];
        var z = new float[zeros.Length];
        for (int i = 0; i < s.Length; i++) { s[i] = scales[i] * step; z[i] = -scales[i] * zeros[i]; }
        return FromCodes(sliced, rows, cols, sliceBits, groupSize, s, z, perm);
    }

    private static void QuantSpec(int masterBits, int sliceBits)
    {
        Quantization.QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        PackedBlock32.CheckBits(sliceBits);
    }

    /// <summary>The activations the kernels consume: x in stored-column order (Perm applied), zero-padded to
    /// BlocksPerRow·32, plus Σx per group [GroupsPerRow].</summary>
    public void PrepareInput(ReadOnlySpan<float> x, Span<float> padded, Span<float> groupSums)
    {
        if (x.Length != Cols) throw new ArgumentException($"x must hold {Cols} values, got {x.Length}");
        padded.Clear();
        if (Perm is null) x.CopyTo(padded);
        else for (int k = 0; k < Cols; k++) padded[k] = x[Perm[k]];
        for (int g = 0; g < GroupsPerRow; g++)
        {
            int c0 = g * GroupSize, n = Math.Min(GroupSize, Cols - c0);
            groupSums[g] = System.Numerics.Tensors.TensorPrimitives.Sum(padded.Slice(c0, n));
        }
    }
}
