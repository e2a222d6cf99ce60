// Model mechanics on small seeded random models: per-block path, KV-cache decoding, linear swapping, bf16, backward,
// linear rope scaling and sliding-window attention (with and without the cache).
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Models;

public class LlamaModelTests
{
    private static LlamaConfig Small(bool tied = false, LlamaFamily family = LlamaFamily.Llama, int? slidingWindow = null) =>
        new(hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, vocabSize: 50, family: family,
            numKvHeads: 2, maxPositionEmbeddings: 64, tieWordEmbeddings: tied, slidingWindow: slidingWindow);

    private static LlamaForCausalLM Random(LlamaConfig c)
    {
        manual_seed(1234);
        return new LlamaForCausalLM(c);
    }

    private static Tensor Ids(long b, long t) { manual_seed(7); return randint(0, 50, new[] { b, t }, dtype: ScalarType.Int64); }

    [Fact]
    public void PerBlockPathEqualsForward()
    {
        using var scope = NewDisposeScope();
        using var model = Random(Small(family: LlamaFamily.Qwen2));
        using var _ = no_grad();
        var ids = Ids(2, 9);
        var h = model.EmbedTokens(ids);
        foreach (var layer in model.Layers) h = layer.forward(h);
        var logits = model.FinalNormAndHead(h);
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(logits, model.call(ids)));

