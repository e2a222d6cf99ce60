// Contract: vectorized y = Ŵx over a PackedMatrix (fp32 activations), equal to GemvPackedReference within float rounding
// (summation order differs). Rows sit in the lanes of the packed tiles (Reference/PackedTile16): per group, each code
// field is shifted down, masked and converted in its lane and multiplied by its broadcast activation into per-row sums
// Σ S·x, folded as A ← fma(Scale, fma(Zero, −Σx, Σ S·x), A), y = A (fp16 scales and zeros, the fold of
// Packed/PackedGroupParams; a symmetric tensor's one zero is broadcast, no bytes read). AVX2+FMA path (two 8-row halves per
// tile) where present, a portable Vector128 path (four 4-row quarters) otherwise; tiles split by KernelThreads. One
// IPackedWidth struct per width; the width table (Packed/PackedWidths) picks its tile loop once per call.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;
using static Matq.Kernels.Simd.PackedFields;

namespace Matq.Kernels.Simd;

public static unsafe class GemvPackedSimd
{
    /// <summary>True when the Vector256 AVX2+FMA path runs (else the Vector128 path).</summary>
    public static bool Avx2Path => Avx2.IsSupported && Fma.IsSupported;

    /// <param name="forceVector128">Run the portable path even where AVX2 exists (tests cover both).</param>
    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y, bool forceVector128 = false, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        var xp = new float[w.PaddedCols];
        var gs = new float[w.GroupsPerRow];
        w.PrepareInput(x, xp, gs);
        bool avx = Avx2Path && !forceVector128;
        var width = w.Width;   // the width table's row: its tile loop is picked once per call
        fixed (float* yp0 = y)
        {
            nint yp = (nint)yp0;
            KernelThreads.For(w.RowTiles, maxThreads, (long)PackedMatrix.TileRows * w.PaddedCols,
                (t0, t1) => width.Fp32Tiles(avx, w, xp, gs, (float*)yp, t0, t1));
        }
    }

    // The width table's fp32 entry points (Packed/PackedWidths): whole tiles t0..t1 of one width.
    internal static void Tiles256<TW>(PackedMatrix w, float[] xpa, float[] gsa, float* y, int t0, int t1) where TW : struct, IPackedWidth
    {
        if (w.Params.Symmetric) Tiles256<TW, OneZero>(w, xpa, gsa, y, t0, t1);
        else Tiles256<TW, GroupZeros>(w, xpa, gsa, y, t0, t1);
    }

    // the zero lanes' source (one constant or an fp16 array) fixed per call by TZ
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tiles256<TW, TZ>(PackedMatrix w, float[] xpa, float[] gsa, float* y, int t0, int t1) where TW : struct, IPackedWidth where TZ : struct, IGroupZeros
    {
        int gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes;
        Vector256<float> mg = Vector256.Create(w.Params.Magic), zk = Vector256.Create(w.Params.ZeroCode);
        float zm = PackedGroupParams.ZeroMagic;
        var outv = stackalloc float[16];
        fixed (byte* data = w.Data)
        fixed (float* xp = xpa, gs = gsa)
        fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            for (int t = t0; t < t1; t++)
            {
                byte* tile = data + t * w.TileBytes;
                Half* st = sc + (long)t * gpr * 16, zt = zc + (long)t * gpr * 16;
                Vector256<float> A0 = default, A1 = default;
                for (int g = 0; g < gpr; g++)
                {
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
                    int ch1 = Math.Min(cpr, (g + 1) * cpg);
                    for (int ch = g * cpg; ch < ch1; ch++)
                    {
                        byte* p = tile + (long)ch * cb;
                        float* xc = xp + 32 * ch;
                        TW.Chunk(p, xc, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
                    }
                    Half* s = st + 16 * g, z = zt + 16 * g;
                    var nx = Vector256.Create(-gs[g]);
                    Vector256<float> z0 = TZ.PerGroup ? PackedGroupParams.Load256(z, zm) : zk, z1 = TZ.PerGroup ? PackedGroupParams.Load256(z + 8, zm) : zk;
                    A0 = Fma.MultiplyAdd(PackedGroupParams.Scale256(s, mg), Fma.MultiplyAdd(z0, nx, (a0 + a1) + (a2 + a3)), A0);
                    A1 = Fma.MultiplyAdd(PackedGroupParams.Scale256(s + 8, mg), Fma.MultiplyAdd(z1, nx, (c0 + c1) + (c2 + c3)), A1);
                }
                A0.Store(outv);
                A1.Store(outv + 8);
                int n = Math.Min(16, w.Rows - t * 16);
                for (int r = 0; r < n; r++) y[t * 16 + r] = outv[r];
            }
    }

    internal static void Tiles128<TW>(PackedMatrix w, float[] xpa, float[] gsa, float* y, int t0, int t1) where TW : struct, IPackedWidth
    {
        int gpr = w.GroupsPerRow, cpg = w.ChunksPerGroup, cpr = w.ChunksPerRow, cb = w.ChunkBytes;
        var outv = stackalloc float[16];
        var sums = stackalloc Vector128<float>[4];
        var gp = new PackedGroupParams.Lanes(w.Params);
        fixed (byte* data = w.Data)
        fixed (float* xp = xpa, gs = gsa)
        fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
            for (int t = t0; t < t1; t++)
            {
                byte* tile = data + t * w.TileBytes;
                Half* st = sc + (long)t * gpr * 16, zt = zc + (long)t * gpr * 16;
                for (int k = 0; k < 4; k++) Vector128<float>.Zero.Store(outv + 4 * k);
                for (int g = 0; g < gpr; g++)
                {
                    for (int k = 0; k < 4; k++) sums[k] = default;
                    int ch1 = Math.Min(cpr, (g + 1) * cpg);
                    for (int ch = g * cpg; ch < ch1; ch++)
                    {
                        byte* p = tile + (long)ch * cb;
                        for (int i = 0; i < 32; i++)
                        {
                            var xv = Vector128.Create(xp[32 * ch + i]);
                            for (int k = 0; k < 4; k++) sums[k] += Vector128.ConvertToSingle(TW.Code128(p, i, k)) * xv;
                        }
                    }
                    var nx = Vector128.Create(-gs[g]);
                    for (int k = 0; k < 4; k++)
                        (Vector128.Load(outv + 4 * k) + gp.S128(st + 16 * g + 4 * k) * (gp.Z128(zt + 16 * g + 4 * k) * nx + sums[k])).Store(outv + 4 * k);
                }
                int n = Math.Min(16, w.Rows - t * 16);
                for (int r = 0; r < n; r++) y[t * 16 + r] = outv[r];
            }
    }

    // field (v >> shift) & mask of every lane, converted, times the broadcast activation, into acc
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    // (shift is a constant at every call once inlined, so the JIT emits the immediate-count shift)
    private static Vector256<float> Mac(Vector256<uint> v, int shift, uint mask, float x, Vector256<float> acc) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single((Vector256.ShiftRightLogical(v, shift) & Vector256.Create(mask)).AsInt32()), Vector256.Create(x), acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> L(byte* p) => Avx.LoadVector256((uint*)p);

    internal struct Width8 : IPackedWidth
    {
        public static int Bits => 8;
        public static int ChunkBytes => 512;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Code256(byte* p, int i, int h) => Field256(p, i >> 2, 8 * (i & 3), 0xFFu, h).AsInt32();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Code128(byte* p, int i, int k) => Field128(p, i >> 2, 8 * (i & 3), 0xFFu, k).AsInt32();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(byte* p, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
            ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
        {
            for (int s = 0; s < 8; s++, p += 64, x += 4)
            {
                var v = L(p);
                var u = L(p + 32);
                Lanes(v, u, 0, 0xFF, x, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            }
        }
    }

    internal struct Width4 : IPackedWidth
    {
        public static int Bits => 4;
        public static int ChunkBytes => 256;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Code256(byte* p, int i, int h) => Field256(p, i >> 3, 8 * (i & 3) + 4 * ((i >> 2) & 1), 0xFu, h).AsInt32();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Code128(byte* p, int i, int k) => Field128(p, i >> 3, 8 * (i & 3) + 4 * ((i >> 2) & 1), 0xFu, k).AsInt32();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(byte* p, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
            ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
        {
            for (int s = 0; s < 4; s++, p += 64, x += 8)
            {
                var v = L(p);
                var u = L(p + 32);
                Lanes(v, u, 0, 0xF, x, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
                Lanes(v, u, 4, 0xF, x + 4, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            }
        }
    }

    internal struct Width2 : IPackedWidth
    {
        public static int Bits => 2;
        public static int ChunkBytes => 128;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Code256(byte* p, int i, int h) => Code2x256(p, i, h);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Code128(byte* p, int i, int k) => Code2x128(p, i, k);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(byte* p, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
            ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
        {
            for (int s = 0; s < 2; s++, p += 64, x += 16)
            {
                var v = L(p);
                var u = L(p + 32);
                Pair(v, u, x, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            }
        }
    }

    // the four codes of bit pair p (columns 4p..4p+3 of x) of one 2-bit sub-step
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair(Vector256<uint> v, Vector256<uint> u, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
        ref Vector256<float> a3, ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
    {
        Lanes(v, u, 0, 3, x, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
        Lanes(v, u, 2, 3, x + 4, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
        Lanes(v, u, 4, 3, x + 8, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
        Lanes(v, u, 6, 3, x + 12, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
    }

    // one field of each byte lane — bits sh.., 8 + sh.., 16 + sh.., 24 + sh.. of every u32 (columns x[0..3]) — into a0..a3 (v) and c0..c3 (u)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Lanes(Vector256<uint> v, Vector256<uint> u, int sh, uint mask, float* x,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
        ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
    {
        a0 = Mac(v, sh, mask, x[0], a0); c0 = Mac(u, sh, mask, x[0], c0);
        a1 = Mac(v, sh + 8, mask, x[1], a1); c1 = Mac(u, sh + 8, mask, x[1], c1);
        a2 = Mac(v, sh + 16, mask, x[2], a2); c2 = Mac(u, sh + 16, mask, x[2], c2);
        a3 = Mac(v, sh + 24, mask, x[3], a3); c3 = Mac(u, sh + 24, mask, x[3], c3);
    }

    internal struct Width3 : IPackedWidth
    {
        public static int Bits => 3;
        public static int ChunkBytes => 192;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Code256(byte* p, int i, int h) => Code3x256(p, i, h);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<int> Code128(byte* p, int i, int k) => Code3x128(p, i, k);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Chunk(byte* p, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
            ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
        {
            // a code from its pair and its spare bit, merged in the integer lane before the conversion (PackedTile16.Code3):
            // quad q = 4s + p, pair shift 2p, spare bit J = 2, 4, 6, 5, 3, 0, 7, 1; pair 3 holds the top two bits
            var h0 = L(p + 128);
            var h1 = L(p + 160);
            var v = L(p);
            var u = L(p + 32);
            Quad(v, u, h0, h1, 0, 2, false, x, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 2, 4, false, x + 4, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 4, 6, false, x + 8, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 6, 5, true, x + 12, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            v = L(p + 64);
            u = L(p + 96);
            Quad(v, u, h0, h1, 0, 3, false, x + 16, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 2, 0, false, x + 20, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 4, 7, false, x + 24, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
            Quad(v, u, h0, h1, 6, 1, true, x + 28, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Quad(Vector256<uint> v, Vector256<uint> u, Vector256<uint> h0, Vector256<uint> h1, int sh, int j, bool top, float* x,
            ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
            ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3)
        {
            // the spare bit j of each byte to bit 2 (low pair + bit·4) or, for a top pair, to bit 0 (pair·2 + bit)
            int to = top ? 0 : 2;
            var g0 = j >= to ? Vector256.ShiftRightLogical(h0, j - to) : Vector256.ShiftLeft(h0, to - j);
            var g1 = j >= to ? Vector256.ShiftRightLogical(h1, j - to) : Vector256.ShiftLeft(h1, to - j);
            v = Vector256.ShiftRightLogical(v, sh);
            u = Vector256.ShiftRightLogical(u, sh);
            if (top) { v <<= 1; u <<= 1; }
            uint pm = top ? 6u : 3u, bm = top ? 1u : 4u;
            a0 = Mac3(v, g0, 0, pm, bm, x[0], a0); c0 = Mac3(u, g1, 0, pm, bm, x[0], c0);
            a1 = Mac3(v, g0, 8, pm, bm, x[1], a1); c1 = Mac3(u, g1, 8, pm, bm, x[1], c1);
            a2 = Mac3(v, g0, 16, pm, bm, x[2], a2); c2 = Mac3(u, g1, 16, pm, bm, x[2], c2);
            a3 = Mac3(v, g0, 24, pm, bm, x[3], a3); c3 = Mac3(u, g1, 24, pm, bm, x[3], c3);
        }

        // ((l >> b) & pm) | ((g >> b) & bm), converted, times x, into acc
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Mac3(Vector256<uint> l, Vector256<uint> g, int b, uint pm, uint bm, float x, Vector256<float> acc)
        {
            var c = (Vector256.ShiftRightLogical(l, b) & Vector256.Create(pm)) | (Vector256.ShiftRightLogical(g, b) & Vector256.Create(bm));
            return Fma.MultiplyAdd(Avx.ConvertToVector256Single(c.AsInt32()), Vector256.Create(x), acc);
        }
    }
}
