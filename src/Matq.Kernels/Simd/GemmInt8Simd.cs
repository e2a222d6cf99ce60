// Contract: the prefill GEMM with int8 activations, Y[t, o] for T activation rows prepared by Int8ActivationRows (each
// row quantized on its own, as the integer GEMV quantizes one), bit-identical to GemmInt8Reference — which is the
// integer GEMV's reference (GemvInt8Reference) applied row by row — and so to GemvInt8Simd run token by token.
// Per tile of 16 rows, the codes are decoded once into the 8-bit tile layout (u8 codes; Reference/PackedTile16, r = 8:
// byte 64s + 4l + b = code 4s + b of lane l; the 8-bit width is read in place), then each block of activation rows (4 on
// the 512-bit path, 2 on the 256-bit ones) runs over them with rows in int32 lanes — one weight load feeds every row of
// the block — keeping each row's exact group dot D_g and its fp32 sums in registers; the epilogue is the GEMV's
// per-lane fp32 sequence A ← fma(Scale, fma(Zero, −X_g, D_g), A), y = s_t·A (fp16 scales and zeros converted exactly,
// a symmetric tensor's one zero broadcast: Packed/PackedGroupParams). So the packed weights are read
// from memory once per call, whatever T is. Integer paths over the decoded codes:
//   Vnni      AVX-VNNI, 256-bit vpdpbusd of u8 codes (≤ 255) × 4 broadcast s8 activations into int32 (no saturation);
//   Avx512    AVX-512BW, 512-bit vpmaddubsw into int16 + vpmaddwd into int32. Codes ≤ 15 (r ≤ 4): a chunk's 8
//             sub-steps summed in int16 (≤ 8·2·15·127 = 30480) then folded; r = 8: the low and high nibbles of each
//             code byte the same way, the high sums folded ×16;
//   Avx2      the Avx512 arithmetic on 256-bit halves;
//   Vector128 portable: codes widened to int32 times the broadcast activation.
// (.NET 10 exposes vpdpbusd only as AVX-VNNI (VEX, 256-bit) or AVX10; AVX-512 machines without AVX-VNNI in CPUID —
// Zen 4 — run the Avx512 path.) D_g is exact in int32 for groups of up to MaxChunks chunks (65536 columns); a wider
// group runs the integer GEMV once per row, which sums it in int64 (same result by definition). Tiles split by
// KernelThreads; the width table's row (Packed/PackedWidths) supplies the decode, so every width has this GEMM.
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;

namespace Matq.Kernels.Simd;

public static unsafe class GemmInt8Simd
{
    /// <summary>Chunks decoded per block (8 × 512 B of u8 codes = 4 KiB, L1-resident while every token runs over it).</summary>
    public const int KBlock = 8;
    /// <summary>Chunks a group may span for int32 group dots (as GemvInt8Simd): 2048·32 = 65536 columns.</summary>
    public const int MaxChunks = 2048;
    /// <summary>Activation rows sharing each weight load.</summary>
    public const int TokenBlock = 4;

    /// <summary>Every path (the same names as the GEMV's).</summary>
    public static IReadOnlyList<Int8KernelPath> Paths { get; } = [Int8KernelPath.Vnni, Int8KernelPath.Avx512, Int8KernelPath.Avx2, Int8KernelPath.Vector128];

    /// <summary>The path Auto runs: vpdpbusd where the JIT can emit it, else the widest vpmaddubsw path, else portable.</summary>
    public static Int8KernelPath BestPath()
    {
        foreach (var p in Paths)
            if (GemvInt8Simd.IsSupported(p)) return p;
        return Int8KernelPath.Vector128;
    }

    /// <summary>Quantizes x [t, Cols] per row and runs the GEMM into y [t, Rows].</summary>
    public static void Gemm(PackedMatrix w, ReadOnlySpan<float> x, int t, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        Gemm(w, Int8ActivationRows.Prepare(w, x, t), y, path, maxThreads);
    }

