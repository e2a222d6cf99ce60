// Greedy argmax: the vectorized search returns what a strict-greater scan from id 0 returns — the lowest id of the
// largest logit — on ties, negative logits, NaNs (never chosen unless at id 0) and a zero maximum (+0 and −0 tie).
using Matq.Runtime.Generation;

namespace Matq.Tests.Runtime.Generation;

public sealed class TokenSamplerArgMaxTests
{
    private static int Scan(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    [Fact]
    public void ArgMaxEqualsTheStrictScanOnRandomLogitsAndEdgeCases()
    {
        var rng = new Random(7);
        for (int t = 0; t < 200; t++)
        {
            int n = 1 + rng.Next(3000);
            var v = Enumerable.Range(0, n).Select(_ => (float)Math.Round(rng.NextDouble() * 8 - 6, 1)).ToArray();   // many ties
            switch (t % 5)
            {
                case 1: v[rng.Next(n)] = float.NaN; break;
                case 2: v[0] = float.NaN; break;
                case 3: for (int i = 0; i < n; i++) v[i] = -Math.Abs(v[i]) - 1; v[rng.Next(n)] = -0f; v[rng.Next(n)] = 0f; break;
                case 4: for (int i = 0; i < n; i++) v[i] = -Math.Abs(v[i]) - 1; break;
            }
            Assert.Equal(Scan(v), TokenSampler.ArgMax(v));
        }
        Assert.Equal(0, TokenSampler.ArgMax([]));
        Assert.Equal(2, TokenSampler.ArgMax([1f, 3f, 5f, 5f, float.NaN]));
    }
}
