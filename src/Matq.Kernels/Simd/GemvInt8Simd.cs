// Contract: the integer GEMV y = Ŵx with int8 activations (Packed/Int8Activations), bit-identical to GemvInt8Reference:
// integer group dots D_g are exact, the epilogue is the reference's double expression in the same order. Paths:
//   AVX-VNNI   vpdpbusd: u8 codes × s8 activations summed 4 at a time into int32 lanes (every width);
//   AVX2       2/3/4-bit: vpmaddubsw (codes ≤ 15, so |pair| ≤ 3840, no saturation; ≤ 4 vectors summed in int16 per
//              step, ≤ 15360) then vpmaddwd by 1 into int32; 8-bit: both sides widened to int16, vpmaddwd;
//   Vector128  portable: codes and activations widened to int16, multiplied (|c·q| ≤ 255·127 fits), widened to int32.
// A step decodes U blocks (one 32-byte load; two for 8-bit, 48 bytes for 3-bit) into V = U vectors of 32 codes in
// Int8SlotLayout order; a step that would read past the end of Data goes through a zero-padded copy. Rows split over Parallel.For (RowChunk).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Simd;

/// <summary>Which integer kernel runs: Auto picks VNNI, else AVX2, else Vector128.</summary>
public enum Int8KernelPath { Auto, Vnni, Avx2, Vector128 }

public static unsafe class GemvInt8Simd
{
    public const int RowChunk = 32;

    public static Int8KernelPath BestPath => AvxVnni.IsSupported ? Int8KernelPath.Vnni : Avx2.IsSupported ? Int8KernelPath.Avx2 : Int8KernelPath.Vector128;

