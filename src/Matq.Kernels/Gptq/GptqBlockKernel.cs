// Contract: GPTQ's error-feedback pass over one block of B columns for the affine rule, all rows at once, on the block
// transposed ([B, rows] row-major: column j of the block is the contiguous run j·rows .. j·rows + rows − 1, so a row is
// one lane). For each row r and j = 0..B−1, in float arithmetic with every product and difference rounded on its own
// (no fused multiply-add):
//   x   = wT[j, r] − Σ_{k<j} eT[k, r] · u[k, j]          (k ascending: the eager pass's rank-1 updates in their order)
//   q   = min(max(round_half_even(x / a) + z, 0), qmax)   a = aT[j, r], z = zT[j, r] (the column's group grid)
//   wT[j, r] = x;  qT[j, r] = q;  eT[j, r] = (x − (q − z) · a) / u[j, j]
// u is the block's [B, B] upper factor of H⁻¹ (row-major). Reference defines the result; Simd runs Vector256 lanes over
// rows split over KernelThreads and gives the same bits; CudaSource is the same arithmetic as a CUDA kernel (one thread
// per row) for NVRTC (compiled with --fmad=false), which matq's CUDA path checks against Simd before using it.
using System.Runtime.Intrinsics;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Gptq;

public static class GptqBlockKernel
{
    /// <summary>The kernel's name in <see cref="CudaSource"/>.</summary>
    public const string CudaName = "gptq_affine_block";

    /// <summary>The CUDA kernel: gptq_affine_block(wT, u, aT, zT, qT, eT, rows, count, qmax), one thread per row.</summary>
    public const string CudaSource = """
        extern "C" __global__ void gptq_affine_block(float* __restrict__ wT, const float* __restrict__ u,
            const float* __restrict__ aT, const float* __restrict__ zT, float* __restrict__ qT, float* __restrict__ eT,
            int rows, int count, float qmax)
        {
            int r = blockIdx.x * blockDim.x + threadIdx.x;
            if (r >= rows) return;
            for (int j = 0; j < count; j++) {
                long long at = (long long)j * rows + r;
                float x = wT[at];
                for (int k = 0; k < j; k++) x = x - eT[(long long)k * rows + r] * u[k * count + j];
                float a = aT[at], z = zT[at];
                float q = fminf(fmaxf(rintf(x / a) + z, 0.0f), qmax);
                wT[at] = x;
                qT[at] = q;
                eT[at] = (x - (q - z) * a) / u[j * count + j];
            }
        }
        """;

    private static void Check(int rows, int count, int wT, int u, int aT, int zT, int qT, int eT)
    {
        long cells = (long)rows * count;
        if (rows < 0 || count < 0) throw new ArgumentException("rows and count must not be negative");
        if (wT < cells || aT < cells || zT < cells || qT < cells || eT < cells)
            throw new ArgumentException($"a [count, rows] buffer holds fewer than {count}×{rows} values");
        if (u < (long)count * count) throw new ArgumentException($"u holds fewer than {count}×{count} values");
    }

    /// <summary>The definition: one row after another, scalar.</summary>
    public static void Reference(Span<float> wT, ReadOnlySpan<float> u, ReadOnlySpan<float> aT, ReadOnlySpan<float> zT,
        Span<float> qT, Span<float> eT, int rows, int count, float qmax)
    {
        Check(rows, count, wT.Length, u.Length, aT.Length, zT.Length, qT.Length, eT.Length);
        for (int r = 0; r < rows; r++) Scalar(wT, u, aT, zT, qT, eT, rows, count, qmax, r);
    }

    private static void Scalar(Span<float> w, ReadOnlySpan<float> u, ReadOnlySpan<float> a, ReadOnlySpan<float> z,
        Span<float> q, Span<float> e, int rows, int count, float qmax, int r)
    {
        for (int j = 0; j < count; j++)
        {
            int at = j * rows + r;
            float x = FedBack(w, e, u, rows, count, j, r);
            float av = a[at], zv = z[at];
            float qv = Math.Min(Math.Max(MathF.Round(x / av) + zv, 0f), qmax);
            w[at] = x;
            q[at] = qv;
            e[at] = (x - (qv - zv) * av) / u[j * count + j];
        }
    }

