// Contract: Y[t, o] = Σ_k W[o, k]·X[t, k] for a row-major float W [rows, cols] and T activation rows (the fp32 head of the
// packed runtime, prefill); each weight row is read once per call and dotted with every X row (TensorPrimitives.Dot),
// row chunks over Parallel.For.
using System.Numerics.Tensors;

namespace Matq.Kernels.Simd;

public static class GemmF32Simd
{
    public const int RowChunk = 64;

    /// <param name="x">[t, cols]</param><param name="y">[t, rows]</param>
    public static void Gemm(float[] w, int rows, int cols, ReadOnlySpan<float> x, int t, Span<float> y, int maxThreads = -1)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (w.LongLength != (long)rows * cols || x.Length != (long)t * cols || y.Length != (long)t * rows)
            throw new ArgumentException("W must be [rows, cols], x [t, cols], y [t, rows]");
        var xa = x.ToArray();
        var ya = new float[(long)t * rows];
        int chunks = (rows + RowChunk - 1) / RowChunk;
        void Run(int c)
        {
            int r1 = Math.Min(rows, (c + 1) * RowChunk);
            for (int o = c * RowChunk; o < r1; o++)
            {
                var wr = w.AsSpan((int)((long)o * cols), cols);
                for (int r = 0; r < t; r++) ya[(long)r * rows + o] = TensorPrimitives.Dot(wr, xa.AsSpan(r * cols, cols));
            }
        }
        if (chunks == 1 || maxThreads == 1) for (int c = 0; c < chunks; c++) Run(c);
        else Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, Run);
        ya.CopyTo(y);
    }
}