    /// <summary>True when <paramref name="path"/> can run on this machine.</summary>
    public static bool IsSupported(Int8KernelPath path) => path switch
    {
        Int8KernelPath.Vnni => AvxVnni.IsSupported,
        Int8KernelPath.Avx2 => Avx2.IsSupported,
        _ => true,
    };

    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        Gemv(w, Int8Activations.Prepare(w, x), y, path, maxThreads);
    }

    /// <summary>The GEMV on activations already prepared for <paramref name="w"/>'s layout.</summary>
    public static void Gemv(PackedMatrix w, Int8Activations a, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(a);
        if (!a.Fits(w)) throw new ArgumentException("activations were prepared for another matrix layout or column permutation");
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        if (path == Int8KernelPath.Auto) path = BestPath;
        if (!IsSupported(path)) throw new PlatformNotSupportedException($"the {path} integer kernel needs CPU support this machine lacks");
        int chunks = (w.Rows + RowChunk - 1) / RowChunk;
        fixed (float* yp0 = y)
        {
            nint yp = (nint)yp0;
            if (chunks == 1 || maxThreads == 1 || (long)w.Rows * w.Cols < 1 << 16)
                RunRows(w, a, (float*)yp, 0, w.Rows, path);
            else
                Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads },
                    c => RunRows(w, a, (float*)yp, c * RowChunk, Math.Min(w.Rows, (c + 1) * RowChunk), path));
        }
    }

    /// <summary>D_g of row <paramref name="o"/> computed by <paramref name="path"/>'s integer loop (for exactness tests).</summary>
    public static void GroupDots(PackedMatrix w, Int8Activations a, int o, Span<long> dots, Int8KernelPath path = Int8KernelPath.Auto)
    {
        if (path == Int8KernelPath.Auto) path = BestPath;
        if (dots.Length != w.GroupsPerRow) throw new ArgumentException($"dots must hold {w.GroupsPerRow} values");
        if (!IsSupported(path)) throw new PlatformNotSupportedException($"the {path} integer kernel needs CPU support this machine lacks");
        GroupDotsVia(w, a, o, dots, path);
    }

    private static void RunRows(PackedMatrix w, Int8Activations a, float* y, int r0, int r1, Int8KernelPath path)
    {
        switch (path, w.Bits)
        {
            case (Int8KernelPath.Vnni, 8): Rows<Vnni8>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Vnni, 4): Rows<Vnni4>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Vnni, 3): Rows<Vnni3>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Vnni, 2): Rows<Vnni2>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Avx2, 8): Rows<Avx8>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Avx2, 4): Rows<Avx4>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Avx2, 3): Rows<Avx3>(w, a, y, r0, r1); break;
            case (Int8KernelPath.Avx2, 2): Rows<Avx2x2>(w, a, y, r0, r1); break;
            default: Rows128(w, a, y, r0, r1); break;
        }
    }

    // Four rows at a time (missing rows of the last quad repeat a real row; their lanes are dropped). Per group, step s of
    // the four rows runs in one loop iteration against the same activation slots (four independent accumulator pairs,
    // so the int32 chains overlap); one transposing horizontal add gives the four rows' exact D_g, and the reference
    // epilogue runs with rows in vector lanes: A[g mod 4] += S·D + B·X per lane, y = (float)(s·((A0 + A1) + (A2 + A3))).
    // Rows whose last step could read past Data, and groups wider than 65536 columns (whose int32 sum could overflow),
    // take the padded long-sum route.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<T>(PackedMatrix w, Int8Activations a, float* y, int r0, int r1) where T : struct, IStep
    {
        int bb = w.BlockBytes, bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, gpr = w.GroupsPerRow, u = T.U;
        int steps = (bpg + u - 1) / u, stepsLast = (bpr - (gpr - 1) * bpg + u - 1) / u;
        long rowBytes = (long)bpr * bb, stepBytes = (long)u * bb, groupBytes = (long)bpg * bb, total = w.Data.LongLength;
        int slot = 32 * u * steps;                       // slot bytes per full group: Offsets[g] = g·slot
        bool wide = w.GroupSize > 65536;
        var partial = stackalloc Vector256<double>[4];
        var scale = Vector256.Create((double)a.Scale);
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Slots)
        fixed (int* gsum = a.GroupSums)
        fixed (float* sc = w.Scales, bi = w.Biases)
            for (int o = r0; o < r1; o += 4)
            {
                int n = Math.Min(4, r1 - o);
                if (wide || (o + n) * rowBytes + 64 > total)
                {
                    for (int r = 0; r < n; r++) y[o + r] = Slow(w, a, o + r, T.Path);
                    continue;
                }
                long d1 = n > 1 ? rowBytes : 0, d2 = n > 2 ? 2 * rowBytes : 0, d3 = n > 3 ? 3 * rowBytes : 0;
                int e1 = n > 1 ? gpr : 0, e2 = n > 2 ? 2 * gpr : 0, e3 = n > 3 ? 3 * gpr : 0;
                byte* row = data + o * rowBytes;
                float* srow = sc + (long)o * gpr, brow = bi + (long)o * gpr;
                partial[0] = partial[1] = partial[2] = partial[3] = Vector256<double>.Zero;
                for (int g = 0; g < gpr; g++)
                {
                    int ns = g == gpr - 1 ? stepsLast : steps;
                    byte* p = row + g * groupBytes;
                    sbyte* x = xs + g * slot;
                    Vector256<int> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
                    for (int s = 0; s < ns; s++, p += stepBytes, x += 32 * u)
                    {
                        T.Step(p, x, ref a0, ref b0);
                        T.Step(p + d1, x, ref a1, ref b1);
                        T.Step(p + d2, x, ref a2, ref b2);
                        T.Step(p + d3, x, ref a3, ref b3);
                    }
                    var dots = Avx.ConvertToVector256Double(Sum4(a0 + b0, a1 + b1, a2 + b2, a3 + b3));
                    var sv = Avx.ConvertToVector256Double(Vector128.Create(srow[g], srow[e1 + g], srow[e2 + g], srow[e3 + g]));
                    var bv = Avx.ConvertToVector256Double(Vector128.Create(brow[g], brow[e1 + g], brow[e2 + g], brow[e3 + g]));
                    partial[g & 3] += sv * dots + bv * Vector256.Create((double)gsum[g]);
                }
                var yv = Avx.ConvertToVector128Single(scale * ((partial[0] + partial[1]) + (partial[2] + partial[3])));
                for (int r = 0; r < n; r++) y[o + r] = yv.GetElement(r);
            }
    }

    // A row through the padded-copy, long-sum route and the reference epilogue.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Slow(PackedMatrix w, Int8Activations a, int o, Int8KernelPath path)
    {
        var dots = new long[w.GroupsPerRow];
        GroupDotsVia(w, a, o, dots, path);
        return GemvInt8Reference.Combine(w, o, dots, a.GroupSums, a.Scale);
    }

    // [Σ d0, Σ d1, Σ d2, Σ d3] (int32 lanes; callers keep each group's sum below 2^31)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Sum4(Vector256<int> d0, Vector256<int> d1, Vector256<int> d2, Vector256<int> d3)
    {
        var c = Avx2.HorizontalAdd(Avx2.HorizontalAdd(d0, d1), Avx2.HorizontalAdd(d2, d3));
        return c.GetLower() + c.GetUpper();
    }

    // p itself when 64 bytes are readable there, else a zero-padded copy of what is left (junk codes meet zero activations).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Padded(byte* p, byte* end, byte* pad)
    {
        if (p + 64 <= end) return p;
        new Span<byte>(pad, 64).Clear();
        Buffer.MemoryCopy(p, pad, 64, end - p);
        return pad;
    }

    private static void Rows128(PackedMatrix w, Int8Activations a, float* y, int r0, int r1)
    {
        int gpr = w.GroupsPerRow;
        var dots = new long[gpr];
        for (int o = r0; o < r1; o++)
        {
            GroupDots128(w, a, o, dots);
            y[o] = GemvInt8Reference.Combine(w, o, dots, a.GroupSums, a.Scale);
        }
    }

    private static void GroupDots128(PackedMatrix w, Int8Activations a, int o, Span<long> dots)
    {
        int bb = w.BlockBytes, bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, u = a.Layout.U;
        byte* pad = stackalloc byte[64];
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Slots)
            for (int g = 0; g < w.GroupsPerRow; g++)
            {
                int b0 = g * bpg, steps = (Math.Min(bpg, bpr - b0) + u - 1) / u;
                byte* p = data + ((long)o * bpr + b0) * bb;
                sbyte* x = xs + a.Layout.Offsets[g];
                var d = Vector128<int>.Zero;
                for (int s = 0; s < steps; s++, p += (long)u * bb, x += 32 * u) d = Step128(w.Bits, Padded(p, data + w.Data.LongLength, pad), x, d);
                dots[g] = (long)d.GetElement(0) + d.GetElement(1) + d.GetElement(2) + d.GetElement(3);
            }
    }

    /// <summary>D_g of one row for every group through <paramref name="path"/>'s integer loop.</summary>
    private static void GroupDotsVia(PackedMatrix w, Int8Activations a, int o, Span<long> dots, Int8KernelPath path)
    {
        if (path == Int8KernelPath.Vector128) { GroupDots128(w, a, o, dots); return; }
        // the step functions of Rows<T>, returning each D_g instead of folding it into y
        int bb = w.BlockBytes, bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, u = a.Layout.U;
        byte* pad = stackalloc byte[64];
        fixed (byte* data = w.Data)
        fixed (sbyte* xs = a.Slots)
            for (int g = 0; g < w.GroupsPerRow; g++)
            {
                int b0 = g * bpg, steps = (Math.Min(bpg, bpr - b0) + u - 1) / u;
                byte* p = data + ((long)o * bpr + b0) * bb;
                sbyte* x = xs + a.Layout.Offsets[g];
                Vector256<int> d = default, e = default;
                for (int s = 0; s < steps; s++, p += (long)u * bb, x += 32 * u)
                {
                    byte* q = Padded(p, data + w.Data.LongLength, pad);
                    switch (path, w.Bits)
                    {
                        case (Int8KernelPath.Vnni, 8): Vnni8.Step(q, x, ref d, ref e); break;
                        case (Int8KernelPath.Vnni, 4): Vnni4.Step(q, x, ref d, ref e); break;
                        case (Int8KernelPath.Vnni, 3): Vnni3.Step(q, x, ref d, ref e); break;
                        case (Int8KernelPath.Vnni, 2): Vnni2.Step(q, x, ref d, ref e); break;
                        case (_, 8): Avx8.Step(q, x, ref d, ref e); break;
                        case (_, 4): Avx4.Step(q, x, ref d, ref e); break;
                        case (_, 3): Avx3.Step(q, x, ref d, ref e); break;
                        default: Avx2x2.Step(q, x, ref d, ref e); break;
                    }
                }
                // long sums: a padded row may also be a wide one
                dots[g] = Vector256.Sum(Vector256.WidenLower(d) + Vector256.WidenUpper(d)) + Vector256.Sum(Vector256.WidenLower(e) + Vector256.WidenUpper(e));
            }
    }

    /// <summary>One step: U blocks at p against 32·U slot bytes at x, accumulated into two int32 chains a and b.</summary>
    private interface IStep
    {
        static abstract int U { get; }
        static abstract Int8KernelPath Path { get; }
        static abstract void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b);
    }

    private struct Vnni8 : IStep
    {
        public static int U => 2;
        public static Int8KernelPath Path => Int8KernelPath.Vnni;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepVnni8(p, x, ref a, ref b);
    }

    private struct Vnni4 : IStep
    {
        public static int U => 2;
        public static Int8KernelPath Path => Int8KernelPath.Vnni;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepVnni4(p, x, ref a, ref b);
    }

    private struct Vnni3 : IStep
    {
        public static int U => 4;
        public static Int8KernelPath Path => Int8KernelPath.Vnni;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepVnni3(p, x, ref a, ref b);
    }

    private struct Vnni2 : IStep
    {
        public static int U => 4;
        public static Int8KernelPath Path => Int8KernelPath.Vnni;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepVnni2(p, x, ref a, ref b);
    }

    private struct Avx8 : IStep
    {
        public static int U => 2;
        public static Int8KernelPath Path => Int8KernelPath.Avx2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepAvx28(p, x, ref a, ref b);
    }

    private struct Avx4 : IStep
    {
        public static int U => 2;
        public static Int8KernelPath Path => Int8KernelPath.Avx2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepAvx24(p, x, ref a, ref b);
    }

    private struct Avx3 : IStep
    {
        public static int U => 4;
        public static Int8KernelPath Path => Int8KernelPath.Avx2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepAvx23(p, x, ref a, ref b);
    }

    private struct Avx2x2 : IStep
    {
        public static int U => 4;
        public static Int8KernelPath Path => Int8KernelPath.Avx2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Step(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b) => StepAvx22(p, x, ref a, ref b);
    }

    // ---- code extraction (256-bit): V vectors of 32 u8 codes, lane order of Int8SlotLayout; constants inline so the
    // JIT materialises them once per method (static readonly vectors would be re-read behind class-init checks) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibble() => Vector256.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Pair() => Vector256.Create((byte)3);

    // A 3-bit step is 4 blocks of 12 bytes (8 bytes of low pairs, 4 of high plane). Two overlapping 32-byte loads, v0 =
    // bytes 0..31 and v1 = bytes 16..47, hold every dword of it; vpermd + vpblendd pick the low pairs of blocks 0..3
    // (dwords v0[0,1 | 3,4 | 6,7], v1[5,6]) into one vector, and the planes of blocks (0, 1) into the low 128-bit half and
    // (2, 3) into the high half (v0[2, 5], v1[4, 7]).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> Planes) Split3(byte* p)
    {
        var v0 = Avx.LoadVector256((int*)p);
        var v1 = Avx.LoadVector256((int*)(p + 16));
        var low = Avx2.Blend(Avx2.PermuteVar8x32(v0, Vector256.Create(0, 1, 3, 4, 6, 7, 0, 0)),
                             Avx2.PermuteVar8x32(v1, Vector256.Create(0, 0, 0, 0, 0, 0, 5, 6)), 0b1100_0000);
        var planes = Avx2.Blend(Avx2.PermuteVar8x32(v0, Vector256.Create(2, 5, 0, 0, 0, 0, 0, 0)),
                                Avx2.PermuteVar8x32(v1, Vector256.Create(0, 0, 0, 0, 4, 7, 0, 0)), 0b0011_0000);
        return (low.AsByte(), planes.AsByte());
    }

    // bit 2 (value 4) of code vector k: high plane of block b, byte k, bit j → lane 8b + j. vpshufb picks plane byte
    // 4·(b mod 2) + k into every lane of block b, the AND/compare tests bit j = lane mod 8.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> HighBits3(Vector256<byte> planes, byte k)
    {
        var bit = Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        var index = Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4) + Vector256.Create(k);
        return Vector256.Equals(Avx2.Shuffle(planes, index) & bit, bit) & Vector256.Create((byte)4);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepVnni8(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        a = AvxVnni.MultiplyWideningAndAdd(a, Avx.LoadVector256(p), Avx.LoadVector256(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, Avx.LoadVector256(p + 32), Avx.LoadVector256(x + 32));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepVnni4(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var v = Avx.LoadVector256(p);
        a = AvxVnni.MultiplyWideningAndAdd(a, v & Nibble(), Avx.LoadVector256(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Nibble(), Avx.LoadVector256(x + 32));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepVnni2(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var v = Avx.LoadVector256(p).AsUInt16();
        a = AvxVnni.MultiplyWideningAndAdd(a, v.AsByte() & Pair(), Avx.LoadVector256(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, Vector256.ShiftRightLogical(v, 2).AsByte() & Pair(), Avx.LoadVector256(x + 32));
        a = AvxVnni.MultiplyWideningAndAdd(a, Vector256.ShiftRightLogical(v, 4).AsByte() & Pair(), Avx.LoadVector256(x + 64));
        b = AvxVnni.MultiplyWideningAndAdd(b, Vector256.ShiftRightLogical(v, 6).AsByte() & Pair(), Avx.LoadVector256(x + 96));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepVnni3(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var (low, planes) = Split3(p);
        var v = low.AsUInt16();
        a = AvxVnni.MultiplyWideningAndAdd(a, (v.AsByte() & Pair()) | HighBits3(planes, 0), Avx.LoadVector256(x));
        b = AvxVnni.MultiplyWideningAndAdd(b, (Vector256.ShiftRightLogical(v, 2).AsByte() & Pair()) | HighBits3(planes, 1), Avx.LoadVector256(x + 32));
        a = AvxVnni.MultiplyWideningAndAdd(a, (Vector256.ShiftRightLogical(v, 4).AsByte() & Pair()) | HighBits3(planes, 2), Avx.LoadVector256(x + 64));
        b = AvxVnni.MultiplyWideningAndAdd(b, (Vector256.ShiftRightLogical(v, 6).AsByte() & Pair()) | HighBits3(planes, 3), Avx.LoadVector256(x + 96));
    }

    // AVX2 without VNNI. 8-bit: codes and activations widened to int16, vpmaddwd. 2/3/4-bit: vpmaddubsw pairs (|·| ≤ 2·7·127
    // or 2·15·127), summed in int16 within the step (≤ 4·1778 or 2·3810), then vpmaddwd by 1 into int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepAvx28(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        a += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(p), Avx2.ConvertToVector256Int16(x))
           + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(p + 16), Avx2.ConvertToVector256Int16(x + 16));
        b += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(p + 32), Avx2.ConvertToVector256Int16(x + 32))
           + Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(p + 48), Avx2.ConvertToVector256Int16(x + 48));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepAvx24(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var v = Avx.LoadVector256(p);
        var s = Avx2.MultiplyAddAdjacent(v & Nibble(), Avx.LoadVector256(x))
              + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Nibble(), Avx.LoadVector256(x + 32));
        a += Avx2.MultiplyAddAdjacent(s, Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepAvx22(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var v = Avx.LoadVector256(p).AsUInt16();
        var s = Avx2.MultiplyAddAdjacent(v.AsByte() & Pair(), Avx.LoadVector256(x))
              + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v, 2).AsByte() & Pair(), Avx.LoadVector256(x + 32))
              + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v, 4).AsByte() & Pair(), Avx.LoadVector256(x + 64))
              + Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v, 6).AsByte() & Pair(), Avx.LoadVector256(x + 96));
        a += Avx2.MultiplyAddAdjacent(s, Vector256.Create((short)1));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StepAvx23(byte* p, sbyte* x, ref Vector256<int> a, ref Vector256<int> b)
    {
        var (low, planes) = Split3(p);
        var v = low.AsUInt16();
        var s = Avx2.MultiplyAddAdjacent((v.AsByte() & Pair()) | HighBits3(planes, 0), Avx.LoadVector256(x))
              + Avx2.MultiplyAddAdjacent((Vector256.ShiftRightLogical(v, 2).AsByte() & Pair()) | HighBits3(planes, 1), Avx.LoadVector256(x + 32))
              + Avx2.MultiplyAddAdjacent((Vector256.ShiftRightLogical(v, 4).AsByte() & Pair()) | HighBits3(planes, 2), Avx.LoadVector256(x + 64))
              + Avx2.MultiplyAddAdjacent((Vector256.ShiftRightLogical(v, 6).AsByte() & Pair()) | HighBits3(planes, 3), Avx.LoadVector256(x + 96));
        a += Avx2.MultiplyAddAdjacent(s, Vector256.Create((short)1));
    }

    // ---- portable Vector128 path: the same codes, 16 lanes at a time, int16 products widened into int32 ----

    private static Vector128<int> Step128(int bits, byte* p, sbyte* x, Vector128<int> acc)
    {
        switch (bits)
        {
            case 8:
                for (int i = 0; i < 64; i += 16) acc = Mac16(Vector128.Load(p + i), x + i, acc);
                return acc;
            case 4:
            {
                var m = Vector128.Create((byte)0x0F);
                for (int h = 0; h < 2; h++)   // 256-bit lane halves: h = 0 is block 0's 16 bytes, h = 1 block 1's
                {
                    var v = Vector128.Load(p + 16 * h);
                    acc = Mac16(v & m, x + 16 * h, acc);
                    acc = Mac16(Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m, x + 32 + 16 * h, acc);
                }
                return acc;
            }
            default:
            {
                var m = Vector128.Create((byte)3);
                for (int h = 0; h < 2; h++)   // h = 0: blocks 0, 1; h = 1: blocks 2, 3
                {
                    byte* b = p + (bits == 2 ? 16 : 24) * h;
                    var v = (bits == 2 ? Vector128.Load(b) : Vector128.Create(*(ulong*)b, *(ulong*)(b + 12)).AsByte()).AsUInt16();
                    for (int k = 0; k < 4; k++)
                    {
                        var c = Vector128.ShiftRightLogical(v, 2 * k).AsByte() & m;
                        if (bits == 3) c |= Vector128.Create(HighBit(b[8 + k]), HighBit(b[20 + k])).AsByte();
                        acc = Mac16(c, x + 32 * k + 16 * h, acc);
                    }
                }
                return acc;
            }
        }
    }

    /// <summary>8 bytes, byte j = 4 when bit j of h is set.</summary>
    private static ulong HighBit(byte h) => PackedUnits.HighBitTable[h];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Mac16(Vector128<byte> c, sbyte* x, Vector128<int> acc)
    {
        var xv = Vector128.Load(x);
        var pl = Vector128.WidenLower(c).AsInt16() * Vector128.WidenLower(xv);
        var ph = Vector128.WidenUpper(c).AsInt16() * Vector128.WidenUpper(xv);
        return acc + Vector128.WidenLower(pl) + Vector128.WidenUpper(pl) + Vector128.WidenLower(ph) + Vector128.WidenUpper(ph);
    }
}
