// Generation: greedy follows the argmax chain, is deterministic and stops at max tokens or a stop id; seeded
// sampling repeats for the same seed; top-k 1 equals greedy.
using Matq.Runtime.Generation;
using Matq.Tests.Training;
using static TorchSharp.torch;

namespace Matq.Tests.Runtime.Generation;

public class TextGeneratorTests
{
    private const int V = 32;
    private static readonly BigramLm Model = new(V, 8, seed: 11);
    private static GenerationOptions Greedy(int max) => new() { MaxNewTokens = max, ContextLength = 16, Sampling = new SamplingOptions { Temperature = 0 } };

    [Fact]
    public void GreedyFollowsTheArgmaxChainAndRespectsMaxTokens()
    {
        var a = TextGenerator.Generate(Model, [3, 5], Greedy(20), CPU);
        var b = TextGenerator.Generate(Model, [3, 5], Greedy(20), CPU);
        Assert.Equal(20, a.Count);
        Assert.Equal(a, b);
        // the bigram model's next token depends only on the last one: check each step against its argmax
        int prev = 5;
        foreach (var t in a)
        {
            using var logits = Model.call(tensor(new long[] { prev }, [1, 1], ScalarType.Int64))[0, 0];
            Assert.Equal(TokenSampler.ArgMax(logits.data<float>().ToArray()), t);
            prev = t;
        }
        Assert.Empty(TextGenerator.Generate(Model, [3], Greedy(0), CPU));
        Assert.Equal(7, TextGenerator.Generate(Model, [3], Greedy(7), CPU).Count);
    }

    [Fact]
    public void StopIdEndsGenerationAndIsIncluded()
    {
        var a = TextGenerator.Generate(Model, [3, 5], Greedy(20), CPU);
        var stop = a[4];
        var first = a.ToList().IndexOf(stop);
        var b = TextGenerator.Generate(Model, [3, 5], Greedy(20) with { StopIds = [stop] }, CPU);
        Assert.Equal(a.Take(first + 1), b);
    }

    [Fact]
    public void SeededSamplingRepeatsAndTopKOneIsGreedy()
    {
        GenerationOptions Sampled(int seed, int k) => new() { MaxNewTokens = 40, ContextLength = 16, Sampling = new SamplingOptions { Temperature = 1.5, TopK = k, Seed = seed } };
        var a = TextGenerator.Generate(Model, [1], Sampled(1, 0), CPU);
        Assert.Equal(a, TextGenerator.Generate(Model, [1], Sampled(1, 0), CPU));
        Assert.NotEqual(a, TextGenerator.Generate(Model, [1], Sampled(2, 0), CPU));
        Assert.Equal(TextGenerator.Generate(Model, [1], Greedy(40), CPU), TextGenerator.Generate(Model, [1], Sampled(3, 1), CPU));
    }

    [Fact]
    public void BadOptionsAreUserErrors()
    {
        Assert.Throws<MatqException>(() => TextGenerator.Generate(Model, [], Greedy(5), CPU));
        Assert.Throws<MatqException>(() => TextGenerator.Generate(Model, [1], Greedy(5) with { Sampling = new SamplingOptions { Temperature = -1 } }, CPU));
    }
}

public class CachedGenerationTests
{
    /// <summary>Hides the Llama type so the generator takes its uncached path.</summary>
    private sealed class Opaque(TorchSharp.torch.nn.Module<Tensor, Tensor> inner) : TorchSharp.torch.nn.Module<Tensor, Tensor>("Opaque")
    {
        public override Tensor forward(Tensor ids) => inner.call(ids);
    }

    [Fact]
    public void KvCachedGreedyEqualsRecomputationAcrossTheContextLimit()
    {
        TorchSharp.torch.manual_seed(3);
        using var llama = new Matq.Models.LlamaForCausalLM(new Matq.Runtime.Models.LlamaConfig(hiddenSize: 32, intermediateSize: 64, numLayers: 2,
            numHeads: 4, vocabSize: 40, numKvHeads: 2, maxPositionEmbeddings: 24));
        // 30 new tokens after a 5-token prompt overflow the 12-token window, exercising the cache restart.
        var options = new GenerationOptions { MaxNewTokens = 30, ContextLength = 12, Sampling = new SamplingOptions { Temperature = 0 } };
        var cached = TextGenerator.Generate(llama, [1, 2, 3, 4, 5], options, CPU);
        var plain = TextGenerator.Generate(new Opaque(llama), [1, 2, 3, 4, 5], options, CPU);
        Assert.Equal(30, cached.Count);
        Assert.Equal(plain, cached);
    }
}
