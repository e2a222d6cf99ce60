// Contract: fp32 GEMV y = Wx for a row-major float W [rows, cols], Vector256 FMA (Vector128 otherwise), rows split over
// Parallel.For; the baseline the packed kernels are compared with in `matq bench kernels`.
using System.Numerics.Tensors;

namespace Matq.Kernels.Simd;

public static class GemvF32Simd
{
    public const int RowChunk = 32;

    public static void Gemv(float[] w, int rows, int cols, ReadOnlySpan<float> x, Span<float> y, int maxThreads = -1)
    {
        if (w.Length != rows * cols || x.Length != cols || y.Length != rows) throw new ArgumentException("W must be [rows, cols], x [cols], y [rows]");
        var xa = x.ToArray();
        var ya = new float[rows];
        int chunks = (rows + RowChunk - 1) / RowChunk;
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, c =>
        {
            int r1 = Math.Min(rows, (c + 1) * RowChunk);
            for (int o = c * RowChunk; o < r1; o++) ya[o] = TensorPrimitives.Dot(w.AsSpan(o * cols, cols), xa);
        });
        ya.CopyTo(y);
    }
}