    /// <summary>y [a.Rows, w.Rows] = the rows of <paramref name="a"/> times Ŵᵀ.</summary>
    public static void Gemm(PackedMatrix w, Int8ActivationRows a, Span<float> y, Int8KernelPath path = Int8KernelPath.Auto, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(a);
        if (!a.Fits(w)) throw new ArgumentException("activation rows were prepared for another matrix shape, group size or column permutation");
        int t = a.Rows;
        if (y.Length != (long)t * w.Rows) throw new ArgumentException($"y must hold {t}×{w.Rows} values, got {y.Length}");
        if (path == Int8KernelPath.Auto) path = BestPath();
        if (!GemvInt8Simd.IsSupported(path)) throw new PlatformNotSupportedException($"the {path} integer kernel needs CPU support this machine lacks");
        if (w.ChunksPerGroup > MaxChunks)
        {
            // int64 group dots: the integer GEMV per row (its wide-group path), the same result by definition
            var one = Int8Activations.Prepare(w, new float[w.Cols]);
            for (int r = 0; r < t; r++)
            {
                a.Codes.AsSpan(r * a.Stride, a.Stride).CopyTo(one.Codes);
                a.GroupSums.AsSpan(r * a.Groups, a.Groups).CopyTo(one.GroupSums);
                one.SetScale(a.Scales[r]);
                GemvInt8Simd.Gemv(w, one, y.Slice(r * w.Rows, w.Rows), w.Width.HasInt8(path) ? path : Int8KernelPath.Auto, maxThreads);
            }
            return;
        }
        var width = w.Width;
        fixed (float* yp0 = y)
        {
            nint yp = (nint)yp0;
            KernelThreads.For(w.RowTiles, maxThreads, (long)PackedMatrix.TileRows * w.PaddedCols * t,
                (t0, t1) => width.Int8GemmTiles(w, a, path, (float*)yp, t0, t1));
        }
    }

    // The width table's entry point (Packed/PackedWidths): tiles t0..t1 of one width TW. The SIMD paths run whole-tile
    // loops below; the portable one decodes blocks of KBlock chunks per group (with the width-generic decode, so the
    // Vector128 tests cover it for every width) and sums through memory.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Tiles<TW>(PackedMatrix w, Int8ActivationRows a, Int8KernelPath path, float* y, int t0, int t1) where TW : struct, IPackedWidth
    {
        int t = a.Rows, gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes, lp = a.Stride;
        // the zero lanes' source (one constant or an fp16 array) is a type argument of the SIMD loops, fixed here per call
        bool one = w.Params.Symmetric;
        if (path == Int8KernelPath.Avx512)
        {
            if (one) TilesAvx512<TW, OneZero>(w, a, y, t0, t1); else TilesAvx512<TW, GroupZeros>(w, a, y, t0, t1);
            return;
        }
        if (path is Int8KernelPath.Vnni or Int8KernelPath.Avx2)
        {
            if (one) TilesAvx256<TW, OneZero>(w, a, path == Int8KernelPath.Vnni, y, t0, t1);
            else TilesAvx256<TW, GroupZeros>(w, a, path == Int8KernelPath.Vnni, y, t0, t1);
            return;
        }
        var dbuf = ArrayPool<int>.Shared.Rent(t * 16);
        var fbuf = ArrayPool<float>.Shared.Rent(t * 32 + 16);
        var ubuf = ArrayPool<byte>.Shared.Rent(KBlock * 512 + 64);
        try
        {
            fixed (byte* data = w.Data, ub0 = ubuf)
            fixed (sbyte* xs = a.Codes)
            fixed (int* d = dbuf, gsum = a.GroupSums)
            fixed (float* acc = fbuf, rs = a.Scales)
            fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            {
                var gp = new PackedGroupParams.Lanes(w.Params);
                byte* ub = (byte*)(((nint)ub0 + 63) & ~(nint)63);
                float* outv = acc + t * 32;
                for (int tile = t0; tile < t1; tile++)
                {
                    new Span<float>(acc, t * 32).Clear();   // per token: A lanes 0..15 (16..31 unused)
                    byte* tp = data + tile * w.TileBytes;
                    for (int g = 0, c0 = 0; g < gpr; g++, c0 += cpg)
                    {
                        new Span<int>(d, t * 16).Clear();
                        int c1 = Math.Min(c0 + cpg, cpr);
                        for (int kb = c0; kb < c1; kb += KBlock)
                        {
                            int n = Math.Min(KBlock, c1 - kb);
                            byte* u;
                            if (TW.Bits == 8) u = tp + (long)kb * cb;
                            else
                            {
                                for (int j = 0; j < n; j++) DecodeU8Portable<TW>(tp + (long)(kb + j) * cb, ub + 512 * j);
                                u = ub;
                            }
                            sbyte* xk = xs + 32 * kb;
                            for (int r = 0; r < t; r++) Portable(u, n, xk + (long)r * lp, d + 16 * r);
                        }
                        Half* s = sc + ((long)tile * gpr + g) * 16, z = zc + ((long)tile * gpr + g) * 16;
                        for (int r = 0; r < t; r++) Epilogue(s, z, gp, gsum[r * gpr + g], d + 16 * r, acc + 32 * r);
                    }
                    int rows = Math.Min(16, w.Rows - tile * 16);
                    for (int r = 0; r < t; r++)
                    {
                        float* ar = acc + 32 * r;
                        float sr = rs[r];
                        float* yr = y + (long)r * w.Rows + tile * 16;
                        if (Vector256.IsHardwareAccelerated)
                        {
                            var sv = Vector256.Create(sr);
                            (sv * Vector256.Load(ar)).Store(outv);
                            (sv * Vector256.Load(ar + 8)).Store(outv + 8);
                        }
                        else
                            for (int i = 0; i < 16; i++) outv[i] = sr * ar[i];
                        for (int i = 0; i < rows; i++) yr[i] = outv[i];
                    }
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(dbuf);
            ArrayPool<float>.Shared.Return(fbuf);
            ArrayPool<byte>.Shared.Return(ubuf);
        }
    }

    // A ← fma(Scale, fma(Zero, −X, (float)D), A) per lane (the reference's single-rounding fmas)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Epilogue(Half* s, Half* z, PackedGroupParams.Lanes gp, int x, int* d, float* ab)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var nx = Vector256.Create(-(float)x);
            Vector256.FusedMultiplyAdd(gp.S256(s), Vector256.FusedMultiplyAdd(gp.Z256(z), nx, Vector256.ConvertToSingle(Vector256.Load(d))), Vector256.Load(ab)).Store(ab);
            Vector256.FusedMultiplyAdd(gp.S256(s + 8), Vector256.FusedMultiplyAdd(gp.Z256(z + 8), nx, Vector256.ConvertToSingle(Vector256.Load(d + 8))), Vector256.Load(ab + 8)).Store(ab + 8);
        }
        else
            for (int i = 0; i < 16; i += 4)
            {
                var sv = gp.S128(s + i);
                var zv = gp.Z128(z + i);
                for (int j = 0; j < 4; j++)
                    ab[i + j] = MathF.FusedMultiplyAdd(sv.GetElement(j), MathF.FusedMultiplyAdd(zv.GetElement(j), -(float)x, d[i + j]), ab[i + j]);
            }
    }

