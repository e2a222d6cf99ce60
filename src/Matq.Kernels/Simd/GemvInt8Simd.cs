// Contract: the integer GEMV y = Ŵx with int8 activations (Packed/Int8Activations), bit-identical to GemvInt8Reference.
// Rows sit in the int32 lanes of the packed tiles (Reference/PackedTile16), so a path's integer loop leaves each row's
// exact group dot D_g in its own lane — no horizontal sums — and the epilogue is the reference's per-row fp32 sequence
// A ← fma(Scale, fma(Zero, −X_g, D_g), A), y = s·A, 16 rows per vector operation (fp16 scales and zeros converted
// exactly, a symmetric tensor's one zero broadcast: Packed/PackedGroupParams). Integer paths:
//   Avx512    AVX-512BW, 512-bit: vpmaddubsw of unscaled code fields (≤ 15) with 4 broadcast activations, int16 sums,
//             vpmaddwd into int32 (no saturation: pairs ≤ 2·15·127; the int16 sums are bounded per width below);
//   Vnni      AVX-VNNI, 256-bit: vpdpbusd of code fields masked in place (scaled by 4^p or 16, ≤ 255) into scaled
//             accumulators, shifted back exactly at the end of a group;
//   Avx2      AVX2, 256-bit: the Avx512 arithmetic on 256-bit halves;
//   Vector128 portable: code fields widened to int32, multiplied by the broadcast activation, added.
// (.NET 10 exposes no 512-bit vpdpbusd — AVX512-VNNI — so the 512-bit path uses vpmaddubsw/vpmaddwd; on AVX-512
// machines the JIT encodes the 256-bit VNNI path with EVEX, using 32 registers and vpternlogd.) Auto = BestPath(bits).
// D_g is exact in int32 for groups of up to 65536 columns (|D| ≤ 255·127·65536 < 2^31); wider groups are summed in int64 over 65536-column pieces. Tiles are split
// over threads by KernelThreads; weights that stream from memory are software-prefetched (PrefetchMinBytes). Which
// paths a width has is its row of the width table (Packed/PackedWidths): one Int8Kernel per path, picked once per call.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;

namespace Matq.Kernels.Simd;

/// <summary>Which integer kernel runs: Auto picks per width (BestPath).</summary>
public enum Int8KernelPath { Auto, Avx512, Vnni, Avx2, Vector128 }

public static unsafe class GemvInt8Simd
{
    /// <summary>Chunks (32 columns) summed in int32 before a group is split into int64 pieces.</summary>
    private const int MaxChunks = 2048;

    /// <summary>Weights of at least this many bytes stream from memory: each group's lines are prefetched PrefetchDistance
    /// bytes ahead (one sequential stream per thread needs more reads in flight than the hardware prefetchers keep;
    /// measured 1.2–1.9× on a 544 MiB weight, one thread). Smaller weights live in the caches, where the extra loads cost.</summary>
    public const long PrefetchMinBytes = 32L << 20;
    private const int PrefetchDistance = 4096;

    /// <summary>Every path (widest first).</summary>
    public static IReadOnlyList<Int8KernelPath> Paths { get; } = [Int8KernelPath.Avx512, Int8KernelPath.Vnni, Int8KernelPath.Avx2, Int8KernelPath.Vector128];

    /// <summary>True when <paramref name="path"/> can run on this machine.</summary>
    public static bool IsSupported(Int8KernelPath path) => path switch
    {
        Int8KernelPath.Avx512 => Avx512BW.IsSupported,
        Int8KernelPath.Vnni => AvxVnni.IsSupported,
        Int8KernelPath.Avx2 => Avx2.IsSupported,
        _ => true,
    };

    /// <summary>The order Auto tries the paths in.</summary>
    private static readonly Int8KernelPath[] Preference = [Int8KernelPath.Vnni, Int8KernelPath.Avx512, Int8KernelPath.Avx2, Int8KernelPath.Vector128];

