// Contract: the width traits table — one row per packed width (the model: ggml's type_traits, one row per quant type with
// its block size, type size and function pointers). A row names its bits, codes and bytes per chunk (16 rows × 32
// codes, Reference/PackedTile16), its container layout, and its kernels per path: the reference codec (scalar; it
// DEFINES the layout), the fp32-activation GEMV and the GEMM decode (AVX2+FMA and portable Vector128), the
// int8-activation GEMM's tile loop (Simd/GemmInt8Simd, its decode to u8 codes specialized per width), and the
// int8-activation dot per ISA (AVX-512BW, AVX-VNNI, AVX2; the portable Vector128 loop for every row). Kernels are
// static generic methods over one width's structs (IPackedTileCodec, IPackedWidth, IInt8Dots), taken once as
// function pointers: a call dispatches once per matrix (per tile range), never per code. Every width switch, width
// list and width check reads this table, so a new width is its reference codec, its kernel structs and one row.
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Packed;

/// <summary>One row of the width table: a packed width and its kernels.</summary>
public sealed unsafe class PackedWidth
{
    /// <summary>Bits per code (the container width r of a PackedMatrix).</summary>
    public int Bits { get; }
    /// <summary>Codes in one chunk of one tile: 16 rows × 32 columns.</summary>
    public int CodesPerChunk { get; }
    /// <summary>Bytes of one chunk of one tile (whole 64-byte sub-steps).</summary>
    public int ChunkBytes { get; }
    /// <summary>Where a code lives in its chunk (Reference/PackedTile16 defines it).</summary>
    public string Container { get; }
    /// <summary>The int8-activation paths this width has, widest first (Vector128 always).</summary>
    public IReadOnlyList<Int8KernelPath> Int8Paths { get; }
    /// <summary>The fp32-activation GEMV and GEMM-decode paths (every row has both).</summary>
    public IReadOnlyList<string> Fp32Paths { get; } = ["Avx2", "Vector128"];

    private readonly delegate*<ReadOnlySpan<byte>, Span<byte>, void> _pack;
    private readonly delegate*<ReadOnlySpan<byte>, int, int, byte> _codeAt;
    private readonly delegate*<PackedMatrix, float[], float[], float*, int, int, void> _fp32Tiles256;
    private readonly delegate*<PackedMatrix, float[], float[], float*, int, int, void> _fp32Tiles128;
    private readonly delegate*<PackedMatrix, float[], int, float*, int, int, bool, void> _gemmTiles;
    private readonly delegate*<PackedMatrix, Int8ActivationRows, Int8KernelPath, float*, int, int, void> _int8GemmTiles;
    private readonly Int8Kernel[] _int8;

    private PackedWidth(int bits, int chunkBytes, string container,
        delegate*<ReadOnlySpan<byte>, Span<byte>, void> pack, delegate*<ReadOnlySpan<byte>, int, int, byte> codeAt,
        delegate*<PackedMatrix, float[], float[], float*, int, int, void> fp32Tiles256,
        delegate*<PackedMatrix, float[], float[], float*, int, int, void> fp32Tiles128,
        delegate*<PackedMatrix, float[], int, float*, int, int, bool, void> gemmTiles,
        delegate*<PackedMatrix, Int8ActivationRows, Int8KernelPath, float*, int, int, void> int8GemmTiles, Int8Kernel[] int8)
    {
        Bits = bits; CodesPerChunk = PackedTile16.Rows * PackedTile16.Codes; ChunkBytes = chunkBytes; Container = container;
        _pack = pack; _codeAt = codeAt; _fp32Tiles256 = fp32Tiles256; _fp32Tiles128 = fp32Tiles128; _gemmTiles = gemmTiles;
        _int8GemmTiles = int8GemmTiles;
        _int8 = int8;
        Int8Paths = Array.ConvertAll(int8, k => k.Path);
    }

