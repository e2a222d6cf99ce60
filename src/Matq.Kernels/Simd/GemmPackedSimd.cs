// Contract: Y[t, o] = Σ_k Ŵ[o, k]·X[t, k] for T activation rows X [T, Cols] → Y [T, Rows] over a PackedMatrix (fp32
// activations; the prefill kernel, meant for T ≤ 32 per call), equal to GemvPackedReference row by row within float
// rounding. Tiles of 4 weight rows are decoded once into an fp32 scratch (ŵ = Scales·S + Biases, stored column order,
// padded to whole blocks) and multiplied with all T rows, so the packed weights are read once per call whatever T is.
// AVX2+FMA path with 4×2 register blocking (each x load feeds 4 weight rows); TensorPrimitives.Dot elsewhere. Row
// chunks of RowChunk rows run with Parallel.For.
using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;
using static Matq.Kernels.Simd.PackedUnits;

namespace Matq.Kernels.Simd;

public static unsafe class GemmPackedSimd
{
    /// <summary>Weight rows per parallel work item.</summary>
    public const int RowChunk = 16;

    /// <summary>Weight rows decoded together (x loads shared across them).</summary>
    public const int Tile = 4;

    /// <param name="x">[t, Cols] row-major, original column order.</param>
    /// <param name="y">[t, Rows] row-major.</param>
    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemm(PackedMatrix w, ReadOnlySpan<float> x, int t, Span<float> y, bool forceVector128 = false, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfLessThan(t, 1);
        if (x.Length != (long)t * w.Cols) throw new ArgumentException($"x must hold {t}×{w.Cols} values, got {x.Length}");
        if (y.Length != (long)t * w.Rows) throw new ArgumentException($"y must hold {t}×{w.Rows} values, got {y.Length}");
        int lp = w.BlocksPerRow * 32;
        var xp = ArrayPool<float>.Shared.Rent(t * lp);
        var yo = ArrayPool<float>.Shared.Rent(t * w.Rows);
        try
        {
            for (int r = 0; r < t; r++) w.PrepareInput(x.Slice(r * w.Cols, w.Cols), xp.AsSpan(r * lp, lp), default);
            bool avx = GemvPackedSimd.Avx2Path && !forceVector128;
            int chunks = (w.Rows + RowChunk - 1) / RowChunk;
            if (chunks == 1 || maxThreads == 1)
                RunRows(w, xp, t, yo, 0, w.Rows, avx);
            else
                Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads },
                    c => RunRows(w, xp, t, yo, c * RowChunk, Math.Min(w.Rows, (c + 1) * RowChunk), avx));
            yo.AsSpan(0, t * w.Rows).CopyTo(y);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(xp);
            ArrayPool<float>.Shared.Return(yo);
        }
    }

    private static void RunRows(PackedMatrix w, float[] xp, int t, float[] y, int r0, int r1, bool avx)
    {
        int lp = w.BlocksPerRow * 32;
        var scratch = ArrayPool<float>.Shared.Rent(Tile * lp);
        try
        {
            fixed (float* s = scratch, xs = xp, ys = y)
                for (int o = r0; o < r1; o += Tile)
                {
                    int n = Math.Min(Tile, r1 - o);
                    for (int i = 0; i < n; i++) DecodeRow(w, o + i, s + i * lp, avx);
                    if (avx && n == Tile) Dots4Avx(s, lp, xs, t, ys, o, w.Rows);
                    else
                        for (int r = 0; r < t; r++)
                            for (int i = 0; i < n; i++)
                                ys[(long)r * w.Rows + o + i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(s + i * lp, lp), new ReadOnlySpan<float>(xs + (long)r * lp, lp));
                }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>ŵ of row o in stored column order into dst [BlocksPerRow·32] (padding codes decode to Biases; x is 0 there).</summary>
    internal static void DecodeRow(PackedMatrix w, int o, float* dst, bool avx)
    {
        switch (w.Bits, avx)
        {
            case (8, true): DecodeRow256<Unit8>(w, o, dst); break;
            case (4, true): DecodeRow256<Unit4>(w, o, dst); break;
            case (3, true): DecodeRow256<Unit3>(w, o, dst); break;
            case (2, true): DecodeRow256<Unit2>(w, o, dst); break;
            case (8, false): DecodeRow128<Unit8>(w, o, dst); break;
            case (4, false): DecodeRow128<Unit4>(w, o, dst); break;
            case (3, false): DecodeRow128<Unit3>(w, o, dst); break;
            case (2, false): DecodeRow128<Unit2>(w, o, dst); break;
            default: throw new MatqException($"bits = {w.Bits} has no packed kernel: supported widths are 2, 3, 4 and 8.");
        }
    }

    private static void DecodeRow256<TUnit>(PackedMatrix w, int o, float* dst) where TUnit : struct, IUnits
    {
        int bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, groups = w.GroupsPerRow, bb = w.BlockBytes;
        fixed (byte* data = w.Data)
        fixed (float* sc = w.Scales, bi = w.Biases)
        {
            byte* row = data + (long)o * bpr * bb;
            for (int g = 0; g < groups; g++)
            {
                var vs = Vector256.Create(sc[(long)o * groups + g]);
                var vb = Vector256.Create(bi[(long)o * groups + g]);
                int b1 = Math.Min((g + 1) * bpg, bpr);
                for (int b = g * bpg; b < b1; b++)
                {
                    byte* p = row + (long)b * bb;
                    float* d = dst + b * 32;
                    TUnit.Units(p, out var u0, out var u1, out var u2, out var u3);
                    Avx.Store(d, Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u0, p, 0)), vs, vb));
                    Avx.Store(d + 8, Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u1, p, 1)), vs, vb));
                    Avx.Store(d + 16, Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u2, p, 2)), vs, vb));
                    Avx.Store(d + 24, Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u3, p, 3)), vs, vb));
                }
            }
        }
    }

    private static void DecodeRow128<TUnit>(PackedMatrix w, int o, float* dst) where TUnit : struct, IUnits
    {
        int bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, groups = w.GroupsPerRow, bb = w.BlockBytes;
        fixed (byte* data = w.Data)
        {
            byte* row = data + (long)o * bpr * bb;
            for (int g = 0; g < groups; g++)
            {
                var vs = Vector128.Create(w.Scales[(long)o * groups + g]);
                var vb = Vector128.Create(w.Biases[(long)o * groups + g]);
                int b1 = Math.Min((g + 1) * bpg, bpr);
                for (int b = g * bpg; b < b1; b++)
                {
                    byte* p = row + (long)b * bb;
                    float* d = dst + b * 32;
                    TUnit.Units(p, out var u0, out var u1, out var u2, out var u3);
                    Store8(TUnit.Widen128(u0, p, 0), vs, vb, d);
                    Store8(TUnit.Widen128(u1, p, 1), vs, vb, d + 8);
                    Store8(TUnit.Widen128(u2, p, 2), vs, vb, d + 16);
                    Store8(TUnit.Widen128(u3, p, 3), vs, vb, d + 24);
                }
            }
        }
    }

    private static void Store8((Vector128<uint> Lo, Vector128<uint> Hi) c, Vector128<float> s, Vector128<float> b, float* d)
    {
        (Vector128.ConvertToSingle(c.Lo) * s + b).Store(d);
        (Vector128.ConvertToSingle(c.Hi) * s + b).Store(d + 4);
    }

    /// <summary>y[r, o..o+3] = the 4 scratch rows · x row r, for every r &lt; t; lp is a multiple of 32.</summary>
    private static void Dots4Avx(float* s, int lp, float* xs, int t, float* y, int o, int rows)
    {
        float* w0 = s, w1 = s + lp, w2 = s + 2 * lp, w3 = s + 3 * lp;
        for (int r = 0; r < t; r++)
        {
            float* x = xs + (long)r * lp;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int k = 0; k < lp; k += 16)
            {
                var x0 = Avx.LoadVector256(x + k);
                var x1 = Avx.LoadVector256(x + k + 8);
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(w0 + k), x0, a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(w1 + k), x0, a1);
                a2 = Fma.MultiplyAdd(Avx.LoadVector256(w2 + k), x0, a2);
                a3 = Fma.MultiplyAdd(Avx.LoadVector256(w3 + k), x0, a3);
                b0 = Fma.MultiplyAdd(Avx.LoadVector256(w0 + k + 8), x1, b0);
                b1 = Fma.MultiplyAdd(Avx.LoadVector256(w1 + k + 8), x1, b1);
                b2 = Fma.MultiplyAdd(Avx.LoadVector256(w2 + k + 8), x1, b2);
                b3 = Fma.MultiplyAdd(Avx.LoadVector256(w3 + k + 8), x1, b3);
            }
            float* yr = y + (long)r * rows + o;
            yr[0] = Vector256.Sum(a0 + b0);
            yr[1] = Vector256.Sum(a1 + b1);
            yr[2] = Vector256.Sum(a2 + b2);
            yr[3] = Vector256.Sum(a3 + b3);
        }
    }
}