    /// <summary>Chunk p of width TW into dst: 512 bytes in the 8-bit tile layout (byte 64s + 4l + b = code 4s + b of lane l).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void DecodeU8<TW>(byte* p, byte* dst) where TW : struct, IPackedWidth
    {
        if (Vector256.IsHardwareAccelerated && TW.Bits == 4)
            for (int s = 0; s < 4; s++)
                for (int h = 0; h < 64; h += 32)
                {
                    var v = Vector256.Load(p + 64 * s + h);
                    (v & Vector256.Create((byte)0x0F)).Store(dst + 128 * s + h);                                  // low nibbles: codes 8s..8s+3
                    (Vector256.ShiftRightLogical(v, 4) & Vector256.Create((byte)0x0F)).Store(dst + 128 * s + 64 + h);   // high: 8s+4..8s+7
                }
        else if (Vector256.IsHardwareAccelerated && TW.Bits == 2)
            for (int s = 0; s < 2; s++)
                for (int h = 0; h < 64; h += 32)
                {
                    var v = Vector256.Load(p + 64 * s + h);
                    var m = Vector256.Create((byte)3);
                    (v & m).Store(dst + 256 * s + h);   // pair p: codes 16s + 4p.. = sub-step 4s + p
                    (Vector256.ShiftRightLogical(v, 2) & m).Store(dst + 256 * s + 64 + h);
                    (Vector256.ShiftRightLogical(v, 4) & m).Store(dst + 256 * s + 128 + h);
                    (Vector256.ShiftRightLogical(v, 6) & m).Store(dst + 256 * s + 192 + h);
                }
        else if (Vector256.IsHardwareAccelerated && TW.Bits == 3)
            for (int h = 0; h < 64; h += 32)
            {
                // the plane selects of Int8DotsVnni.W3: quad q's code sits at bits 0, 2, 4, 5 (q mod 4 = 0..3) of n or m
                var m7 = Vector256.Create((byte)7);
                var hp = Vector256.Load(p + 128 + h);
                var l = Vector256.Load(p + h);
                var n = Vector256.ConditionalSelect(Vector256.Create((byte)0x33), l, hp);
                var mm = Vector256.ConditionalSelect(Vector256.Create((byte)0xCC), l, hp);
                (n & m7).Store(dst + h);
                (Vector256.ShiftRightLogical(mm, 2) & m7).Store(dst + 64 + h);
                (Vector256.ShiftRightLogical(n, 4) & m7).Store(dst + 128 + h);
                (Vector256.ShiftRightLogical(mm, 5) & m7).Store(dst + 192 + h);
                l = Vector256.Load(p + 64 + h);
                n = Vector256.ConditionalSelect(Vector256.Create((byte)0x33), l, Vector256.ShiftRightLogical(hp.AsUInt16(), 1).AsByte());
                mm = Vector256.ConditionalSelect(Vector256.Create((byte)0xCC), l, Vector256.ShiftLeft(hp.AsUInt16(), 4).AsByte());
                (n & m7).Store(dst + 256 + h);
                (Vector256.ShiftRightLogical(mm, 2) & m7).Store(dst + 320 + h);
                (Vector256.ShiftRightLogical(n, 4) & m7).Store(dst + 384 + h);
                (Vector256.ShiftRightLogical(mm, 5) & m7).Store(dst + 448 + h);
            }
        else DecodeU8Portable<TW>(p, dst);
    }