    /// <summary>The same bits as <see cref="Reference"/>: lanes of 8 rows (Vector256), chunks of rows over at most
    /// <paramref name="maxThreads"/> threads (−1: all cores), scalar rows at the end of a chunk.</summary>
    public static unsafe void Simd(Span<float> wT, ReadOnlySpan<float> u, ReadOnlySpan<float> aT, ReadOnlySpan<float> zT,
        Span<float> qT, Span<float> eT, int rows, int count, float qmax, int maxThreads = -1)
    {
        Check(rows, count, wT.Length, u.Length, aT.Length, zT.Length, qT.Length, eT.Length);
        fixed (float* w = wT, uu = u, a = aT, z = zT, q = qT, e = eT)
        {
            var (pw, pu, pa, pz, pq, pe) = ((nint)w, (nint)uu, (nint)a, (nint)z, (nint)q, (nint)e);
            RowChunks(rows, maxThreads, (long)RowChunk * count * count / 2, (r0, r1) =>
                Chunk((float*)pw, (float*)pu, (float*)pa, (float*)pz, (float*)pq, (float*)pe, rows, count, qmax, r0, r1));
        }
    }

    /// <summary>Column j of row r with the block's feedback so far: W[j, r] − Σ_{k<j} e[k, r]·u[k, j], k ascending, every
    /// product and difference rounded on its own (the eager pass's rank-1 updates in their order; both GPTQ kernels).</summary>
    internal static float FedBack(ReadOnlySpan<float> w, ReadOnlySpan<float> e, ReadOnlySpan<float> u, int rows, int count, int j, int r)
    {
        float x = w[j * rows + r];
        for (int k = 0; k < j; k++) x -= e[k * rows + r] * u[k * count + j];
        return x;
    }

    /// <summary><see cref="FedBack"/> for rows r..r+7 at once (the same bits per lane).</summary>
    internal static unsafe Vector256<float> FedBack8(float* w, float* e, float* u, int rows, int count, int j, int r)
    {
        var x = Vector256.Load(w + (long)j * rows + r);
        for (int k = 0; k < j; k++)
            x -= Vector256.Load(e + (long)k * rows + r) * Vector256.Create(u[k * count + j]);
        return x;
    }

    /// <summary>Rows per chunk of the vectorized kernels.</summary>
    internal const int RowChunk = 256;

    /// <summary>Rows 0..rows−1 in chunks of <see cref="RowChunk"/> over at most <paramref name="maxThreads"/> threads
    /// (KernelThreads, <paramref name="workPerChunk"/> weights a chunk), each chunk's [r0, r1) to <paramref name="body"/>.</summary>
    internal static void RowChunks(int rows, int maxThreads, long workPerChunk, Action<int, int> body) =>
        KernelThreads.For((rows + RowChunk - 1) / RowChunk, maxThreads, workPerChunk, (c0, c1) =>
        {
            for (int c = c0; c < c1; c++) body(c * RowChunk, Math.Min(rows, (c + 1) * RowChunk));
        });

    private static unsafe void Chunk(float* w, float* uu, float* a, float* z, float* q, float* e, int rows, int count, float qmax, int r0, int r1)
    {
        int r = r0;
        if (Vector256.IsHardwareAccelerated)
        {
            var lo = Vector256<float>.Zero;
            var hi = Vector256.Create(qmax);
            for (; r + 8 <= r1; r += 8)
                for (int j = 0; j < count; j++)
                {
                    long at = (long)j * rows + r;
                    var x = FedBack8(w, e, uu, rows, count, j, r);
                    var av = Vector256.Load(a + at);
                    var zv = Vector256.Load(z + at);
                    var qv = Vector256.Min(Vector256.Max(Vector256.Round(x / av) + zv, lo), hi);
                    x.Store(w + at);
                    qv.Store(q + at);
                    ((x - (qv - zv) * av) / Vector256.Create(uu[j * count + j])).Store(e + at);
                }
        }
        long cells = (long)rows * count;
        for (; r < r1; r++)
            Scalar(new Span<float>(w, (int)cells), new ReadOnlySpan<float>(uu, count * count), new ReadOnlySpan<float>(a, (int)cells),
                new ReadOnlySpan<float>(z, (int)cells), new Span<float>(q, (int)cells), new Span<float>(e, (int)cells), rows, count, qmax, r);
    }
}
