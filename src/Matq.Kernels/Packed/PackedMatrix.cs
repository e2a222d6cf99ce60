// Contract: a weight matrix W [Rows, Cols] held in a packed container of Bits ∈ {2, 3, 4, 8} bits, built at load time by
// slicing c-bit master codes to r = SliceBits (NestedSlice) and packing them. Documented fallback for widths without a
// layout of their own: r = 1 is held in the 2-bit container, r = 5, 6, 7 in the 8-bit one (same values, more bytes); y[o] = Σ_g Scales[o,g]·Σ_{i∈g} S[o,i]·x[i] + Biases[o,g]·Σ_{i∈g} x[i].
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
    /// <summary>Container width of the packed blocks: 2, 3, 4 or 8.</summary>
    public int Bits { get; }
    /// <summary>Width r of the codes held (≤ Bits; see the fallback above).</summary>
    public int SliceBits { get; private set; }
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
        Rows = rows; Cols = cols; Bits = bits; SliceBits = bits; GroupSize = groupSize;
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
        if (codes.Length != (long)rows * cols) throw new ArgumentException($"codes must hold {rows}×{cols} entries");
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
                PackedBlock32.Pack(block, bits, data.AsSpan((int)(((long)o * bpr + b) * bb), bb));
            }
        return new PackedMatrix(rows, cols, bits, groupSize, data, scales, biases, perm);
    }

    /// <summary>Slices c-bit master codes to r bits and packs them; scales/zeros are the artifact's float α and z
    /// [rows, ceil(cols/g)]; groupSize −1 = per-channel.</summary>
    public static PackedMatrix FromMaster(ReadOnlySpan<byte> masterCodes, int rows, int cols, int groupSize,
        ReadOnlySpan<float> scales, ReadOnlySpan<float> zeros, int masterBits, int sliceBits, int[]? perm = null)
    {
        Quantization.QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        int container = ContainerBits(sliceBits);
        var sliced = NestedSlice.Slice(masterCodes, masterBits, sliceBits);
        float step = 1 << (masterBits - sliceBits);
        var s = new float[scales.Length];
        var z = new float[zeros.Length];
        for (int i = 0; i < s.Length; i++) { s[i] = scales[i] * step; z[i] = -scales[i] * zeros[i]; }
        var m = FromCodes(sliced, rows, cols, container, groupSize, s, z, perm);
        m.SliceBits = sliceBits;
        return m;
    }

    /// <summary>The packed container for r-bit codes: 2 for r ≤ 2, 3, 4, and 8 for r = 5..8 (the documented fallback).</summary>
    public static int ContainerBits(int sliceBits) => sliceBits switch
    {
        1 or 2 => 2,
        3 => 3,
        4 => 4,
        >= 5 and <= 8 => 8,
        _ => throw new MatqException($"bits = {sliceBits} cannot be packed: serve at 1..8 bits."),
    };

    /// <summary>Round-to-nearest asymmetric min-max quantization of a float matrix [rows, cols] to r bits (groups of
    /// <paramref name="groupSize"/> columns, −1 = per-channel), packed; for weights the artifact keeps in float (lm_head).</summary>
    public static PackedMatrix FromFloat(ReadOnlySpan<float> weights, int rows, int cols, int bits, int groupSize)
    {
        int g = groupSize == -1 || groupSize >= cols ? cols : groupSize;
        var spec = g == cols ? Quantization.QuantSpec.PerChannel(bits) : Quantization.QuantSpec.Grouped(bits, g);
        var (p, codes) = Quantization.AffineQuantizer.QuantizeMatrix(weights, rows, cols, spec);
        var zeros = Array.ConvertAll(p.Zeros, z => (float)z);
        return FromMaster(codes, rows, cols, g == cols ? -1 : g, p.Scales, zeros, bits, bits);
    }

    /// <summary>Row <paramref name="o"/> of Ŵ in original column order (scalar; used for embedding lookups from a packed table).</summary>
    public void DequantizeRow(int o, Span<float> dst)
    {
        if ((uint)o >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(o), o, $"row must be in 0..{Rows - 1}");
        if (dst.Length != Cols) throw new ArgumentException($"dst must hold {Cols} values");
        Span<byte> codes = stackalloc byte[PackedBlock32.Codes];
        for (int b = 0; b < BlocksPerRow; b++)
        {
            PackedBlock32.Unpack(Data.AsSpan((int)(((long)o * BlocksPerRow + b) * BlockBytes), BlockBytes), Bits, codes);
            int c0 = b * PackedBlock32.Codes, n = Math.Min(PackedBlock32.Codes, Cols - c0);
            for (int i = 0; i < n; i++)
            {
                int k = c0 + i, gi = o * GroupsPerRow + k / GroupSize;
                dst[Perm is null ? k : Perm[k]] = Scales[gi] * codes[i] + Biases[gi];
            }
        }
    }

    /// <summary>The activations the kernels consume: x in stored-column order (Perm applied), zero-padded to
    /// BlocksPerRow·32, plus Σx per group [GroupsPerRow] (skipped when <paramref name="groupSums"/> is empty).</summary>
    public void PrepareInput(ReadOnlySpan<float> x, Span<float> padded, Span<float> groupSums)
    {
        if (x.Length != Cols) throw new ArgumentException($"x must hold {Cols} values, got {x.Length}");
        padded.Clear();
        if (Perm is null) x.CopyTo(padded);
        else for (int k = 0; k < Cols; k++) padded[k] = x[Perm[k]];
        if (groupSums.IsEmpty) return;
        for (int g = 0; g < GroupsPerRow; g++)
        {
            int c0 = g * GroupSize, n = Math.Min(GroupSize, Cols - c0);
            groupSums[g] = System.Numerics.Tensors.TensorPrimitives.Sum(padded.Slice(c0, n));
        }
    }
}
