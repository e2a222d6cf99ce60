// Contract: Y[t, o] = Σ_k Ŵ[o, k]·X[t, k] for T activation rows X [T, Cols] → Y [T, Rows] over a PackedMatrix (fp32
// activations; the prefill kernel, meant for T ≤ 32 per call), equal to GemvPackedReference row by row within float
// rounding. Per tile of 16 rows, blocks of KBlock chunks are decoded once into an fp32 scratch laid out [column][16 rows]
// (ŵ = Scale·(S − Zero), the fp16 lanes of Packed/PackedGroupParams), then every activation row is multiplied against it with rows in vector lanes (4 activation rows
// per pass share each weight load), so the packed weights are read once per call whatever T is. AVX2+FMA path; a
// portable Vector128 path otherwise. Tiles split by KernelThreads; the width table (Packed/PackedWidths) picks the
// width's tile loop (its IPackedWidth decode) once per call.
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;

namespace Matq.Kernels.Simd;

public static unsafe class GemmPackedSimd
{
    /// <summary>Chunks (32 columns) decoded per scratch block: 8·32 columns × 16 rows × 4 B = 16 KiB.</summary>
    public const int KBlock = 8;

    /// <param name="x">[t, Cols] row-major, original column order.</param>
    /// <param name="y">[t, Rows] row-major.</param>
    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemm(PackedMatrix w, ReadOnlySpan<float> x, int t, Span<float> y, bool forceVector128 = false, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfLessThan(t, 1);
        if (x.Length != (long)t * w.Cols) throw new ArgumentException($"x must hold {t}×{w.Cols} values, got {x.Length}");
        if (y.Length != (long)t * w.Rows) throw new ArgumentException($"y must hold {t}×{w.Rows} values, got {y.Length}");
        int lp = w.PaddedCols;
        var xp = ArrayPool<float>.Shared.Rent(t * lp);
        try
        {
            for (int r = 0; r < t; r++) w.PrepareInput(x.Slice(r * w.Cols, w.Cols), xp.AsSpan(r * lp, lp), default);
            bool avx = GemvPackedSimd.Avx2Path && !forceVector128;
            var width = w.Width;
            fixed (float* yp0 = y)
            {
                nint yp = (nint)yp0;
                KernelThreads.For(w.RowTiles, maxThreads, (long)PackedMatrix.TileRows * lp * t,
                    (t0, t1) => width.GemmTiles(avx, w, xp, t, (float*)yp, t0, t1));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(xp);
        }
    }

    // The width table's GEMM entry point (Packed/PackedWidths): whole tiles t0..t1 of one width.
    internal static void Tiles<TW>(PackedMatrix w, float[] xpa, int t, float* y, int t0, int t1, bool avx) where TW : struct, IPackedWidth
    {
        int lp = w.PaddedCols, cpr = w.ChunksPerRow;
        var acc = ArrayPool<float>.Shared.Rent(t * 16);
        var scratch = ArrayPool<float>.Shared.Rent(KBlock * 32 * 16);
        try
        {
            fixed (float* xp = xpa, ya = acc, s = scratch)
                for (int tile = t0; tile < t1; tile++)
                {
                    new Span<float>(ya, t * 16).Clear();
                    for (int kb = 0; kb < cpr; kb += KBlock)
                    {
                        int n = Math.Min(KBlock, cpr - kb);
                        for (int j = 0; j < n; j++) DecodeChunk<TW>(w, tile, kb + j, s + j * 32 * 16, avx);
                        if (avx) Multiply256(s, n * 32, xp + kb * 32, lp, t, ya);
                        else Multiply128(s, n * 32, xp + kb * 32, lp, t, ya);
                    }
                    int rows = Math.Min(16, w.Rows - tile * 16);
                    for (int r = 0; r < t; r++)
                        for (int i = 0; i < rows; i++) y[(long)r * w.Rows + tile * 16 + i] = ya[r * 16 + i];
                }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(acc);
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>ŵ of chunk ch of a tile into dst [32 columns][16 rows] (padding columns decode to Bias; x is 0 there).</summary>
    internal static void DecodeChunk<TW>(PackedMatrix w, int tile, int ch, float* dst, bool avx) where TW : struct, IPackedWidth
    {
        int g = ch / w.ChunksPerGroup, gpr = w.GroupsPerRow;
        var gp = new PackedGroupParams.Lanes(w.Params);
        fixed (byte* data = w.Data)
        fixed (Half* sc = w.Params.Scales, zc = w.Params.ZeroLanes)
        {
            byte* p = data + tile * w.TileBytes + (long)ch * w.ChunkBytes;
            long sb = ((long)tile * gpr + g) * 16;
            if (avx) Decode256<TW>(p, sc + sb, zc + sb, gp, dst);
            else Decode128<TW>(p, sc + sb, zc + sb, gp, dst);
        }
    }

    // chunk codes p with the tile's 16 scales s and zeros z of its group: ŵ = s·(S − z)
    private static void Decode256<TW>(byte* p, Half* s, Half* z, PackedGroupParams.Lanes gp, float* dst) where TW : struct, IPackedWidth
    {
        Vector256<float> s0 = gp.S256(s), s1 = gp.S256(s + 8), z0 = gp.Z256(z), z1 = gp.Z256(z + 8);
        for (int i = 0; i < 32; i++)
        {
            Avx.Store(dst + 16 * i, (Avx.ConvertToVector256Single(TW.Code256(p, i, 0)) - z0) * s0);
            Avx.Store(dst + 16 * i + 8, (Avx.ConvertToVector256Single(TW.Code256(p, i, 1)) - z1) * s1);
        }
    }

    private static void Decode128<TW>(byte* p, Half* s, Half* z, PackedGroupParams.Lanes gp, float* dst) where TW : struct, IPackedWidth
    {
        var sv = stackalloc Vector128<float>[8];
        for (int k = 0; k < 4; k++) { sv[k] = gp.S128(s + 4 * k); sv[4 + k] = gp.Z128(z + 4 * k); }
        for (int i = 0; i < 32; i++)
            for (int k = 0; k < 4; k++)
                ((Vector128.ConvertToSingle(TW.Code128(p, i, k)) - sv[4 + k]) * sv[k]).Store(dst + 16 * i + 4 * k);
    }

    // acc [t][16] += Σ_k w[k][16]·x[r][k] for k < n; four activation rows per pass share each weight load
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply256(float* w, int n, float* x, int lp, int t, float* acc)
    {
        int r = 0;
        for (; r + 4 <= t; r += 4)
        {
            float* x0 = x + (long)r * lp, x1 = x0 + lp, x2 = x1 + lp, x3 = x2 + lp;
            float* a = acc + r * 16;
            Vector256<float> p0 = Avx.LoadVector256(a), q0 = Avx.LoadVector256(a + 8), p1 = Avx.LoadVector256(a + 16), q1 = Avx.LoadVector256(a + 24),
                             p2 = Avx.LoadVector256(a + 32), q2 = Avx.LoadVector256(a + 40), p3 = Avx.LoadVector256(a + 48), q3 = Avx.LoadVector256(a + 56);
            for (int k = 0; k < n; k++)
            {
                var w0 = Avx.LoadVector256(w + 16 * k);
                var w1 = Avx.LoadVector256(w + 16 * k + 8);
                var b = Vector256.Create(x0[k]);
                p0 = Fma.MultiplyAdd(w0, b, p0); q0 = Fma.MultiplyAdd(w1, b, q0);
                b = Vector256.Create(x1[k]);
                p1 = Fma.MultiplyAdd(w0, b, p1); q1 = Fma.MultiplyAdd(w1, b, q1);
                b = Vector256.Create(x2[k]);
                p2 = Fma.MultiplyAdd(w0, b, p2); q2 = Fma.MultiplyAdd(w1, b, q2);
                b = Vector256.Create(x3[k]);
                p3 = Fma.MultiplyAdd(w0, b, p3); q3 = Fma.MultiplyAdd(w1, b, q3);
            }
            Avx.Store(a, p0); Avx.Store(a + 8, q0); Avx.Store(a + 16, p1); Avx.Store(a + 24, q1);
            Avx.Store(a + 32, p2); Avx.Store(a + 40, q2); Avx.Store(a + 48, p3); Avx.Store(a + 56, q3);
        }
        for (; r < t; r++)
        {
            float* xr = x + (long)r * lp, a = acc + r * 16;
            Vector256<float> p0 = Avx.LoadVector256(a), q0 = Avx.LoadVector256(a + 8);
            for (int k = 0; k < n; k++)
            {
                var b = Vector256.Create(xr[k]);
                p0 = Fma.MultiplyAdd(Avx.LoadVector256(w + 16 * k), b, p0);
                q0 = Fma.MultiplyAdd(Avx.LoadVector256(w + 16 * k + 8), b, q0);
            }
            Avx.Store(a, p0); Avx.Store(a + 8, q0);
        }
    }

    private static void Multiply128(float* w, int n, float* x, int lp, int t, float* acc)
    {
        for (int r = 0; r < t; r++)
        {
            float* xr = x + (long)r * lp, a = acc + r * 16;
            for (int k4 = 0; k4 < 4; k4++)
            {
                var p = Vector128.Load(a + 4 * k4);
                for (int k = 0; k < n; k++) p += Vector128.Load(w + 16 * k + 4 * k4) * Vector128.Create(xr[k]);
                p.Store(a + 4 * k4);
            }
        }
    }
}
