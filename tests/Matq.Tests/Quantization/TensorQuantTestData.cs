// Shared seeded data for the tensor-path tests: random weight matrices and the specs to sweep.
using Matq.Kernels.Quantization;

namespace Matq.Tests.Quantization;

internal static class TensorQuantTestData
{
    /// <summary>Every layout × scheme × bits 1..8, with group sizes that do and do not divide the rows used.</summary>
    public static IEnumerable<object[]> Specs()
    {
        for (int bits = 1; bits <= 8; bits++)
            foreach (QuantScheme scheme in new[] { QuantScheme.Asymmetric, QuantScheme.Symmetric })
            {
                if (scheme == QuantScheme.Symmetric && bits < 2) continue;
                yield return new object[] { bits, Granularity.PerTensor, 0, scheme };
                yield return new object[] { bits, Granularity.PerChannel, 0, scheme };
                yield return new object[] { bits, Granularity.Group, 4, scheme };
                yield return new object[] { bits, Granularity.Group, 7, scheme };
            }
    }

    public static float[] RandomWeights(Random rng, int n)
    {
        float scale = (float)Math.Pow(10, rng.NextDouble() * 4 - 3);
        int mode = rng.Next(4);
        var w = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1) * scale;
            if (rng.Next(10) == 0) v = MathF.Round(v / scale * 4) * scale / 4;  // ties and exact grid points
            w[i] = mode switch { 1 => MathF.Abs(v), 2 => -MathF.Abs(v), _ => v };
        }
        return w;
    }

    public static void AssertClose(float[] expected, float[] actual, float tol = 1e-6f)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(MathF.Abs(expected[i] - actual[i]) <= tol * MathF.Max(1f, MathF.Abs(expected[i])),
                $"index {i}: expected {expected[i]}, got {actual[i]}");
    }
}