    /// <summary>The path Auto runs for <paramref name="bits"/>-bit weights (today the same for every width).</summary>
    public static Int8KernelPath BestPath(int bits)
    {
        // One vpdpbusd per 32 products beats vpmaddubsw + vpmaddwd at every width, even at 256 bits against 512
        // (measured on a Sapphire Rapids VM with `matq bench kernels --paths all`, 1 and 2 threads); without AVX-VNNI
        // the 512-bit path halves the instructions of the 256-bit one. The width stays a parameter so a machine where
        // that differs per width can be told apart (bench kernels prints the choice per width); a width whose row lacks
        // a path skips it (every row has the portable Vector128 one).
        var width = PackedWidths.Get(PackedWidths.ContainerBits(bits));
        foreach (var path in Preference)
            if (IsSupported(path) && width.HasInt8(path)) return path;
        return Int8KernelPath.Vector128;
    }

    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        Gemv(w, Int8Activations.Prepare(w, x), y, path, maxThreads);
    }

    /// <summary>The GEMV on activations already prepared for <paramref name="w"/>'s shape.</summary>
    public static void Gemv(PackedMatrix w, Int8Activations a, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(a);
        if (!a.Fits(w)) throw new ArgumentException("activations were prepared for another matrix shape, group size or column permutation");
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        var kernel = Resolve(path, w);
        fixed (float* yp0 = y)
        {
            nint yp = (nint)yp0;
            KernelThreads.For(w.RowTiles, maxThreads, (long)PackedMatrix.TileRows * w.PaddedCols,
                (t0, t1) => kernel.Tiles(w, a, (float*)yp, t0, t1));
        }
    }

    /// <summary>D_g of row <paramref name="o"/> computed by <paramref name="path"/>'s integer loop (for exactness tests).</summary>
    public static void GroupDots(PackedMatrix w, Int8Activations a, int o, Span<long> dots, Int8KernelPath path = Int8KernelPath.Auto)
    {
        if (dots.Length != w.GroupsPerRow) throw new ArgumentException($"dots must hold {w.GroupsPerRow} values");
        var kernel = Resolve(path, w);
        var d = stackalloc long[16];
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Codes)
        {
            byte* tile = data + o / PackedMatrix.TileRows * w.TileBytes;
            for (int g = 0; g < w.GroupsPerRow; g++)
            {
                kernel.GroupDot(w, tile, xs, g, d);
                dots[g] = d[o % PackedMatrix.TileRows];
            }
        }
    }

    private static Int8Kernel Resolve(Int8KernelPath path, PackedMatrix w)
    {
        if (path == Int8KernelPath.Auto) path = BestPath(w.Bits);
        if (!IsSupported(path)) throw new PlatformNotSupportedException($"the {path} integer kernel needs CPU support this machine lacks");
        return w.Width.Int8(path);
    }

    // The width table's entry points (Packed/PackedWidths): one path's integer loop T for one width.
    internal static void GroupDot<T>(PackedMatrix w, byte* tile, sbyte* xs, int g, long* d) where T : struct, IInt8Dots
    {
        int cpg = w.ChunksPerGroup, c0 = g * cpg, c1 = Math.Min(c0 + cpg, w.ChunksPerRow);
        var part = stackalloc int[16];
        for (int i = 0; i < 16; i++) d[i] = 0;
        for (int c = c0; c < c1; c += MaxChunks)
        {
            int n = Math.Min(MaxChunks, c1 - c);
            T.Dots(tile + (long)c * w.ChunkBytes, xs + 32 * c, n, part);
            for (int i = 0; i < 16; i++) d[i] += part[i];
        }
    }

    // One tile at a time: per group, the path's integer loop writes the 16 lanes' D_g, the epilogue folds them into the
    // per-lane fp32 sums A (two 256-bit halves). Groups wider than MaxChunks, or no 256-bit vectors: TilesScalar. The zero
    // lanes' source (one constant or an fp16 array) is a type argument, fixed once per call.
    internal static void Tiles<T>(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) where T : struct, IInt8Dots
    {
        if (w.ChunksPerGroup > MaxChunks || !Vector256.IsHardwareAccelerated) TilesScalar<T>(w, a, y, t0, t1);
        else if (w.Params.Symmetric) Tiles<T, OneZero>(w, a, y, t0, t1);
        else Tiles<T, GroupZeros>(w, a, y, t0, t1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles<T, TZ>(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) where T : struct, IInt8Dots where TZ : struct, IGroupZeros
    {
        int gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes;
        long tileBytes = w.TileBytes;
        var d = stackalloc int[16];
        var outv = stackalloc float[16];
        var sv = Vector256.Create(a.Scale);
        bool prefetch = w.WeightBytes >= PrefetchMinBytes && Sse.IsSupported;
        Vector256<float> mg = Vector256.Create(w.Params.Magic), zk = Vector256.Create(w.Params.ZeroCode);
        float zm = PackedGroupParams.ZeroMagic;
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Codes)
        fixed (int* gsum = a.GroupSums)
        fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            for (int t = t0; t < t1; t++)
            {
                byte* tile = data + t * tileBytes;
                Half* s = sc + (long)t * gpr * 16, z = zc + (long)t * gpr * 16;
                Vector256<float> a0 = default, a1 = default;
                for (int g = 0, c0 = 0; g < gpr; g++, c0 += cpg, s += 16, z += 16)
                {
                    if (prefetch) Prefetch(tile + (long)c0 * cb, cpg * cb);
                    T.Dots(tile + (long)c0 * cb, xs + 32 * c0, Math.Min(cpg, cpr - c0), d);
                    var nx = Vector256.Create(-(float)gsum[g]);
                    Vector256<float> z0 = TZ.PerGroup ? PackedGroupParams.Load256(z, zm) : zk, z1 = TZ.PerGroup ? PackedGroupParams.Load256(z + 8, zm) : zk;
                    a0 = Vector256.FusedMultiplyAdd(PackedGroupParams.Scale256(s, mg), Vector256.FusedMultiplyAdd(z0, nx, Vector256.ConvertToSingle(Vector256.Load(d))), a0);
                    a1 = Vector256.FusedMultiplyAdd(PackedGroupParams.Scale256(s + 8, mg), Vector256.FusedMultiplyAdd(z1, nx, Vector256.ConvertToSingle(Vector256.Load(d + 8))), a1);
                }
                float* yt = y + t * 16;
                if (t * 16 + 16 <= w.Rows)
                {
                    (sv * a0).Store(yt);
                    (sv * a1).Store(yt + 8);
                }
                else
                {
                    (sv * a0).Store(outv);
                    (sv * a1).Store(outv + 8);
                    for (int i = 0; i < w.Rows - t * 16; i++) yt[i] = outv[i];
                }
            }
    }

    // The AVX-512 tile loop: the integer loop's 16 lanes stay in one register and the epilogue runs on all 16 at once —
    // the same per-lane operations in the same order as Tiles (bit-identical), in half the instructions and without the
    // store and reload of D per group (a group of 32 columns at 2 bits is 128 bytes: there the epilogue cost as much as
    // the dots).
    internal static void Tiles512<T>(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) where T : struct, IInt8Dots512
    {
        if (w.ChunksPerGroup > MaxChunks) TilesScalar<T>(w, a, y, t0, t1);
        else if (w.Params.Symmetric) Tiles512<T, OneZero>(w, a, y, t0, t1);
        else Tiles512<T, GroupZeros>(w, a, y, t0, t1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles512<T, TZ>(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) where T : struct, IInt8Dots512 where TZ : struct, IGroupZeros
    {
        int gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes;
        long tileBytes = w.TileBytes;
        var outv = stackalloc float[16];
        var sv = Vector512.Create(a.Scale);
        bool prefetch = w.WeightBytes >= PrefetchMinBytes && Sse.IsSupported;
        Vector512<float> mg = Vector512.Create(w.Params.Magic), zk = Vector512.Create(w.Params.ZeroCode);
        float zm = PackedGroupParams.ZeroMagic;
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Codes)
        fixed (int* gsum = a.GroupSums)
        fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            for (int t = t0; t < t1; t++)
            {
                byte* tile = data + t * tileBytes;
                Half* s = sc + (long)t * gpr * 16, z = zc + (long)t * gpr * 16;
                Vector512<float> acc = default;
                for (int g = 0, c0 = 0; g < gpr; g++, c0 += cpg, s += 16, z += 16)
                {
                    if (prefetch) Prefetch(tile + (long)c0 * cb, cpg * cb);
                    var dots = T.Dots512(tile + (long)c0 * cb, xs + 32 * c0, Math.Min(cpg, cpr - c0));
                    var nx = Vector512.Create(-(float)gsum[g]);
                    var zl = TZ.PerGroup ? PackedGroupParams.Load512(z, zm) : zk;
                    acc = Vector512.FusedMultiplyAdd(PackedGroupParams.Scale512(s, mg), Vector512.FusedMultiplyAdd(zl, nx, Vector512.ConvertToSingle(dots)), acc);
                }
                float* yt = y + t * 16;
                if (t * 16 + 16 <= w.Rows) (sv * acc).Store(yt);
                else
                {
                    (sv * acc).Store(outv);
                    for (int i = 0; i < w.Rows - t * 16; i++) yt[i] = outv[i];
                }
            }
    }

    // into L2, every line of a group's bytes PrefetchDistance ahead (past the end of Data it is a no-op hint)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(byte* group, int bytes)
    {
        byte* pf = group + PrefetchDistance;
        for (int i = 0; i < bytes; i += 64) Sse.Prefetch1(pf + i);
    }

    // The same per lane in scalar fp32, with each D_g summed in int64 over pieces of MaxChunks chunks.
    private static void TilesScalar<T>(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) where T : struct, IInt8Dots
    {
        int gpr = w.GroupsPerRow;
        var d = stackalloc long[16];
        var acc = stackalloc float[16];
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Codes)
            for (int t = t0; t < t1; t++)
            {
                for (int i = 0; i < 16; i++) acc[i] = 0;
                for (int g = 0; g < gpr; g++)
                {
                    GroupDot<T>(w, data + t * w.TileBytes, xs, g, d);
                    long e = ((long)t * gpr + g) * 16;
                    for (int i = 0; i < 16; i++) acc[i] = w.Params.Fold(e + i, acc[i], d[i], a.GroupSums[g]);
                }
                for (int i = 0; i < Math.Min(16, w.Rows - t * 16); i++) y[t * 16 + i] = a.Scale * acc[i];
            }
    }
}

