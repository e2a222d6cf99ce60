// Contract: GPTQ's error-feedback pass over one block of B columns for MatQuant-Athena's nested rounding rule on fixed
// grids, all rows at once, on the block transposed ([B, rows] row-major, a row is one lane, as GptqBlockKernel). For each
// row r and j = 0..B−1, in float arithmetic with every operation rounded on its own (no fused multiply-add):
//   x    = wT[j, r] − Σ_{k<j} eT[k, r] · u[k, j]                     (k ascending, as the eager pass's rank-1 updates)
//   a, z = aT[j, r], zT[j, r];  center = round_half_even(x / a) + z
//   for δ = −reach .. reach (ascending):  q = min(max(center + δ, 0), qmax)
//     for each width i (the order given): s = q, or with shift k > 0: s = min(floor((q + 2^(k−1)) / 2^k), top_i)·2^k
//                                          (top_i = +∞ with extra precision), d = x − (s − z)·a,
//                                          cost += (d·d)·λ_i,  mean += d·λ_i   (both from 0, widths in order)
//   keep the first δ of least cost (the eager pass's argmin);  wT[j, r] = x;  qT[j, r] = q;
//   eT[j, r] = (mean / Σλ) / u[j, j]
// Widths are (2^(k−1), 2^k, top, λ) quadruples; a width with λ = 0 is simply not passed. This is NestedColumnQuantizer's
// rule (Matq.Algorithms.MatQuant) with the eager pass's operation order, so on the CPU it gives that pass's bits.
// Reference defines the result; Simd runs Vector256 lanes over rows on KernelThreads; CudaSource is the same arithmetic,
// one thread per row, for NVRTC (--fmad=false), which matq checks against Simd on a test block before using it.
using System.Runtime.Intrinsics;

namespace Matq.Kernels.Gptq;

/// <summary>One trained width of the nested rule: half = 2^(k−1) (0 when k = 0), step = 2^k, top = the slice's largest
/// value before ×2^k (+∞ with extra precision or k = 0), lambda = its weight λ.</summary>
public readonly record struct NestedWidth(float Half, float Step, float Top, float Lambda)
{
    /// <summary>Width <paramref name="bits"/> of <paramref name="masterBits"/>-bit codes with weight <paramref name="lambda"/>.</summary>
    public static NestedWidth Of(int masterBits, int bits, double lambda, bool extraPrecision)
    {
        if (bits < 1 || bits > masterBits) throw new ArgumentOutOfRangeException(nameof(bits), bits, $"a slice of {masterBits}-bit codes has 1..{masterBits} bits");
        int k = masterBits - bits;
        return k == 0 ? new(0f, 1f, float.PositiveInfinity, (float)lambda)
            : new(1 << (k - 1), 1 << k, extraPrecision ? float.PositiveInfinity : (1 << bits) - 1, (float)lambda);
    }
}

public static class GptqNestedBlockKernel
{
    /// <summary>The kernel's name in <see cref="CudaSource"/>.</summary>
    public const string CudaName = "gptq_nested_block";