    /// <summary>A row from one width's structs: reference codec <typeparamref name="TCodec"/>, vector view
    /// <typeparamref name="TWidth"/> (fp32 GEMV, GEMM decode, the portable int8 loop) and the int8 loops per ISA.</summary>
    internal static PackedWidth Create<TCodec, TWidth>(int bits, int chunkBytes, string container, params Int8Kernel[] int8)
        where TCodec : IPackedTileCodec where TWidth : struct, IPackedWidth
    {
        if (TCodec.Bits != bits || TWidth.Bits != bits || TWidth.ChunkBytes != chunkBytes || chunkBytes % 64 != 0
            || 8 * chunkBytes < bits * PackedTile16.Rows * PackedTile16.Codes)
            throw new InvalidOperationException($"width table row {bits}: its structs disagree with its bits or chunk bytes");
        var paths = int8.Append(Int8Kernel.Of<Int8Dots128.Of<TWidth>>(Int8KernelPath.Vector128)).ToArray();
        if (paths.DistinctBy(k => k.Path).Count() != paths.Length || paths.Any(k => k.Path == Int8KernelPath.Auto))
            throw new InvalidOperationException($"width table row {bits}: an int8 path is listed twice or is Auto");
        return new PackedWidth(bits, chunkBytes, container, &PackedTile16.PackChunk<TCodec>, &PackedTile16.CodeAt<TCodec>,
            &GemvPackedSimd.Tiles256<TWidth>, &GemvPackedSimd.Tiles128<TWidth>, &GemmPackedSimd.Tiles<TWidth>, &GemmInt8Simd.Tiles<TWidth>, paths);
    }

    /// <summary>True when this width has an integer kernel for <paramref name="path"/>.</summary>
    public bool HasInt8(Int8KernelPath path) => Array.Exists(_int8, k => k.Path == path);

    public override string ToString() =>
        $"int{Bits}: {CodesPerChunk} codes in {ChunkBytes} B per chunk; {Container}; fp32 GEMV and GEMM decode: {string.Join(", ", Fp32Paths)}; " +
        $"int8 dot: {string.Join(", ", Int8Paths)}";

    // --- entry points (the kernels call these once per chunk, per tile range or per call) ---

    /// <summary>Packs codes [16][32] (already checked) into a chunk of ChunkBytes.</summary>
    internal void PackChunk(ReadOnlySpan<byte> codes, Span<byte> chunk) => _pack(codes, chunk);

    /// <summary>Code i of lane l of a chunk (the reference decode).</summary>
    internal byte CodeAt(ReadOnlySpan<byte> chunk, int l, int i) => _codeAt(chunk, l, i);

    internal void Fp32Tiles(bool avx, PackedMatrix w, float[] xp, float[] gs, float* y, int t0, int t1)
    {
        if (avx) _fp32Tiles256(w, xp, gs, y, t0, t1);
        else _fp32Tiles128(w, xp, gs, y, t0, t1);
    }

    internal void GemmTiles(bool avx, PackedMatrix w, float[] xp, int t, float* y, int t0, int t1) => _gemmTiles(w, xp, t, y, t0, t1, avx);

    /// <summary>The int8-activation GEMM (prefill) over tiles t0..t1, its decode specialized for this width.</summary>
    internal void Int8GemmTiles(PackedMatrix w, Int8ActivationRows a, Int8KernelPath path, float* y, int t0, int t1) =>
        _int8GemmTiles(w, a, path, y, t0, t1);

    /// <summary>This width's kernel for <paramref name="path"/> (not Auto).</summary>
    internal Int8Kernel Int8(Int8KernelPath path)
    {
        foreach (var k in _int8)
            if (k.Path == path) return k;
        throw new MatqException($"int{Bits} weights have no {path} integer kernel: their paths are {string.Join(", ", Int8Paths)}.");
    }
}

