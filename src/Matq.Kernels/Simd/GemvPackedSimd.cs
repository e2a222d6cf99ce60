// Contract: vectorized y = Ŵx over a PackedMatrix (fp32 activations), equal to GemvPackedReference within float
// rounding (summation order differs). AVX2+FMA path (Vector256) where present, a portable Vector128 path otherwise;
// rows are split into blocks of RowChunk rows run with Parallel.For. Block layouts: see Reference/PackedBlock32.
// Per block of 32 codes, sub-vector k (codes 8k..8k+7) is one 8-byte unit zero-extended to 8 int32 lanes beside x[8k..8k+7].
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Matq.Kernels.Packed;
using static Matq.Kernels.Simd.PackedUnits;

namespace Matq.Kernels.Simd;

public static unsafe class GemvPackedSimd
{
    /// <summary>Rows per parallel work item.</summary>
    public const int RowChunk = 32;

    /// <summary>True when the Vector256 AVX2+FMA path runs (else the Vector128 path).</summary>
    public static bool Avx2Path => Avx2.IsSupported && Fma.IsSupported;

    /// <param name="forceVector128">Run the portable path even where AVX2 exists (tests cover both).</param>
    /// <param name="maxThreads">−1 = all cores; 1 = the calling thread only.</param>
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y, bool forceVector128 = false, int maxThreads = -1)
    {
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values, got {y.Length}");
        var xp = new float[w.BlocksPerRow * 32];
        var gs = new float[w.GroupsPerRow];
        w.PrepareInput(x, xp, gs);
        bool avx = Avx2Path && !forceVector128;
        int chunks = (w.Rows + RowChunk - 1) / RowChunk;
        fixed (float* yp0 = y)
        fixed (float* xp0 = xp, gs0 = gs)
        {
            nint yp = (nint)yp0, xpp = (nint)xp0, gsp = (nint)gs0;
            if (chunks == 1 || maxThreads == 1 || (long)w.Rows * w.Cols < 1 << 16)
                RunRows(w, (float*)xpp, (float*)gsp, (float*)yp, 0, w.Rows, avx);
            else
                Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, c =>
                    RunRows(w, (float*)xpp, (float*)gsp, (float*)yp, c * RowChunk, Math.Min(w.Rows, (c + 1) * RowChunk), avx));
        }
    }

    private static void RunRows(PackedMatrix w, float* xp, float* gs, float* y, int r0, int r1, bool avx)
    {
        switch (w.Bits, avx)
        {
            case (8, true): Rows256<Unit8>(w, xp, gs, y, r0, r1); break;
            case (4, true): Rows256<Unit4>(w, xp, gs, y, r0, r1); break;
            case (3, true): Rows256<Unit3>(w, xp, gs, y, r0, r1); break;
            case (2, true): Rows256<Unit2>(w, xp, gs, y, r0, r1); break;
            case (8, false): Rows128<Unit8>(w, xp, gs, y, r0, r1); break;
            case (4, false): Rows128<Unit4>(w, xp, gs, y, r0, r1); break;
            case (3, false): Rows128<Unit3>(w, xp, gs, y, r0, r1); break;
            case (2, false): Rows128<Unit2>(w, xp, gs, y, r0, r1); break;
            default: throw new MatqException($"bits = {w.Bits} has no packed GEMV kernel: supported widths are 2, 3, 4 and 8.");
        }
    }

    // Two rows per pass (the x loads feed both) with four FMA chains per row, so the decode, not FMA latency, sets the
    // pace; an odd last row runs alone.
    private static void Rows256<TUnit>(PackedMatrix w, float* xp, float* gs, float* y, int r0, int r1) where TUnit : struct, IUnits
    {
        int bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, groups = w.GroupsPerRow, bb = w.BlockBytes;
        long rowBytes = (long)bpr * bb;
        fixed (byte* data = w.Data)
        fixed (float* sc = w.Scales, bi = w.Biases)
        {
            int o = r0;
            for (; o + 2 <= r1; o += 2)
            {
                byte* ra = data + o * rowBytes, rb = ra + rowBytes;
                float* sa = sc + (long)o * groups, sb = sa + groups, ba = bi + (long)o * groups, bbias = ba + groups;
                Vector256<float> accA = Vector256<float>.Zero, accB = Vector256<float>.Zero;
                float biasA = 0, biasB = 0;
                for (int g = 0; g < groups; g++)
                {
                    int b0 = g * bpg, b1 = Math.Min(b0 + bpg, bpr);
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
                    for (int b = b0; b < b1; b++)
                    {
                        byte* pa = ra + (long)b * bb, pb = rb + (long)b * bb;
                        float* xb = xp + b * 32;
                        var x0 = Avx.LoadVector256(xb);
                        var x1 = Avx.LoadVector256(xb + 8);
                        var x2 = Avx.LoadVector256(xb + 16);
                        var x3 = Avx.LoadVector256(xb + 24);
                        TUnit.Units(pa, out var u0, out var u1, out var u2, out var u3);
                        a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u0, pa, 0)), x0, a0);
                        a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u1, pa, 1)), x1, a1);
                        a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u2, pa, 2)), x2, a2);
                        a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u3, pa, 3)), x3, a3);
                        TUnit.Units(pb, out u0, out u1, out u2, out u3);
                        c0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u0, pb, 0)), x0, c0);
                        c1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u1, pb, 1)), x1, c1);
                        c2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u2, pb, 2)), x2, c2);
                        c3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u3, pb, 3)), x3, c3);
                    }
                    accA = Fma.MultiplyAdd(Vector256.Create(sa[g]), (a0 + a1) + (a2 + a3), accA);
                    accB = Fma.MultiplyAdd(Vector256.Create(sb[g]), (c0 + c1) + (c2 + c3), accB);
                    biasA += ba[g] * gs[g];
                    biasB += bbias[g] * gs[g];
                }
                y[o] = Vector256.Sum(accA) + biasA;
                y[o + 1] = Vector256.Sum(accB) + biasB;
            }
            if (o < r1)
            {
                byte* row = data + o * rowBytes;
                float* srow = sc + (long)o * groups, brow = bi + (long)o * groups;
                var acc = Vector256<float>.Zero;
                float bias = 0;
                for (int g = 0; g < groups; g++)
                {
                    int b0 = g * bpg, b1 = Math.Min(b0 + bpg, bpr);
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                    for (int b = b0; b < b1; b++)
                    {
                        byte* p = row + (long)b * bb;
                        float* xb = xp + b * 32;
                        TUnit.Units(p, out var u0, out var u1, out var u2, out var u3);
                        a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u0, p, 0)), Avx.LoadVector256(xb), a0);
                        a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u1, p, 1)), Avx.LoadVector256(xb + 8), a1);
                        a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u2, p, 2)), Avx.LoadVector256(xb + 16), a2);
                        a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TUnit.Widen256(u3, p, 3)), Avx.LoadVector256(xb + 24), a3);
                    }
                    acc = Fma.MultiplyAdd(Vector256.Create(srow[g]), (a0 + a1) + (a2 + a3), acc);
                    bias += brow[g] * gs[g];
                }
                y[o] = Vector256.Sum(acc) + bias;
            }
        }
    }

    private static void Rows128<TUnit>(PackedMatrix w, float* xp, float* gs, float* y, int r0, int r1) where TUnit : struct, IUnits
    {
        int bpr = w.BlocksPerRow, bpg = w.BlocksPerGroup, groups = w.GroupsPerRow, bb = w.BlockBytes;
        fixed (byte* data = w.Data)
        fixed (float* sc = w.Scales, bi = w.Biases)
        {
            for (int o = r0; o < r1; o++)
            {
                byte* row = data + (long)o * bpr * bb;
                var acc = Vector128<float>.Zero;
                float bias = 0;
                for (int g = 0; g < groups; g++)
                {
                    int b0 = g * bpg, b1 = Math.Min(b0 + bpg, bpr);
                    var ga = Vector128<float>.Zero;
                    for (int b = b0; b < b1; b++)
                    {
                        byte* p = row + (long)b * bb;
                        float* xb = xp + b * 32;
                        TUnit.Units(p, out var u0, out var u1, out var u2, out var u3);
                        ga += Dot8(TUnit.Widen128(u0, p, 0), xb) + Dot8(TUnit.Widen128(u1, p, 1), xb + 8)
                            + Dot8(TUnit.Widen128(u2, p, 2), xb + 16) + Dot8(TUnit.Widen128(u3, p, 3), xb + 24);
                    }
                    acc += ga * Vector128.Create(w.Scales[o * groups + g]);
                    bias += w.Biases[o * groups + g] * gs[g];
                }
                y[o] = Vector128.Sum(acc) + bias;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Dot8((Vector128<uint> Lo, Vector128<uint> Hi) c, float* x) =>
        Vector128.ConvertToSingle(c.Lo) * Vector128.Load(x) + Vector128.ConvertToSingle(c.Hi) * Vector128.Load(x + 4);
}