    /// <summary>gptq_nested_block(wT, u, aT, zT, qT, eT, widths [4·nWidths], rows, count, nWidths, reach, qmax, lambdaSum).</summary>
    public const string CudaSource = """
        extern "C" __global__ void gptq_nested_block(float* __restrict__ wT, const float* __restrict__ u,
            const float* __restrict__ aT, const float* __restrict__ zT, float* __restrict__ qT, float* __restrict__ eT,
            const float* __restrict__ widths, int rows, int count, int nWidths, int reach, float qmax, float lambdaSum)
        {
            int r = blockIdx.x * blockDim.x + threadIdx.x;
            if (r >= rows) return;
            for (int j = 0; j < count; j++) {
                long long at = (long long)j * rows + r;
                float x = wT[at];
                for (int k = 0; k < j; k++) x = x - eT[(long long)k * rows + r] * u[k * count + j];
                float a = aT[at], z = zT[at];
                float center = rintf(x / a) + z;
                float bestCost = 0.0f, bestMean = 0.0f, bestQ = 0.0f;
                for (int d = -reach; d <= reach; d++) {
                    float q = fminf(fmaxf(center + (float)d, 0.0f), qmax);
                    float cost = 0.0f, mean = 0.0f;
                    for (int i = 0; i < nWidths; i++) {
                        float half = widths[4 * i], step = widths[4 * i + 1], top = widths[4 * i + 2], lambda = widths[4 * i + 3];
                        float s = q;
                        if (step > 1.0f) s = fminf(floorf((q + half) / step), top) * step;
                        float diff = x - (s - z) * a;
                        cost = cost + (diff * diff) * lambda;
                        mean = mean + diff * lambda;
                    }
                    if (d == -reach || cost < bestCost) { bestCost = cost; bestMean = mean; bestQ = q; }
                }
                wT[at] = x;
                qT[at] = bestQ;
                eT[at] = (bestMean / lambdaSum) / u[j * count + j];
            }
        }
        """;

    private static void Check(int rows, int count, int wT, int u, int aT, int zT, int qT, int eT, int widths, int reach)
    {
        long cells = (long)rows * count;
        if (rows < 0 || count < 0) throw new ArgumentException("rows and count must not be negative");
        if (wT < cells || aT < cells || zT < cells || qT < cells || eT < cells)
            throw new ArgumentException($"a [count, rows] buffer holds fewer than {count}×{rows} values");
        if (u < (long)count * count) throw new ArgumentException($"u holds fewer than {count}×{count} values");
        if (widths < 1) throw new ArgumentException("the nested rule needs at least one width with λ > 0");
        if (reach < 0) throw new ArgumentException("reach must not be negative");
    }

    /// <summary>The definition: one row after another, scalar.</summary>
    public static void Reference(Span<float> wT, ReadOnlySpan<float> u, ReadOnlySpan<float> aT, ReadOnlySpan<float> zT,
        Span<float> qT, Span<float> eT, ReadOnlySpan<NestedWidth> widths, int rows, int count, int reach, float qmax, float lambdaSum)
    {
        Check(rows, count, wT.Length, u.Length, aT.Length, zT.Length, qT.Length, eT.Length, widths.Length, reach);
        for (int r = 0; r < rows; r++) Scalar(wT, u, aT, zT, qT, eT, widths, rows, count, reach, qmax, lambdaSum, r);
    }

    private static void Scalar(Span<float> w, ReadOnlySpan<float> u, ReadOnlySpan<float> a, ReadOnlySpan<float> z,
        Span<float> q, Span<float> e, ReadOnlySpan<NestedWidth> widths, int rows, int count, int reach, float qmax, float lambdaSum, int r)
    {
        for (int j = 0; j < count; j++)
        {
            int at = j * rows + r;
            float x = GptqBlockKernel.FedBack(w, e, u, rows, count, j, r);
            float av = a[at], zv = z[at];
            float center = MathF.Round(x / av) + zv;
            float bestCost = 0f, bestMean = 0f, bestQ = 0f;
            for (int d = -reach; d <= reach; d++)
            {
                float qv = Math.Min(Math.Max(center + d, 0f), qmax);
                float cost = 0f, mean = 0f;
                foreach (var wd in widths)
                {
                    float s = qv;
                    if (wd.Step > 1f) s = Math.Min(MathF.Floor((qv + wd.Half) / wd.Step), wd.Top) * wd.Step;
                    float diff = x - (s - zv) * av;
                    cost += diff * diff * wd.Lambda;
                    mean += diff * wd.Lambda;
                }
                if (d == -reach || cost < bestCost) (bestCost, bestMean, bestQ) = (cost, mean, qv);
            }
            w[at] = x;
            q[at] = bestQ;
            e[at] = bestMean / lambdaSum / u[j * count + j];
        }
    }

