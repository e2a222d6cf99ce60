// GptqBlockKernel: the vectorized kernel gives the reference's bits (rows not a multiple of the 8 lanes, chunks of 256
// rows over threads, B = 1 and a short block), and the reference is GPTQ's eager block pass restated here row-major
// (quantize column j, push its scaled residual onto columns j+1.. with rank-1 updates) on the same inputs.
using Matq.Kernels.Gptq;

namespace Matq.Kernels.Tests.Gptq;

public class GptqBlockKernelTests
{
    /// <summary>A random block [count, rows]: weights, an upper factor u, and one grid per (row, group of 4 columns) with α in
    /// [aMin, aMin + aSpan) (default: 0.004 + [0, 0.004)) and integer z in [0, qmax].</summary>
    internal static (float[] W, float[] U, float[] A, float[] Z) Inputs(int rows, int count, int seed, float qmax, float aMin = 0.004f, float aSpan = 0.004f)
    {
        var rng = new Random(seed);
        float N() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var w = new float[rows * count];
        var a = new float[rows * count];
        var z = new float[rows * count];
        var u = new float[count * count];
        for (int i = 0; i < w.Length; i++) w[i] = 0.02f * N();
        for (int j = 0; j < count; j++)
            for (int r = 0; r < rows; r++)
            {
                // one grid per (row, group of 4 columns), as a grouped grid expanded to columns
                var g = new Random(seed * 7919 + r * 31 + j / 4);
                a[j * rows + r] = aMin + aSpan * (float)g.NextDouble();
                z[j * rows + r] = MathF.Round((float)g.NextDouble() * qmax);
            }
        for (int j = 0; j < count; j++)
            for (int k = j; k < count; k++) u[j * count + k] = k == j ? 0.5f + (float)rng.NextDouble() : 0.2f * N();
        return (w, u, a, z);
    }

    [Theory]
    [InlineData(1, 1, 15f)]
    [InlineData(7, 16, 15f)]
    [InlineData(37, 24, 3f)]
    [InlineData(600, 33, 255f)]      // three 256-row chunks, the last short; 600 = 75 lanes of 8
    [InlineData(13, 128, 15f)]
    public void Simd_gives_the_reference_bits(int rows, int count, float qmax)
    {
        var (w, u, a, z) = Inputs(rows, count, rows + count, qmax);
        float[] w1 = (float[])w.Clone(), q1 = new float[w.Length], e1 = new float[w.Length];
        float[] w2 = (float[])w.Clone(), q2 = new float[w.Length], e2 = new float[w.Length];
        GptqBlockKernel.Reference(w1, u, a, z, q1, e1, rows, count, qmax);
        GptqBlockKernel.Simd(w2, u, a, z, q2, e2, rows, count, qmax, maxThreads: 2);
        Assert.Equal(q1, q2);
        Assert.Equal(e1.Select(BitConverter.SingleToInt32Bits), e2.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(w1.Select(BitConverter.SingleToInt32Bits), w2.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void The_reference_is_the_eager_block_pass()
    {
        const int rows = 9, count = 20;
        const float qmax = 15f;
        var (w, u, a, z) = Inputs(rows, count, 3, qmax);
        var q = new float[w.Length];
        var e = new float[w.Length];
        var wK = (float[])w.Clone();
        GptqBlockKernel.Reference(wK, u, a, z, q, e, rows, count, qmax);
        int moved = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = new float[count];
            for (int j = 0; j < count; j++) row[j] = w[j * rows + r];
            for (int j = 0; j < count; j++)
            {
                float av = a[j * rows + r], zv = z[j * rows + r];
                float code = Math.Clamp(MathF.Round(row[j] / av) + zv, 0, qmax);
                Assert.Equal(code, q[j * rows + r]);
                Assert.Equal(row[j], wK[j * rows + r]);
                float err = (row[j] - (code - zv) * av) / u[j * count + j];
                Assert.Equal(err, e[j * rows + r]);
                for (int k = j + 1; k < count; k++) row[k] -= err * u[j * count + k];   // the rank-1 update, k ascending per column
                if (code != Math.Clamp(MathF.Round(w[j * rows + r] / av) + zv, 0, qmax)) moved++;
            }
        }
        Assert.True(moved > 0, "the feedback never moved a code off round-to-nearest");
    }

    [Fact]
    public void Short_buffers_are_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => GptqBlockKernel.Simd(new float[7], new float[4], new float[8], new float[8], new float[8], new float[8], 4, 2, 15f));
        Assert.Contains("fewer than 2×4", ex.Message);
    }
}
