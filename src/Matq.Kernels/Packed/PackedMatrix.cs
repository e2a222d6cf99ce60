// Contract: a weight matrix W [Rows, Cols] held in a packed container of Bits bits (a row of the width table,
// PackedWidths: 2, 3, 4 or 8 today), built at load time by slicing c-bit master codes to r = SliceBits (NestedSlice) and
// packing them. Documented fallback for widths without a layout of their own: the narrowest row of at least r bits
// (r = 1 is held in the 2-bit container, r = 5, 6, 7 in the 8-bit one: same values, more bytes).
// ŵ[o, k] = Scale(o, g)·S[o, k] + Bias(o, g) for stored column k of group g, so
// y[o] = Σ_g Scale(o,g)·Σ_{k∈g} S[o,k]·x[k] + Bias(o,g)·Σ_{k∈g} x[k].
// Layout (Reference/PackedTile16 defines it): rows in tiles of 16, each row's stored columns in chunks of 32;
// Data = [RowTiles][ChunksPerRow][64·r bytes]; rows past Rows and columns past Cols hold code 0 (activations are
// zero-padded, padded rows have zero scale, so padding never contributes). Group parameters: Params (PackedGroupParams,
// the one definition of their layout): fp16 Scale = α·2^(c−r) per group, plus an fp16 zero z_r = z/2^(c−r) per group
// only when the zeros differ; when every zero of the tensor is the same z (symmetric artifacts: 2^(c−1)), no zero array
// is stored, just z_r for the tensor. ŵ = Scale·(S − z_r) = α(S·2^(c−r) − z) either way.
// Groups: GroupSize columns, a multiple of 32 (whole chunks), or the whole row (per-channel). Perm (optional):
// stored column k holds original input column Perm[k], so the kernels read x[Perm[k]].
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Packed;

public sealed class PackedMatrix
{
    public const int TileRows = PackedTile16.Rows;

    public int Rows { get; }
    public int Cols { get; }
    /// <summary>Container width of the packed codes: a row of PackedWidths.</summary>
    public int Bits { get; }
    /// <summary>The width table's row of <see cref="Bits"/>: layout and kernels.</summary>
    public PackedWidth Width { get; }
    /// <summary>Width r of the codes held (≤ Bits; see the fallback above).</summary>
    public int SliceBits { get; private set; }
    /// <summary>Columns per group: a multiple of 32, or Cols (per-channel).</summary>
    public int GroupSize { get; }
    public int GroupsPerRow { get; }
    /// <summary>Chunks of 32 stored columns per row (the last one zero-padded).</summary>
    public int ChunksPerRow { get; }
    /// <summary>Tiles of 16 rows (the last one padded).</summary>
    public int RowTiles { get; }
    /// <summary>Bytes of one chunk of one tile: the row's ChunkBytes (64·Bits).</summary>
    public int ChunkBytes { get; }
    /// <summary>Bytes of one tile: ChunksPerRow·ChunkBytes.</summary>
    public long TileBytes => (long)ChunksPerRow * ChunkBytes;
    /// <summary>Stored columns with padding: ChunksPerRow·32 (the length of prepared activations).</summary>
    public int PaddedCols => ChunksPerRow * PackedTile16.Codes;
    /// <summary>[RowTiles, ChunksPerRow, ChunkBytes]: a segment of huge-page-backed memory where Linux allows it
    /// (HugePageArrays.RentBytes; the codes are read once per token).</summary>
    public ReadOnlySpan<byte> Data => _codes.AsSpan();
    private readonly ArraySegment<byte> _codes;
    /// <summary>Per-group scales (and zeros, when they differ): fp16, [RowTiles, GroupsPerRow, 16].</summary>
    public PackedGroupParams Params { get; }
    public int[]? Perm { get; }

    /// <summary>Bytes a GEMV reads from the weight: packed codes plus group parameters (padding included).</summary>
    public long WeightBytes => _codes.Count + Params.Bytes;

    /// <summary>Chunks per group (ChunksPerRow for per-channel).</summary>
    public int ChunksPerGroup => GroupSize == Cols ? ChunksPerRow : GroupSize / PackedTile16.Codes;

    /// <summary>Scale of row o, group g (the fp16 value as the kernels read it).</summary>
    public float Scale(int o, int g) => Params.Scale(SideIndex(o, g));
    /// <summary>Zero of row o, group g in code units (z_r = z/2^(c−r)).</summary>
    public float Zero(int o, int g) => Params.Zero(SideIndex(o, g));
    /// <summary>−Scale·Zero of row o, group g in fp32 (−α·z up to fp16 rounding of the scale; informational).</summary>
    public float Bias(int o, int g) => Params.Offset(SideIndex(o, g));
    /// <summary>The kernels' fold of group g of row o into lane accumulator a (PackedGroupParams.Fold).</summary>
    public float Fold(int o, int g, float a, float d, float x) => Params.Fold(SideIndex(o, g), a, d, x);
    /// <summary>ŵ of code <paramref name="code"/> in row o, group g (double; the format's definition).</summary>
    public double Dequantize(int o, int g, int code) => Params.Value(SideIndex(o, g), code);
    private long SideIndex(int o, int g) => ((long)(o / TileRows) * GroupsPerRow + g) * TileRows + o % TileRows;