    /// <summary>The same bits as <see cref="Reference"/>: lanes of 8 rows (Vector256), chunks of rows over at most
    /// <paramref name="maxThreads"/> threads (−1: all cores), scalar rows at the end of a chunk.</summary>
    public static unsafe void Simd(Span<float> wT, ReadOnlySpan<float> u, ReadOnlySpan<float> aT, ReadOnlySpan<float> zT,
        Span<float> qT, Span<float> eT, ReadOnlySpan<NestedWidth> widths, int rows, int count, int reach, float qmax, float lambdaSum,
        int maxThreads = -1)
    {
        Check(rows, count, wT.Length, u.Length, aT.Length, zT.Length, qT.Length, eT.Length, widths.Length, reach);
        var ws = widths.ToArray();
        long work = (long)GptqBlockKernel.RowChunk * count * ((count + 1) / 2 + (2L * reach + 1) * ws.Length * 8);
        fixed (float* w = wT, uu = u, a = aT, z = zT, q = qT, e = eT)
        {
            var (pw, pu, pa, pz, pq, pe) = ((nint)w, (nint)uu, (nint)a, (nint)z, (nint)q, (nint)e);
            GptqBlockKernel.RowChunks(rows, maxThreads, work, (r0, r1) =>
                Chunk((float*)pw, (float*)pu, (float*)pa, (float*)pz, (float*)pq, (float*)pe, ws, rows, count, reach, qmax, lambdaSum, r0, r1));
        }
    }

    private static unsafe void Chunk(float* w, float* uu, float* a, float* z, float* q, float* e, NestedWidth[] widths, int rows, int count,
        int reach, float qmax, float lambdaSum, int r0, int r1)
    {
        int r = r0;
        if (Vector256.IsHardwareAccelerated)
        {
            var lo = Vector256<float>.Zero;
            var hi = Vector256.Create(qmax);
            var sum = Vector256.Create(lambdaSum);
            for (; r + 8 <= r1; r += 8)
                for (int j = 0; j < count; j++)
                {
                    long at = (long)j * rows + r;
                    var x = GptqBlockKernel.FedBack8(w, e, uu, rows, count, j, r);
                    var av = Vector256.Load(a + at);
                    var zv = Vector256.Load(z + at);
                    var center = Vector256.Round(x / av) + zv;
                    Vector256<float> bestCost = default, bestMean = default, bestQ = default;
                    for (int d = -reach; d <= reach; d++)
                    {
                        var qv = Vector256.Min(Vector256.Max(center + Vector256.Create((float)d), lo), hi);
                        Vector256<float> cost = default, mean = default;
                        foreach (var wd in widths)
                        {
                            var s = qv;
                            if (wd.Step > 1f)
                                s = Vector256.Min(Vector256.Floor((qv + Vector256.Create(wd.Half)) / Vector256.Create(wd.Step)), Vector256.Create(wd.Top))
                                    * Vector256.Create(wd.Step);
                            var diff = x - (s - zv) * av;
                            var lambda = Vector256.Create(wd.Lambda);
                            cost += diff * diff * lambda;
                            mean += diff * lambda;
                        }
                        if (d == -reach) (bestCost, bestMean, bestQ) = (cost, mean, qv);
                        else
                        {
                            var better = Vector256.LessThan(cost, bestCost);
                            bestCost = Vector256.ConditionalSelect(better, cost, bestCost);
                            bestMean = Vector256.ConditionalSelect(better, mean, bestMean);
                            bestQ = Vector256.ConditionalSelect(better, qv, bestQ);
                        }
                    }
                    x.Store(w + at);
                    bestQ.Store(q + at);
                    (bestMean / sum / Vector256.Create(uu[j * count + j])).Store(e + at);
                }
        }
        long cells = (long)rows * count;
        for (; r < r1; r++)
            Scalar(new Span<float>(w, (int)cells), new ReadOnlySpan<float>(uu, count * count), new ReadOnlySpan<float>(a, (int)cells),
                new ReadOnlySpan<float>(z, (int)cells), new Span<float>(q, (int)cells), new Span<float>(e, (int)cells), widths, rows, count,
                reach, qmax, lambdaSum, r);
    }
}
