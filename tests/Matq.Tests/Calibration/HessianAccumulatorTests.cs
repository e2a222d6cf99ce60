// Streaming Hessian accumulation against the batch formula H = 2XᵀX/N, and its refusal of non-finite activations.
using Matq.Calibration;
using static TorchSharp.torch;

namespace Matq.Tests.Calibration;

public class HessianAccumulatorTests
{
    [Fact]
    public void StreamingEqualsTheBatchFormula()
    {
        using var scope = NewDisposeScope();
        var gen = new TorchSharp.torch.Generator(42);
        // batches of different sizes and leading shapes: [2, 5, 12], [7, 12], [1, 1, 12], [3, 8, 12] (bf16 too)
        var batches = new[]
        {
            randn(new long[] { 2, 5, 12 }, generator: gen) * 3,
            randn(new long[] { 7, 12 }, generator: gen) + 1,
            randn(new long[] { 1, 1, 12 }, generator: gen),
            randn(new long[] { 3, 8, 12 }, generator: gen).to(ScalarType.BFloat16),
        };
        using var acc = new HessianAccumulator("model.layers.0.mlp.down_proj", 12);
        foreach (var b in batches) acc.Add(b);

        var x = cat(batches.Select(b => b.to(ScalarType.Float64).reshape(-1, 12)).ToArray(), 0);   // X [N, in]
        long n = x.shape[0];
        var expected = x.t().matmul(x) * (2.0 / n);
        Assert.Equal(n, acc.Count);
        double diff = (acc.Hessian.to(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(diff < 1e-5 * expected.abs().max().item<double>(), $"streaming H differs by {diff:E3}");
    }

    [Fact]
    public void NonFiniteActivationsStopNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        using var acc = new HessianAccumulator("model.layers.3.self_attn.o_proj", 4);
        acc.Add(ones(2, 4));
        var bad = ones(3, 4);
        bad[1, 2] = tensor(float.NaN);
        var e = Assert.Throws<MatqException>(() => acc.Add(bad));
        Assert.Contains("model.layers.3.self_attn.o_proj", e.Message);
        bad[1, 2] = tensor(float.NegativeInfinity);
        Assert.Throws<MatqException>(() => acc.Add(bad));
        Assert.Throws<ArgumentException>(() => acc.Add(ones(2, 5)));
        Assert.Equal(2, acc.Count);   // the refused batches left it untouched
        Assert.Equal(0.0, (acc.Hessian - full(4, 4, 2.0f)).abs().max().item<float>());
    }
}