    /// <summary>The same for any width (a new row of the table, or no 256-bit vectors): the width's field extraction
    /// (IPackedWidth.Code128), 4 codes packed per int32 lane. The portable path always decodes this way.</summary>
    internal static void DecodeU8Portable<TW>(byte* p, byte* dst) where TW : struct, IPackedWidth
    {
        for (int s = 0; s < 8; s++)
            for (int k = 0; k < 4; k++)
                (TW.Code128(p, 4 * s, k) | (TW.Code128(p, 4 * s + 1, k) << 8) | (TW.Code128(p, 4 * s + 2, k) << 16) | (TW.Code128(p, 4 * s + 3, k) << 24))
                    .Store((int*)(dst + 64 * s + 16 * k));
    }

    // --- integer loops over n decoded chunks u (512 B each) and activation rows x (stride lp), adding into d [rows][16] ---

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> X256(sbyte* x) => Vector256.Create(*(int*)x).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> X512(sbyte* x) => Vector512.Create(*(int*)x).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dp(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x) => AvxVnni.MultiplyWideningAndAdd(acc, u, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Mul512(Vector512<byte> u, Vector512<sbyte> x) => Avx512BW.MultiplyAddAdjacent(u, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Fold512(Vector512<short> s, short by) => Avx512BW.MultiplyAddAdjacent(s, Vector512.Create(by));

    // The Avx512 path: a tile's codes are decoded once into u8 (whole rows of the tile, cpr·512 B), then for each block
    // of 4 activation rows every group's dots stay in registers and fold at once into per-token fp32 A and B (16 lanes
    // each, the reference's fma sequence), so nothing per group goes through memory.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx512<TW, TZ>(PackedMatrix w, Int8ActivationRows a, float* y, int t0, int t1) where TW : struct, IPackedWidth where TZ : struct, IGroupZeros
    {
        int t = a.Rows, gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes, lp = a.Stride;
        var ubuf = TW.Bits == 8 ? null : ArrayPool<byte>.Shared.Rent(cpr * 512 + 64);
        var outv = stackalloc float[16 * 4];
        try
        {
            fixed (byte* data = w.Data, ub0 = ubuf)
            fixed (sbyte* xs = a.Codes)
            fixed (int* gsum = a.GroupSums)
            fixed (float* rs = a.Scales)
            fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            {
                byte* ub = (byte*)(((nint)ub0 + 63) & ~(nint)63);
                var gp = new PackedGroupParams.Lanes(w.Params);
                for (int tile = t0; tile < t1; tile++)
                {
                    byte* tp = data + tile * w.TileBytes, u = tp;
                    if (TW.Bits != 8)
                    {
                        for (int c = 0; c < cpr; c++) DecodeU8<TW>(tp + (long)c * cb, ub + 512 * c);
                        u = ub;
                    }
                    Half* s = sc + (long)tile * gpr * 16, z = zc + (long)tile * gpr * 16;
                    int rows = Math.Min(16, w.Rows - tile * 16);
                    for (int r = 0; r < t; r += 4)
                    {
                        int nt = Math.Min(4, t - r);
                        if (nt == 4)
                        {
                            if (TW.Bits > 4) Avx512Wide4<TZ>(u, xs + (long)r * lp, lp, s, z, gp, gsum + r * gpr, gpr, cpg, cpr, outv);
                            else Avx512Narrow4<TZ>(u, xs + (long)r * lp, lp, s, z, gp, gsum + r * gpr, gpr, cpg, cpr, outv);
                        }
                        else
                            for (int j = 0; j < nt; j++)
                                Avx512One<TZ>(u, xs + (long)(r + j) * lp, s, z, gp, gsum + (r + j) * gpr, gpr, cpg, cpr, outv + 16 * j, TW.Bits > 4);
                        for (int j = 0; j < nt; j++)
                        {
                            float* yr = y + (long)(r + j) * w.Rows + tile * 16;
                            var o = Vector512.Create(rs[r + j]) * Vector512.Load(outv + 16 * j);
                            if (rows == 16) o.Store(yr);
                            else { o.Store(outv + 16 * j); for (int i = 0; i < rows; i++) yr[i] = outv[16 * j + i]; }
                        }
                    }
                }
            }
        }
        finally
        {
            if (ubuf is not null) ArrayPool<byte>.Shared.Return(ubuf);
        }
    }

    // The 256-bit paths (AVX-VNNI vpdpbusd, AVX2 vpmaddubsw): the structure of TilesAvx512 with 2 activation rows per
    // block, each row's 16 lanes in two 8-lane halves (bytes 0..31 and 32..63 of a sub-step): 4 int32 dots and 8 fp32
    // sums in registers (16 ymm registers suffice for VNNI).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TilesAvx256<TW, TZ>(PackedMatrix w, Int8ActivationRows a, bool vnni, float* y, int t0, int t1) where TW : struct, IPackedWidth where TZ : struct, IGroupZeros
    {
        int t = a.Rows, gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes, lp = a.Stride;
        bool wide = TW.Bits > 4;
        var ubuf = TW.Bits == 8 ? null : ArrayPool<byte>.Shared.Rent(cpr * 512 + 64);
        var outv = stackalloc float[16 * 2];
        try
        {
            fixed (byte* data = w.Data, ub0 = ubuf)
            fixed (sbyte* xs = a.Codes)
            fixed (int* gsum = a.GroupSums)
            fixed (float* rs = a.Scales)
            fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            {
                byte* ub = (byte*)(((nint)ub0 + 63) & ~(nint)63);
                var gp = new PackedGroupParams.Lanes(w.Params);
                for (int tile = t0; tile < t1; tile++)
                {
                    byte* tp = data + tile * w.TileBytes, u = tp;
                    if (TW.Bits != 8)
                    {
                        for (int c = 0; c < cpr; c++) DecodeU8<TW>(tp + (long)c * cb, ub + 512 * c);
                        u = ub;
                    }
                    Half* s = sc + (long)tile * gpr * 16, z = zc + (long)tile * gpr * 16;
                    int rows = Math.Min(16, w.Rows - tile * 16);
                    for (int r = 0; r < t; r += 2)
                    {
                        int nt = Math.Min(2, t - r), r1 = r + nt - 1;   // an odd last row runs as both rows of the block
                        sbyte* x0 = xs + (long)r * lp, x1 = xs + (long)r1 * lp;
                        int* g0 = gsum + r * gpr, g1 = gsum + r1 * gpr;
                        if (vnni) Vnni2<TZ>(u, x0, x1, s, z, gp, g0, g1, gpr, cpg, cpr, outv);
                        else if (wide) Avx2Wide2<TZ>(u, x0, x1, s, z, gp, g0, g1, gpr, cpg, cpr, outv);
                        else Avx2Narrow2<TZ>(u, x0, x1, s, z, gp, g0, g1, gpr, cpg, cpr, outv);
                        for (int j = 0; j < nt; j++)
                        {
                            float* yr = y + (long)(r + j) * w.Rows + tile * 16;
                            var sv = Vector256.Create(rs[r + j]);
                            (sv * Vector256.Load(outv + 16 * j)).Store(outv + 16 * j);
                            (sv * Vector256.Load(outv + 16 * j + 8)).Store(outv + 16 * j + 8);
                            for (int i = 0; i < rows; i++) yr[i] = outv[16 * j + i];
                        }
                    }
                }
            }
        }
        finally
        {
            if (ubuf is not null) ArrayPool<byte>.Shared.Return(ubuf);
        }
    }

    // A ← fma(Scale, fma(Zero, −X, D), A) on 8 lanes; nx = −(float)X
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fold(Vector256<int> d, float nx, Vector256<float> sv, Vector256<float> zv, ref Vector256<float> av) =>
        av = Vector256.FusedMultiplyAdd(sv, Vector256.FusedMultiplyAdd(zv, Vector256.Create(nx), Vector256.ConvertToSingle(d)), av);

    // AVX-VNNI, 2 activation rows (x0, x1): vpdpbusd of u8 codes (≤ 255) straight into int32; out2 [2][16] = A
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vnni2<TZ>(byte* u, sbyte* x0, sbyte* x1, Half* s, Half* z, PackedGroupParams.Lanes gp, int* g0, int* g1, int gpr, int cpg, int cpr, float* out2) where TZ : struct, IGroupZeros
    {
        Vector256<float> A0 = default, A1 = default, A2 = default, A3 = default;
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector256<int> d0 = default, d1 = default, d2 = default, d3 = default;   // row 0 halves, row 1 halves
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                for (int k = 0; k < 8; k++)
                {
                    var v0 = Vector256.Load(q + 64 * k);
                    var v1 = Vector256.Load(q + 64 * k + 32);
                    int o = 32 * c + 4 * k;
                    var xv = X256(x0 + o);
                    d0 = Dp(d0, v0, xv); d1 = Dp(d1, v1, xv);
                    xv = X256(x1 + o);
                    d2 = Dp(d2, v0, xv); d3 = Dp(d3, v1, xv);
                }
            }
            Vector256<float> sl = gp.S256(s), sh = gp.S256(s + 8), zl = gp.Z256<TZ>(z), zh = gp.Z256<TZ>(z + 8);
            float x0g = -(float)g0[g], x1g = -(float)g1[g];
            Fold(d0, x0g, sl, zl, ref A0); Fold(d1, x0g, sh, zh, ref A1);
            Fold(d2, x1g, sl, zl, ref A2); Fold(d3, x1g, sh, zh, ref A3);
        }
        A0.Store(out2); A1.Store(out2 + 8); A2.Store(out2 + 16); A3.Store(out2 + 24);
    }