/// <summary>The width table: one row per packed width, ascending bits.</summary>
public static class PackedWidths
{
    // Create<reference codec, vector view (fp32 GEMV, GEMM decode, portable int8)>(bits, bytes per chunk, container,
    //        int8 dot per ISA: AVX-512BW, AVX-VNNI, AVX2; the Vector128 one is added to every row)
    public static IReadOnlyList<PackedWidth> All { get; } =
    [
        PackedWidth.Create<PackedTile16.Codec2, GemvPackedSimd.Width2>(2, 128,
            "u8, 4 codes a byte: bit pair p of byte 64s + 4l + b holds code 16s + 4p + b (2 sub-steps)",
            X86<Int8DotsAvx512.W2, Int8DotsVnni.W2, Int8DotsAvx2.W2>()),
        PackedWidth.Create<PackedTile16.Codec3, GemvPackedSimd.Width3>(3, 192,
            "u8 planes: a 2-bit plane (2 sub-steps; pair 3 holds a code's top two bits) + a 1-bit plane (bit J[q] of byte 128 + 4l + b)",
            X86<Int8DotsAvx512.W3, Int8DotsVnni.W3, Int8DotsAvx2.W3>()),
        PackedWidth.Create<PackedTile16.Codec4, GemvPackedSimd.Width4>(4, 256,
            "u8 nibbles: byte 64s + 4l + b holds code 8s + b (low) and 8s + 4 + b (high) (4 sub-steps)",
            X86<Int8DotsAvx512.W4, Int8DotsVnni.W4, Int8DotsAvx2.W4>()),
        PackedWidth.Create<PackedTile16.Codec8, GemvPackedSimd.Width8>(8, 512,
            "u8, one code a byte: byte 64s + 4l + b holds code 4s + b (8 sub-steps)",
            X86<Int8DotsAvx512.W8, Int8DotsVnni.W8, Int8DotsAvx2.W8>()),
    ];

    // one width's int8 dot kernels on each x86 path, fastest first
    private static Int8Kernel[] X86<TAvx512, TVnni, TAvx2>()
        where TAvx512 : struct, IInt8Dots512 where TVnni : struct, IInt8Dots where TAvx2 : struct, IInt8Dots =>
        [Int8Kernel.Of512<TAvx512>(Int8KernelPath.Avx512), Int8Kernel.Of<TVnni>(Int8KernelPath.Vnni), Int8Kernel.Of<TAvx2>(Int8KernelPath.Avx2)];

    /// <summary>The widths of the rows, ascending.</summary>
    public static IReadOnlyList<int> Bits { get; } = All.Select(r => r.Bits).ToArray();

    private static readonly PackedWidth?[] ByBits = Index();

    private static PackedWidth?[] Index()
    {
        var by = new PackedWidth?[9];
        int last = 0;
        foreach (var row in All)
        {
            if (row.Bits <= last || row.Bits > 8) throw new InvalidOperationException("width table rows must be ascending widths in 1..8");
            by[last = row.Bits] = row;
        }
        return by;
    }

    /// <summary>True when <paramref name="bits"/> has a row (a packed layout and kernels).</summary>
    public static bool IsSupported(int bits) => (uint)bits < (uint)ByBits.Length && ByBits[bits] is not null;

    /// <summary>The row of <paramref name="bits"/>; throws (one line) when there is none.</summary>
    public static PackedWidth Get(int bits)
    {
        CheckBits(bits);
        return ByBits[bits]!;
    }

    public static void CheckBits(int bits)
    {
        if (!IsSupported(bits))
            throw new MatqException($"bits = {bits} has no packed GEMV layout: supported widths are {List()}.");
    }

    /// <summary>The widths in words: "2, 3, 4 and 8".</summary>
    public static string List() => Bits.Count == 1 ? $"{Bits[0]}" : $"{string.Join(", ", Bits.Take(Bits.Count - 1))} and {Bits[^1]}";

    /// <summary>The packed container for r-bit codes: the narrowest row of at least r bits (2 for r ≤ 2, 8 for r = 5..7 today),
    /// the documented fallback for widths without a layout of their own.</summary>
    public static int ContainerBits(int sliceBits)
    {
        if (sliceBits is >= 1 and <= 8)
            foreach (int b in Bits)
                if (b >= sliceBits) return b;
        throw new MatqException($"bits = {sliceBits} cannot be packed: serve at 1..{Bits[^1]} bits.");
    }
}
