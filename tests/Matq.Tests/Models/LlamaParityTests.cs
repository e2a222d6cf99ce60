// Parity with HF transformers 5.17: our fp32 logits for the fixtures' input_ids match HF's within 1e-4 (max abs).
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Models;

public class LlamaParityTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void Fp32LogitsMatchTransformers(string fixture)
    {
        using var scope = NewDisposeScope();
        using var model = LlamaLoader.Load(HfFixtures.Path(fixture));
        var (ids, expected) = HfFixtures.Expected(fixture);
        using var _ = no_grad();
        var logits = model.call(ids);
        Assert.Equal(expected.shape, logits.shape);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        double diff = HfFixtures.MaxAbsDiff(logits, expected);
        Assert.True(diff < 1e-4, $"{fixture}: max abs diff {diff:E3} vs HF logits (limit 1e-4)");
        output.WriteLine($"{fixture}: max abs diff {diff:E3}");
    }

    [Fact]
    public void QwenFixtureIsTiedAndHasQkvBias()
    {
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-qwen2"));
        Assert.True(model.Config.TieWordEmbeddings);
        Assert.Null(model.LmHead);
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", names);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", names);
        Assert.DoesNotContain("lm_head.weight", names);
    }

    [Fact]
    public void ParameterNamesAreExactlyHfNames()
    {
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        var ours = model.named_parameters().Select(p => p.name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        var hf = LlamaTensors.Expected(model.Config).Select(e => e.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        Assert.Equal(hf, ours);
        Assert.Equal(model.Config.ParameterCount(), model.parameters().Sum(p => p.numel()));
    }
}