        // explicit positions equal the implicit 0..T-1
        var h2 = model.Layers[0].forward(model.EmbedTokens(ids), arange(9, dtype: ScalarType.Int64));
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(h2, model.Layers[0].forward(model.EmbedTokens(ids))));
    }

    [Fact]
    public void KvCacheDecodingMatchesFullForward()
    {
        using var scope = NewDisposeScope();
        using var model = Random(Small());
        using var _ = no_grad();
        var ids = Ids(2, 12);
        var full = model.call(ids);
        using var cache = new KvCache(model.Config.NumLayers);
        // prefill 5, then a chunk of 3 (mask path), then one token at a time
        var parts = new List<Tensor> { model.forward(ids.narrow(1, 0, 5), cache, 0), model.forward(ids.narrow(1, 5, 3), cache, 5) };
        for (long p = 8; p < 12; p++) parts.Add(model.forward(ids.narrow(1, p, 1), cache, p));
        Assert.Equal(12, cache.Length);
        double diff = HfFixtures.MaxAbsDiff(cat(parts.ToArray(), 1), full);
        Assert.True(diff < 1e-5, $"cached decoding differs from full forward by {diff:E3}");
        Assert.Throws<ArgumentException>(() => model.forward(ids.narrow(1, 0, 1), cache, 3));
    }

    [Fact]
    public void LinearsAreEnumeratedAndSwappableByHfName()
    {
        using var scope = NewDisposeScope();
        using var model = Random(Small());
        var linears = model.Linears();
        Assert.Equal(2 * 7, linears.Count);
        Assert.Equal("model.layers.0.self_attn.q_proj", linears[0].Name);
        Assert.Equal("model.layers.1.mlp.down_proj", linears[^1].Name);
        Assert.Equal("lm_head", model.Linears(includeHead: true)[^1].Name);
        var w = ((TorchSharp.Modules.Linear)linears[0].Module).weight!;
        Assert.Equal(new long[] { 32, 32 }, w.shape);

        using var _ = no_grad();
        var ids = Ids(1, 6);
        var before = model.call(ids);
        const string name = "model.layers.1.mlp.up_proj";
        var old = (TorchSharp.Modules.Linear)model.Linears().Single(l => l.Name == name).Module;
        var counting = new CountingLinear(old);
        model.ReplaceLinear(name, counting);
        Assert.Same(counting, model.Linears().Single(l => l.Name == name).Module);
        Assert.Contains(model.named_parameters(), p => p.name == name + ".inner.weight");
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(before, model.call(ids)));
        Assert.Equal(1, counting.Calls);
        Assert.Throws<ArgumentException>(() => model.ReplaceLinear("model.layers.9.mlp.up_proj", counting));
    }

    private sealed class CountingLinear : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> inner;
        public int Calls { get; private set; }
        public CountingLinear(nn.Module<Tensor, Tensor> inner) : base("CountingLinear") { this.inner = inner; RegisterComponents(); }
        public override Tensor forward(Tensor x) { Calls++; return inner.call(x); }
    }

    [Fact]
    public void Bf16ModelRunsAndBackwardReachesEveryParameter()
    {
        using var scope = NewDisposeScope();
        using var model = Random(Small(tied: true));
        var ids = Ids(2, 8);
        Tensor reference;
        using (no_grad()) reference = model.call(ids);
        model.to(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, model.Dtype);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        var logits = model.call(ids);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        Assert.True(HfFixtures.MaxAbsDiff(logits, reference) < 0.05 * reference.abs().max().item<float>());

        var loss = nn.functional.cross_entropy(logits.reshape(-1, 50), ids.reshape(-1));
        loss.backward();
        foreach (var (name, p) in model.named_parameters())
            Assert.True(p.grad is not null && p.grad.abs().sum().to(ScalarType.Float32).item<float>() > 0, $"no gradient reached {name}");
    }

    [Fact]
    public void LinearRopeScalingDividesPositions()
    {
        using var scope = NewDisposeScope();
        using var plain = new RotaryEmbedding(16, 10000.0);
        using var scaled = new RotaryEmbedding(16, 10000.0, linearFactor: 2.0);
        var (c1, s1) = plain.ForRange(0, 8, CPU, ScalarType.Float32);
        var (c2, s2) = scaled.ForRange(0, 16, CPU, ScalarType.Float32);
        // position 2p under factor 2 is position p without scaling
        var even = arange(0, 16, 2, dtype: ScalarType.Int64);
        Assert.True(HfFixtures.MaxAbsDiff(c2.index_select(2, even), c1) < 1e-6);
        Assert.True(HfFixtures.MaxAbsDiff(s2.index_select(2, even), s1) < 1e-6);
    }

    [Fact]
    public void SlidingWindowMasksOldKeysAlsoWhenDecodingWithTheCache()
    {
        using var scope = NewDisposeScope();
        using var model = Random(Small(family: LlamaFamily.Mistral, slidingWindow: 8));
        using var full = Random(Small(family: LlamaFamily.Mistral));
        using var _ = no_grad();
        var ids = Ids(2, 20);
        var logits = model.call(ids);
        // up to the window the masks agree; beyond it, old keys drop out
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(logits.narrow(1, 0, 8), full.call(ids).narrow(1, 0, 8)), 5);
        Assert.True(HfFixtures.MaxAbsDiff(logits.narrow(1, 8, 12), full.call(ids).narrow(1, 8, 12)) > 1e-4);
        // prefill 5, then chunks of 1 and 6 tokens through the cache: the same logits as one forward
        using var cache = new KvCache(2);
        var parts = new List<Tensor> { model.forward(ids.narrow(1, 0, 5), cache, 0) };
        parts.Add(model.forward(ids.narrow(1, 5, 1), cache, 5));
        parts.Add(model.forward(ids.narrow(1, 6, 6), cache, 6));
        for (int p = 12; p < 20; p++) parts.Add(model.forward(ids.narrow(1, p, 1), cache, p));
        Assert.True(HfFixtures.MaxAbsDiff(cat(parts.ToArray(), 1), logits) < 1e-5);
    }

    [Fact]
    public void RandomModelSavesAndLoadsWithBiases()
    {
        using var scope = NewDisposeScope();
        var c = new LlamaConfig(hiddenSize: 32, intermediateSize: 48, numLayers: 1, numHeads: 4, vocabSize: 50,
            attentionBias: true, mlpBias: true, ropeScaling: RopeScaling.Linear, ropeFactor: 2.0);
        using var model = Random(c);
        var dir = HfFixtures.TempDir();
        LlamaSaver.Save(model, dir);
        using var back = LlamaLoader.Load(dir);
        Assert.Equal(c, back.Config);
        using var _ = no_grad();
        var ids = Ids(1, 10);
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(model.call(ids), back.call(ids)));
    }
}
