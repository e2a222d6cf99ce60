// Tests tensor RoundClip against the scalar helper (including ties), its STE gradient, and per-channel weight
// standardization (mean 0, std 1, shape kept, eps validated).
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public class RoundClipAndStandardizationTests
{
    [Fact]
    public void TensorRoundClipEqualsScalarHelper()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(4);
        float[] x = Enumerable.Range(0, 500).Select(i => i % 5 == 0 ? (i / 5 - 50) * 0.5f : (float)(rng.NextDouble() * 20 - 10)).ToArray();
        float[] expected = x.Select(v => Rounding.RoundClip(v, -4, 3)).ToArray();
        Assert.Equal(expected, TensorRoundClip.RoundClip(tensor(x), -4, 3).data<float>().ToArray());
        Assert.Equal(expected, TensorRoundClip.RoundClipSte(tensor(x), -4, 3).data<float>().ToArray());
    }

    [Fact]
    public void RoundClipSteGradientIsOneInsideTheRange()
    {
        using var scope = NewDisposeScope();
        Tensor x = tensor(new float[] { -5f, -4f, -0.5f, 2.5f, 3f, 3.2f }).requires_grad_(true);
        TensorRoundClip.RoundClipSte(x, -4, 3).sum().backward();
        Assert.Equal(new float[] { 0, 1, 1, 1, 1, 0 }, x.grad!.data<float>().ToArray());
    }

    [Fact]
    public void StandardizedChannelsHaveMeanZeroAndStdOne()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        Tensor w = randn(6, 3, 2, 2) * 0.3 + 1.7;
        Tensor s = WeightStandardization.Apply(w, eps: 1e-10);
        Assert.Equal(w.shape, s.shape);
        Tensor flat = s.reshape(6, -1);
        float[] mean = flat.mean(new long[] { 1 }).data<float>().ToArray();
        float[] std = flat.std(1, false, false).data<float>().ToArray();
        Assert.All(mean, m => Assert.InRange(m, -1e-5f, 1e-5f));
        Assert.All(std, v => Assert.InRange(v, 1 - 1e-4f, 1 + 1e-4f));
        // each channel standardized on its own: standardizing one channel alone gives the same rows
        Tensor one = WeightStandardization.Apply(w[1].unsqueeze(0), eps: 1e-10);
        Assert.True(allclose(one[0], s[1], 1e-6, 1e-6));
    }

    [Fact]
    public void StandardizationMatchesTheFormulaWithEps()
    {
        using var scope = NewDisposeScope();
        Tensor w = tensor(new float[] { 1, 2, 3, 4, 10, 10, 10, 14 }, new long[] { 2, 4 });
        float[] s = WeightStandardization.Apply(w, eps: 0.75).data<float>().ToArray();
        // row 0: mean 2.5, var 1.25 → /sqrt(2); row 1: mean 11, var 3 → /sqrt(3.75)
        float[] expected = { -1.5f / MathF.Sqrt(2), -0.5f / MathF.Sqrt(2), 0.5f / MathF.Sqrt(2), 1.5f / MathF.Sqrt(2),
            -1 / MathF.Sqrt(3.75f), -1 / MathF.Sqrt(3.75f), -1 / MathF.Sqrt(3.75f), 3 / MathF.Sqrt(3.75f) };
        TensorQuantTestData.AssertClose(expected, s, 1e-6f);
        Assert.Contains("eps = -1", Assert.Throws<MatqException>(() => WeightStandardization.Apply(w, -1)).Message);
    }

    [Fact]
    public void StandardizationIsDifferentiable()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        Tensor w = randn(4, 5).requires_grad_(true);
        (WeightStandardization.Apply(w) * randn(4, 5)).sum().backward();
        float[] g = w.grad!.data<float>().ToArray();
        Assert.All(g, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(g, v => v != 0f);
        // the output of each row is invariant to shifting that row, so each row's gradient sums to 0
        Assert.All(w.grad!.sum(1).data<float>().ToArray(), v => Assert.InRange(v, -1e-5f, 1e-5f));
    }
}