    // AVX2, codes ≤ 15, 2 activation rows: a chunk's 8 sub-steps in int16 (≤ 30480), folded once per chunk
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Narrow2<TZ>(byte* u, sbyte* x0, sbyte* x1, Half* s, Half* z, PackedGroupParams.Lanes gp, int* g0, int* g1, int gpr, int cpg, int cpr, float* out2) where TZ : struct, IGroupZeros
    {
        Vector256<float> A0 = default, A1 = default, A2 = default, A3 = default;
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector256<int> d0 = default, d1 = default, d2 = default, d3 = default;
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
                for (int k = 0; k < 8; k++)
                {
                    var v0 = Vector256.Load(q + 64 * k);
                    var v1 = Vector256.Load(q + 64 * k + 32);
                    int o = 32 * c + 4 * k;
                    var xv = X256(x0 + o);
                    p0 += Mul256(v0, xv); p1 += Mul256(v1, xv);
                    xv = X256(x1 + o);
                    p2 += Mul256(v0, xv); p3 += Mul256(v1, xv);
                }
                d0 += Fold256(p0, 1); d1 += Fold256(p1, 1); d2 += Fold256(p2, 1); d3 += Fold256(p3, 1);
            }
            Vector256<float> sl = gp.S256(s), sh = gp.S256(s + 8), zl = gp.Z256<TZ>(z), zh = gp.Z256<TZ>(z + 8);
            float x0g = -(float)g0[g], x1g = -(float)g1[g];
            Fold(d0, x0g, sl, zl, ref A0); Fold(d1, x0g, sh, zh, ref A1);
            Fold(d2, x1g, sl, zl, ref A2); Fold(d3, x1g, sh, zh, ref A3);
        }
        A0.Store(out2); A1.Store(out2 + 8); A2.Store(out2 + 16); A3.Store(out2 + 24);
    }

    // AVX2, 8-bit codes, 2 activation rows: low and high nibbles in int16 apart (≤ 30480 each), the high sums folded ×16
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Wide2<TZ>(byte* u, sbyte* x0, sbyte* x1, Half* s, Half* z, PackedGroupParams.Lanes gp, int* g0, int* g1, int gpr, int cpg, int cpr, float* out2) where TZ : struct, IGroupZeros
    {
        Vector256<float> A0 = default, A1 = default, A2 = default, A3 = default;
        var m = Vector256.Create((byte)0x0F);
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector256<int> d0 = default, d1 = default, d2 = default, d3 = default;
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                Vector256<short> l0 = default, l1 = default, l2 = default, l3 = default, h0 = default, h1 = default, h2 = default, h3 = default;
                for (int k = 0; k < 8; k++)
                {
                    var v0 = Vector256.Load(q + 64 * k);
                    var v1 = Vector256.Load(q + 64 * k + 32);
                    Vector256<byte> lo0 = v0 & m, hi0 = Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & m;
                    Vector256<byte> lo1 = v1 & m, hi1 = Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & m;
                    int o = 32 * c + 4 * k;
                    var xv = X256(x0 + o);
                    l0 += Mul256(lo0, xv); h0 += Mul256(hi0, xv); l1 += Mul256(lo1, xv); h1 += Mul256(hi1, xv);
                    xv = X256(x1 + o);
                    l2 += Mul256(lo0, xv); h2 += Mul256(hi0, xv); l3 += Mul256(lo1, xv); h3 += Mul256(hi1, xv);
                }
                d0 += Fold256(l0, 1) + Fold256(h0, 16); d1 += Fold256(l1, 1) + Fold256(h1, 16);
                d2 += Fold256(l2, 1) + Fold256(h2, 16); d3 += Fold256(l3, 1) + Fold256(h3, 16);
            }
            Vector256<float> sl = gp.S256(s), sh = gp.S256(s + 8), zl = gp.Z256<TZ>(z), zh = gp.Z256<TZ>(z + 8);
            float x0g = -(float)g0[g], x1g = -(float)g1[g];
            Fold(d0, x0g, sl, zl, ref A0); Fold(d1, x0g, sh, zh, ref A1);
            Fold(d2, x1g, sl, zl, ref A2); Fold(d3, x1g, sh, zh, ref A3);
        }
        A0.Store(out2); A1.Store(out2 + 8); A2.Store(out2 + 16); A3.Store(out2 + 24);
    }

    // A ← fma(Scale, fma(Zero, −X, D), A) on 16 lanes; nx = −(float)X
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fold(Vector512<int> d, float nx, Vector512<float> sv, Vector512<float> zv, ref Vector512<float> av)
        => av = Vector512.FusedMultiplyAdd(sv, Vector512.FusedMultiplyAdd(zv, Vector512.Create(nx), Vector512.ConvertToSingle(d)), av);

    // codes ≤ 15, 4 activation rows: a chunk's 8 sub-steps in int16 (≤ 8·2·15·127 = 30480), folded once per chunk;
    // out[j][16] = A of row j (before its scale s_j)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Narrow4<TZ>(byte* u, sbyte* x, int lp, Half* s, Half* z, PackedGroupParams.Lanes gp, int* gs, int gpr, int cpg, int cpr, float* out4) where TZ : struct, IGroupZeros
    {
        Vector512<float> A0 = default, A1 = default, A2 = default, A3 = default;
        sbyte* x1 = x + lp, x2 = x1 + lp, x3 = x2 + lp;
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default;
                for (int k = 0; k < 8; k++)
                {
                    var v = Vector512.Load(q + 64 * k);
                    int o = 32 * c + 4 * k;
                    s0 += Mul512(v, X512(x + o));
                    s1 += Mul512(v, X512(x1 + o));
                    s2 += Mul512(v, X512(x2 + o));
                    s3 += Mul512(v, X512(x3 + o));
                }
                a0 += Fold512(s0, 1); a1 += Fold512(s1, 1); a2 += Fold512(s2, 1); a3 += Fold512(s3, 1);
            }
            var sv = gp.S512(s);
            var zv = gp.Z512<TZ>(z);
            Fold(a0, -(float)gs[g], sv, zv, ref A0);
            Fold(a1, -(float)gs[gpr + g], sv, zv, ref A1);
            Fold(a2, -(float)gs[2 * gpr + g], sv, zv, ref A2);
            Fold(a3, -(float)gs[3 * gpr + g], sv, zv, ref A3);
        }
        A0.Store(out4); A1.Store(out4 + 16); A2.Store(out4 + 32); A3.Store(out4 + 48);
    }

    // 8-bit codes, 4 activation rows: low and high nibbles summed apart in int16 (≤ 30480 each), the high sums folded ×16
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Wide4<TZ>(byte* u, sbyte* x, int lp, Half* s, Half* z, PackedGroupParams.Lanes gp, int* gs, int gpr, int cpg, int cpr, float* out4) where TZ : struct, IGroupZeros
    {
        Vector512<float> A0 = default, A1 = default, A2 = default, A3 = default;
        sbyte* x1 = x + lp, x2 = x1 + lp, x3 = x2 + lp;
        var m = Vector512.Create((byte)0x0F);
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                Vector512<short> l0 = default, l1 = default, l2 = default, l3 = default, h0 = default, h1 = default, h2 = default, h3 = default;
                for (int k = 0; k < 8; k++)
                {
                    var v = Vector512.Load(q + 64 * k);
                    var lo = v & m;
                    var hi = Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m;
                    int o = 32 * c + 4 * k;
                    var xv = X512(x + o);
                    l0 += Mul512(lo, xv); h0 += Mul512(hi, xv);
                    xv = X512(x1 + o);
                    l1 += Mul512(lo, xv); h1 += Mul512(hi, xv);
                    xv = X512(x2 + o);
                    l2 += Mul512(lo, xv); h2 += Mul512(hi, xv);
                    xv = X512(x3 + o);
                    l3 += Mul512(lo, xv); h3 += Mul512(hi, xv);
                }
                a0 += Fold512(l0, 1) + Fold512(h0, 16); a1 += Fold512(l1, 1) + Fold512(h1, 16);
                a2 += Fold512(l2, 1) + Fold512(h2, 16); a3 += Fold512(l3, 1) + Fold512(h3, 16);
            }
            var sv = gp.S512(s);
            var zv = gp.Z512<TZ>(z);
            Fold(a0, -(float)gs[g], sv, zv, ref A0);
            Fold(a1, -(float)gs[gpr + g], sv, zv, ref A1);
            Fold(a2, -(float)gs[2 * gpr + g], sv, zv, ref A2);
            Fold(a3, -(float)gs[3 * gpr + g], sv, zv, ref A3);
        }
        A0.Store(out4); A1.Store(out4 + 16); A2.Store(out4 + 32); A3.Store(out4 + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512One<TZ>(byte* u, sbyte* x, Half* s, Half* z, PackedGroupParams.Lanes gp, int* gs, int gpr, int cpg, int cpr, float* out1, bool wide) where TZ : struct, IGroupZeros
    {
        Vector512<float> A = default;
        var m = Vector512.Create((byte)0x0F);
        for (int g = 0, c = 0; g < gpr; g++, s += 16, z += 16)
        {
            Vector512<int> acc = default;
            for (int c1 = Math.Min(c + cpg, cpr); c < c1; c++)
            {
                byte* q = u + 512 * c;
                Vector512<short> l = default, h = default;
                for (int k = 0; k < 8; k++)
                {
                    var v = Vector512.Load(q + 64 * k);
                    var xv = X512(x + 32 * c + 4 * k);
                    if (wide)
                    {
                        l += Mul512(v & m, xv);
                        h += Mul512(Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m, xv);
                    }
                    else l += Mul512(v, xv);
                }
                acc += wide ? Fold512(l, 1) + Fold512(h, 16) : Fold512(l, 1);
            }
            Fold(acc, -(float)gs[g], gp.S512(s), gp.Z512<TZ>(z), ref A);
        }
        A.Store(out1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mul256(Vector256<byte> u, Vector256<sbyte> x) => Avx2.MultiplyAddAdjacent(u, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Fold256(Vector256<short> s, short by) => Avx2.MultiplyAddAdjacent(s, Vector256.Create(by));

    // portable: code byte b of each int32 lane widened, times its activation, added (|code·q| ≤ 255·127)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Portable(byte* u, int n, sbyte* x, int* d)
    {
        Vector128<int> a0 = Vector128.Load(d), a1 = Vector128.Load(d + 4), a2 = Vector128.Load(d + 8), a3 = Vector128.Load(d + 12);
        var m = Vector128.Create(0xFFu);
        for (int c = 0; c < n; c++, u += 512)
            for (int s = 0; s < 8; s++)
            {
                uint* q = (uint*)(u + 64 * s);
                Vector128<uint> v0 = Vector128.Load(q), v1 = Vector128.Load(q + 4), v2 = Vector128.Load(q + 8), v3 = Vector128.Load(q + 12);
                for (int b = 0; b < 4; b++)
                {
                    var xv = Vector128.Create((int)x[32 * c + 4 * s + b]);
                    a0 += (Vector128.ShiftRightLogical(v0, 8 * b) & m).AsInt32() * xv;
                    a1 += (Vector128.ShiftRightLogical(v1, 8 * b) & m).AsInt32() * xv;
                    a2 += (Vector128.ShiftRightLogical(v2, 8 * b) & m).AsInt32() * xv;
                    a3 += (Vector128.ShiftRightLogical(v3, 8 * b) & m).AsInt32() * xv;
                }
            }
        a0.Store(d); a1.Store(d + 4); a2.Store(d + 8); a3.Store(d + 12);
    }
}