    /// <summary>Code of row o at stored column k (the reference decode of the layout).</summary>
    public byte CodeAt(int o, int k) =>
        Width.CodeAt(Data.Slice((int)((o / TileRows) * TileBytes + (long)(k / PackedTile16.Codes) * ChunkBytes), ChunkBytes),
            o % TileRows, k % PackedTile16.Codes);

    private PackedMatrix(int rows, int cols, int bits, int groupSize, ArraySegment<byte> data, PackedGroupParams groupParams, int[]? perm)
    {
        Rows = rows; Cols = cols; Bits = bits; Width = PackedWidths.Get(bits); SliceBits = bits; GroupSize = groupSize;
        GroupsPerRow = (cols + groupSize - 1) / groupSize;
        ChunksPerRow = (cols + PackedTile16.Codes - 1) / PackedTile16.Codes;
        RowTiles = (rows + TileRows - 1) / TileRows;
        ChunkBytes = Width.ChunkBytes;
        _codes = data; Params = groupParams; Perm = perm;
    }

    /// <summary>Packs r-bit codes [rows·cols] (row-major) with their per-group scales and biases [rows, groups]
    /// (ŵ = scale·S + bias; stored as fp16 scale and zero −bias/scale per group: the layout of differing zeros; a bias
    /// must be 0 where its scale is).</summary>
    public static PackedMatrix FromCodes(ReadOnlySpan<byte> codes, int rows, int cols, int bits, int groupSize,
        float[] scales, float[] biases, int[]? perm = null) => FromCodes(codes, rows, cols, bits, groupSize, scales, ZerosOf(scales, biases), 0, perm, 0, 0);

    private static float[] ZerosOf(float[] scales, float[] biases)
    {
        if (biases.Length != scales.Length) throw new ArgumentException("scales and biases must have the same length");
        var z = new float[biases.Length];
        for (int i = 0; i < z.Length; i++)
            z[i] = scales[i] != 0 ? -biases[i] / scales[i]
                : biases[i] == 0 ? 0 : throw new MatqException($"group {i} has bias {biases[i]} with scale 0: the packed layout keeps ŵ = scale·(S − zero)");
        return z;
    }

    /// <summary>Packs r-bit codes with per-group scales [rows, groups] and one zero <paramref name="zeroCode"/> for the
    /// whole matrix (ŵ = scale·(S − zeroCode); the symmetric layout: no zeros stored).</summary>
    public static PackedMatrix FromCodesSymmetric(ReadOnlySpan<byte> codes, int rows, int cols, int bits, int groupSize,
        float[] scales, float zeroCode, int[]? perm = null) => FromCodes(codes, rows, cols, bits, groupSize, scales, null, zeroCode, perm, 0, 0);

    // masterBits > 0: codes are c-bit master codes, sliced to sliceBits (NestedSlice) as each tile is packed, so no
    // sliced copy of the whole matrix is made. zeros (in code units) null: zero zeroCode for every group.
    private static PackedMatrix FromCodes(ReadOnlySpan<byte> codes, int rows, int cols, int bits, int groupSize,
        float[] scales, float[]? zeros, float zeroCode, int[]? perm, int masterBits, int sliceBits)
    {
        var width = PackedWidths.Get(bits);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        if (groupSize == -1) groupSize = cols;
        if (groupSize != cols && (groupSize <= 0 || groupSize % PackedTile16.Codes != 0 || groupSize > cols))
            throw new MatqException($"group size {groupSize} has no packed GEMV layout: use a multiple of 32 (32, 64, 128) or per-channel.");
        if (codes.Length != (long)rows * cols) throw new ArgumentException($"codes must hold {rows}×{cols} entries");
        int groups = (cols + groupSize - 1) / groupSize;
        if (scales.Length != (long)rows * groups || (zeros is not null && zeros.Length != (long)rows * groups))
            throw new ArgumentException($"scales and biases must hold {rows}×{groups} entries");
        if (perm is not null && perm.Length != cols) throw new ArgumentException($"perm must hold {cols} entries");
        int tiles = (rows + TileRows - 1) / TileRows, cpr = (cols + 31) / 32, cb = width.ChunkBytes;
        var data = HugePageArrays.RentBytes((long)tiles * cpr * cb);
        PackTiles(codes, rows, cols, width, data, 0, masterBits, sliceBits);
        var ts = new float[(long)tiles * groups * TileRows];
        var tz = zeros is null ? [] : new float[ts.LongLength];
        for (int o = 0; o < rows; o++)
            for (int g = 0; g < groups; g++)
            {
                long i = ((long)(o / TileRows) * groups + g) * TileRows + o % TileRows;
                ts[i] = scales[(long)o * groups + g];
                if (zeros is not null) tz[i] = zeros[(long)o * groups + g];
            }
        return new PackedMatrix(rows, cols, bits, groupSize, data, PackedGroupParams.Create(ts, tz, zeroCode), perm);
    }

