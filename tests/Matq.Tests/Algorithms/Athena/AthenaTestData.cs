// Seeded layers and Hessians for the Athena/GPTQ tests: correlated inputs X = Z·A give H = 2XᵀX/n with a real spectrum.
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

internal static class AthenaTestData
{
    /// <summary>W [rows, cols] ~ N(0, 1) with a few larger outliers, seeded.</summary>
    public static Tensor Weights(int rows, int cols, int seed)
    {
        var gen = new TorchSharp.torch.Generator((ulong)seed);
        var w = randn(rows, cols, generator: gen);
        var outliers = rand(rows, cols, generator: gen).lt(0.02).to(ScalarType.Float32);
        return w + outliers * randn(rows, cols, generator: gen) * 4;
    }

    /// <summary>H = 2XᵀX/n [cols, cols] for X = Z·A [n, cols]: Z ~ N(0,1), A = diag(s)(I + c·N) with per-feature scales s
    /// spread over two decades, so inputs are correlated (c) and of unequal energy.</summary>
    public static Tensor CorrelatedHessian(int cols, int samples, int seed, double correlation = 0.5)
    {
        var gen = new TorchSharp.torch.Generator((ulong)seed + 1000);
        var s = pow(10.0, rand(cols, generator: gen) * 2 - 1);                       // [cols]
        var a = (eye(cols) + randn(cols, cols, generator: gen) * (correlation / Math.Sqrt(cols))) * s.unsqueeze(1);
        var x = randn(samples, cols, generator: gen).matmul(a);                          // [n, cols]
        return x.t().matmul(x) * (2.0 / samples);
    }

    public static double MaxAbsDiff(Tensor a, Tensor b) => (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();

    /// <summary>Seeded Zipf-like token windows (frequent tokens dominate, as in text), so inputs have structure.</summary>
    public static int[][] ZipfWindows(int count, int length, int seed, int vocab = 384)
    {
        var rng = new Random(seed);
        double[] cdf = new double[vocab];
        double total = 0;
        for (int t = 0; t < vocab; t++) cdf[t] = total += 1.0 / (t + 1);
        var perm = Enumerable.Range(0, vocab).OrderBy(_ => rng.Next()).ToArray();
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, length).Select(_ =>
        {
            double u = rng.NextDouble() * total;
            int i = Array.BinarySearch(cdf, u);
            return perm[Math.Min(vocab - 1, i < 0 ? ~i : i)];
        }).ToArray()).ToArray();
    }
}
