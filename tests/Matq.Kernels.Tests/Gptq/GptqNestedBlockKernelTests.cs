// GptqNestedBlockKernel: the vectorized kernel gives the reference's bits (rows not a multiple of the 8 lanes, chunks of
// 256 rows over threads, extra precision, λ ≠ 1, one width), the reference is the nested rule restated here (every
// candidate code near round(x/α) + z, its slices' λ-weighted squared error, the first least one, the λ-mean residual fed
// back with rank-1 updates), and bad arguments are refused.
using Matq.Kernels.Gptq;

namespace Matq.Kernels.Tests.Gptq;

public class GptqNestedBlockKernelTests
{
    // GptqBlockKernelTests' random block with an 8-bit grid of small steps (so the ±64 candidates span real choices)
    private static (float[] W, float[] U, float[] A, float[] Z) Inputs(int rows, int count, int seed) =>
        GptqBlockKernelTests.Inputs(rows, count, seed, 255f, aMin: 0.0002f, aSpan: 0.0003f);

    private static NestedWidth[] Widths(string bits, string lambda, bool extra) =>
        bits.Split(',').Select((b, i) => NestedWidth.Of(8, int.Parse(b), double.Parse(lambda.Split(',')[i], System.Globalization.CultureInfo.InvariantCulture), extra)).ToArray();

    [Theory]
    [InlineData(1, 1, "8,4,2", "1,1,1", false)]
    [InlineData(7, 16, "8,4,2", "1,1,1", false)]
    [InlineData(37, 24, "8,4,2", "0.1,0.1,1", false)]
    [InlineData(600, 9, "8,4,2", "1,1,2", false)]     // three 256-row chunks, the last short
    [InlineData(13, 20, "4,2", "1,1", true)]          // extra precision: the top bucket kept
    [InlineData(19, 12, "3", "1", false)]             // one width
    public void Simd_gives_the_reference_bits(int rows, int count, string bits, string lambda, bool extra)
    {
        var widths = Widths(bits, lambda, extra);
        int reach = 1 << (8 - bits.Split(',').Select(int.Parse).Min());
        float sum = (float)lambda.Split(',').Sum(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture));
        var (w, u, a, z) = Inputs(rows, count, rows + count);
        float[] w1 = (float[])w.Clone(), q1 = new float[w.Length], e1 = new float[w.Length];
        float[] w2 = (float[])w.Clone(), q2 = new float[w.Length], e2 = new float[w.Length];
        GptqNestedBlockKernel.Reference(w1, u, a, z, q1, e1, widths, rows, count, reach, 255f, sum);
        GptqNestedBlockKernel.Simd(w2, u, a, z, q2, e2, widths, rows, count, reach, 255f, sum, maxThreads: 2);
        Assert.Equal(q1, q2);
        Assert.Equal(e1.Select(BitConverter.SingleToInt32Bits), e2.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(w1.Select(BitConverter.SingleToInt32Bits), w2.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void The_reference_is_the_nested_rule_with_gptq_feedback()
    {
        const int rows = 9, count = 20, reach = 64;
        var widths = Widths("8,4,2", "1,1,2", false);
        var (w, u, a, z) = Inputs(rows, count, 3);
        var q = new float[w.Length];
        var e = new float[w.Length];
        var wK = (float[])w.Clone();
        GptqNestedBlockKernel.Reference(wK, u, a, z, q, e, widths, rows, count, reach, 255f, 4f);
        int offCenter = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = new float[count];
            for (int j = 0; j < count; j++) row[j] = w[j * rows + r];
            for (int j = 0; j < count; j++)
            {
                float x = row[j], av = a[j * rows + r], zv = z[j * rows + r];
                // ŵ_r(code) for widths 8, 4, 2: slice S = min(⌊(code + 2^(k−1)) / 2^k⌋, 2^r − 1), value α(S·2^k − z)
                float Value(float code, int bitsR) { int k = 8 - bitsR; float s = k == 0 ? code : Math.Min(MathF.Floor((code + (1 << (k - 1))) / (1 << k)), (1 << bitsR) - 1) * (1 << k); return (s - zv) * av; }
                float bestCost = float.PositiveInfinity, bestMean = 0, best = -1;
                float center = MathF.Round(x / av) + zv;
                for (int d = -reach; d <= reach; d++)
                {
                    float code = Math.Clamp(center + d, 0, 255);
                    float d8 = x - Value(code, 8), d4 = x - Value(code, 4), d2 = x - Value(code, 2);
                    float cost = d8 * d8 * 1 + d4 * d4 * 1 + d2 * d2 * 2;
                    if (cost < bestCost) (bestCost, bestMean, best) = (cost, d8 * 1 + d4 * 1 + d2 * 2, code);
                }
                Assert.Equal(best, q[j * rows + r]);
                Assert.Equal(x, wK[j * rows + r]);
                float err = bestMean / 4f / u[j * count + j];
                Assert.Equal(err, e[j * rows + r]);
                for (int k = j + 1; k < count; k++) row[k] -= err * u[j * count + k];
                if (best != center) offCenter++;
            }
        }
        Assert.True(offCenter > 0, "the nested objective never moved a code off the master's round-to-nearest");
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var one = new[] { NestedWidth.Of(8, 2, 1, false) };
        Assert.Contains("fewer than 2×4", Assert.Throws<ArgumentException>(() => GptqNestedBlockKernel.Simd(new float[7], new float[4], new float[8], new float[8],
            new float[8], new float[8], one, 4, 2, 64, 255f, 1f)).Message);
        Assert.Contains("at least one width", Assert.Throws<ArgumentException>(() => GptqNestedBlockKernel.Simd(new float[8], new float[4], new float[8], new float[8],
            new float[8], new float[8], [], 4, 2, 64, 255f, 1f)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => NestedWidth.Of(8, 9, 1, false));
    }
}