    // Tiles are independent: packed in parallel (load time of large matrices), each by the reference codec.
    private static unsafe void PackTiles(ReadOnlySpan<byte> codes, int rows, int cols, PackedWidth width, ArraySegment<byte> data, long dataOffset, int masterBits, int sliceBits)
    {
        int tiles = (rows + TileRows - 1) / TileRows, cpr = (cols + 31) / 32, cb = width.ChunkBytes, bits = width.Bits;
        fixed (byte* src = codes)
        {
            nint sp = (nint)src;
            long total = (long)rows * cols;
            Parallel.For(0, tiles, () => new byte[TileRows * PackedTile16.Codes], (t, _, block) =>
            {
                var all = new ReadOnlySpan<byte>((byte*)sp, (int)total);
                for (int c = 0; c < cpr; c++)
                {
                    Array.Clear(block);
                    int c0 = c * 32, n = Math.Min(32, cols - c0);
                    for (int l = 0; l < TileRows && t * TileRows + l < rows; l++)
                    {
                        var dst = block.AsSpan(l * 32, n);
                        var src = all.Slice((int)((long)(t * TileRows + l) * cols + c0), n);
                        if (masterBits > 0) NestedSlice.Slice(src, masterBits, sliceBits, dst);
                        else src.CopyTo(dst);
                    }
                    PackedTile16.Pack(block, bits, data.AsSpan().Slice((int)(dataOffset + ((long)t * cpr + c) * cb), cb));
                }
                return block;
            }, _ => { });
        }
    }

    /// <summary>Slices c-bit master codes to r bits and packs them; scales/zeros are the artifact's float α and z
    /// [rows, ceil(cols/g)]; groupSize −1 = per-channel. When every z is the same (symmetric artifacts store 2^(c−1)),
    /// no per-group zero is kept: the slice's zero is the constant z/2^(c−r) (PackedGroupParams).</summary>
    public static PackedMatrix FromMaster(ReadOnlySpan<byte> masterCodes, int rows, int cols, int groupSize,
        ReadOnlySpan<float> scales, ReadOnlySpan<float> zeros, int masterBits, int sliceBits, int[]? perm = null)
    {
        Quantization.QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        int container = ContainerBits(sliceBits);
        // the codes are sliced tile by tile while packing (the same NestedSlice per code, no sliced copy of the
        // matrix); a code above the master range is refused here, before the parallel packing, as NestedSlice would
        if (masterBits < 8 && masterCodes.IndexOfAnyInRange((byte)(1 << masterBits), (byte)255) is int bad and >= 0)
            throw new ArgumentOutOfRangeException(nameof(masterCodes), $"code {masterCodes[bad]} does not fit {masterBits} master bits");
        float step = 1 << (masterBits - sliceBits);
        if (zeros.Length != scales.Length) throw new ArgumentException("scales and zeros must have the same length");
        bool symmetric = zeros.Length > 0 && zeros.IndexOfAnyExcept(zeros[0]) < 0;
        var s = new float[scales.Length];
        var z = symmetric ? null : new float[zeros.Length];
        for (int i = 0; i < s.Length; i++) s[i] = scales[i] * step;
        if (z is not null) for (int i = 0; i < z.Length; i++) z[i] = zeros[i] / step;
        var m = FromCodes(masterCodes, rows, cols, container, groupSize, s, z, symmetric ? zeros[0] / step : 0, perm, masterBits, sliceBits);
        m.SliceBits = sliceBits;
        return m;
    }

    /// <summary>The packed container for r-bit codes: the narrowest width-table row of at least r bits (2 for r ≤ 2,
    /// 8 for r = 5..7; the documented fallback).</summary>
    public static int ContainerBits(int sliceBits) => PackedWidths.ContainerBits(sliceBits);

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