/// <summary>One path's integer loop for one width: D of the 16 lanes of a tile over <c>chunks</c> chunks (32 columns each)
/// starting at packed bytes p and activation codes x, written to d[16]; exact in int32 for chunks ≤ 2048.</summary>
internal unsafe interface IInt8Dots
{
    static abstract void Dots(byte* p, sbyte* x, int chunks, int* d);
}

/// <summary>An integer loop that can also leave the 16 lanes' D in a 512-bit register (the AVX-512 path).</summary>
internal unsafe interface IInt8Dots512 : IInt8Dots
{
    static abstract Vector512<int> Dots512(byte* p, sbyte* x, int chunks);
}

/// <summary>One cell of the width table: a path's integer kernel for one width (whole tiles, and one group's dots for tests).</summary>
internal readonly unsafe struct Int8Kernel
{
    public Int8KernelPath Path { get; }
    private readonly delegate*<PackedMatrix, Int8Activations, float*, int, int, void> _tiles;
    private readonly delegate*<PackedMatrix, byte*, sbyte*, int, long*, void> _groupDot;

    private Int8Kernel(Int8KernelPath path, delegate*<PackedMatrix, Int8Activations, float*, int, int, void> tiles,
        delegate*<PackedMatrix, byte*, sbyte*, int, long*, void> groupDot)
    {
        Path = path; _tiles = tiles; _groupDot = groupDot;
    }

    /// <summary>The kernels of integer loop <typeparamref name="T"/> (one width's struct of one path).</summary>
    public static Int8Kernel Of<T>(Int8KernelPath path) where T : struct, IInt8Dots =>
        new(path, &GemvInt8Simd.Tiles<T>, &GemvInt8Simd.GroupDot<T>);

    /// <summary>The kernels of an AVX-512 integer loop: its 512-bit tile loop.</summary>
    public static Int8Kernel Of512<T>(Int8KernelPath path) where T : struct, IInt8Dots512 =>
        new(path, &GemvInt8Simd.Tiles512<T>, &GemvInt8Simd.GroupDot<T>);

    public void Tiles(PackedMatrix w, Int8Activations a, float* y, int t0, int t1) => _tiles(w, a, y, t0, t1);
    public void GroupDot(PackedMatrix w, byte* tile, sbyte* xs, int g, long* d) => _groupDot(w, tile, xs, g, d);
}