    /// <summary>
    /// <see cref="FromFloat"/> of a matrix supplied a block of rows at a time (<paramref name="fill"/>(firstRow, rows,
    /// destination [rows·cols])), so no fp32 copy of the whole matrix exists (e.g. a bf16 lm_head read as stored). The
    /// quantization is per row (grouped or per-channel), so the result is the same, bit for bit, as FromFloat's.
    /// </summary>
    public static PackedMatrix FromFloatRows(int rows, int cols, int bits, int groupSize, Action<int, int, Span<float>> fill, int blockRows = 1024)
    {
        ArgumentNullException.ThrowIfNull(fill);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockRows, TileRows);
        blockRows -= blockRows % TileRows;   // blocks start on a tile, so each block packs whole tiles
        int g = groupSize == -1 || groupSize >= cols ? cols : groupSize;
        var spec = g == cols ? Quantization.QuantSpec.PerChannel(bits) : Quantization.QuantSpec.Grouped(bits, g);
        // as FromFloat → FromMaster(codes, c = r = bits) → FromCodes in the container of r bits: step 1, scale α, zero z
        int container = ContainerBits(bits);
        var width = PackedWidths.Get(container);
        if (g != cols && (g <= 0 || g % PackedTile16.Codes != 0))
            throw new MatqException($"group size {g} has no packed GEMV layout: use a multiple of 32 (32, 64, 128) or per-channel.");
        int groups = (cols + g - 1) / g;
        int tiles = (rows + TileRows - 1) / TileRows, cpr = (cols + 31) / 32, cb = width.ChunkBytes;
        var data = HugePageArrays.RentBytes((long)tiles * cpr * cb);
        var ts = new float[(long)tiles * groups * TileRows];
        var tb = new float[ts.LongLength];
        var block = new float[(long)Math.Min(blockRows, rows) * cols];
        var blockCodes = new byte[block.LongLength];   // reused: QuantizeMatrix's codes, without a new array per block
        float first = float.NaN;
        bool constant = true;   // as FromMaster: one zero for every group keeps no zero array
        for (int r0 = 0; r0 < rows; r0 += blockRows)
        {
            int n = Math.Min(blockRows, rows - r0);
            var w = block.AsSpan(0, n * cols);
            fill(r0, n, w);
            var p = Quantization.AffineQuantizer.ComputeParams(w, n, cols, spec);
            var codes = blockCodes.AsSpan(0, n * cols);
            Quantization.AffineQuantizer.Quantize(w, p, codes);
            long tileBase = (long)(r0 / TileRows) * cpr * cb;
            PackTiles(codes, n, cols, width, data, tileBase, 0, 0);
            for (int l = 0; l < n; l++)
                for (int j = 0; j < groups; j++)
                {
                    int o = r0 + l;
                    float a = p.Scales[l * groups + j], z = p.Zeros[l * groups + j];
                    long i = ((long)(o / TileRows) * groups + j) * TileRows + o % TileRows;
                    ts[i] = a * 1f;
                    tb[i] = z;
                    if (float.IsNaN(first)) first = z;
                    constant &= z == first;
                }
        }
        var gp = constant ? PackedGroupParams.Create(ts, [], first) : PackedGroupParams.Create(ts, tb);
        var m = new PackedMatrix(rows, cols, container, g, data, gp, null);
        m.SliceBits = bits;
        return m;
    }

    /// <summary>A copy whose codes sit in a plain managed array (4 KiB pages, no huge-page hint), sharing the group
    /// parameters: for benchmarks that time the same weight on both page sizes in one run.</summary>
    public PackedMatrix OnSmallPages()
    {
        var m = new PackedMatrix(Rows, Cols, Bits, GroupSize, new ArraySegment<byte>(Data.ToArray()), Params, Perm);
        m.SliceBits = SliceBits;
        return m;
    }

    /// <summary>Row <paramref name="o"/> of Ŵ in original column order (scalar; used for embedding lookups from a packed table).</summary>
    public void DequantizeRow(int o, Span<float> dst)
    {
        if ((uint)o >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(o), o, $"row must be in 0..{Rows - 1}");
        if (dst.Length != Cols) throw new ArgumentException($"dst must hold {Cols} values");
        var tile = Data.Slice((int)(o / TileRows * TileBytes), (int)TileBytes);
        int l = o % TileRows;
        for (int k = 0; k < Cols; k++)
        {
            int g = k / GroupSize;
            byte c = Width.CodeAt(tile.Slice(k / PackedTile16.Codes * ChunkBytes, ChunkBytes), l, k % PackedTile16.Codes);
            dst[Perm is null ? k : Perm[k]] = (float)Dequantize(o, g, c);
        }
    }

    /// <summary>The activations the fp32 kernels consume: x in stored-column order (Perm applied), zero-padded to
    /// PaddedCols, plus Σx per group [GroupsPerRow] (skipped when <paramref name="groupSums"/> is empty).</summary>
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
