// PackedPrecisionCache: the default precision is built at construction; another bits value is built on first use and
// then returned as the same instance; the cache holds at most Capacity precisions and drops the least recently used
// (rebuilt when asked again); a plan is the default when given; bits outside 1..master are refused; each precision's
// models equal a direct PackedLlamaModel.Load at those bits; sessions are pooled.
using Matq.Runtime.Packed;
using Matq.Runtime.Plans;
using Matq.Tests.Pipeline;

namespace Matq.Tests.Runtime.Packed;

public sealed class PackedPrecisionCacheTests
{
    private static readonly string Artifact = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32)).Path;

    [Fact]
    public void Precisions_are_built_once_and_the_least_recently_used_is_dropped_beyond_capacity()
    {
        var cache = new PackedPrecisionCache(Artifact, new PackedServingOptions { DefaultBits = 4, Capacity = 2, Threads = 1 });
        Assert.Equal(["4"], cache.CachedKeys);
        Assert.Same(cache.Default, cache.Get(null));
        Assert.Same(cache.Default, cache.Get(4));
        Assert.Equal(4, cache.Default.Model.Bits);

        var two = cache.Get(2);
        Assert.Equal(2, two.Model.Bits);
        Assert.Equal(2.0, two.Model.MeanLayerBits);
        Assert.True(two.Model.LayerWeightBytes < cache.Default.Model.LayerWeightBytes);
        Assert.Same(two, cache.Get(2));
        Assert.Equal(["2", "4"], cache.CachedKeys);

        cache.Get(4);                       // 4 is now the most recently used: 2 goes when 8 comes
        var eight = cache.Get(8);
        Assert.Equal(["8", "4"], cache.CachedKeys);
        var twoAgain = cache.Get(2);
        Assert.NotSame(two, twoAgain);
        Assert.Equal(["2", "8"], cache.CachedKeys);

        // same weights as a direct load at those bits
        var direct = PackedLlamaModel.Load(Artifact, new PackedModelOptions { Bits = 2, HeadBits = null });
        var ids = new[] { 3, 17, 5, 9 };
        Assert.Equal(new PackedLlamaSession(direct, threads: 1).Forward(ids), new PackedLlamaSession(twoAgain.Model, threads: 1).Forward(ids));
        Assert.Equal(8, eight.Model.Bits);

        var bad = Assert.Throws<MatqException>(() => cache.Get(9));
        Assert.Contains("more than the artifact's 8 master bits", bad.Message);
        Assert.Throws<MatqException>(() => cache.Get(0));
        Assert.Throws<MatqException>(() => new PackedPrecisionCache(Artifact, new PackedServingOptions { Capacity = 0 }));
    }

    [Fact]
    public void A_plan_is_the_default_precision_and_sessions_are_pooled()
    {
        var plan = new BitPlan(new Dictionary<string, int> { ["model.layers.0.mlp.down_proj"] = 8 });
        var cache = new PackedPrecisionCache(Artifact, new PackedServingOptions { DefaultBits = 2, Plan = plan, Threads = 1 });
        Assert.Equal([PackedPrecisionCache.PlanKey], cache.CachedKeys);
        Assert.Same(cache.Default, cache.Get(null));
        Assert.True(cache.Default.Model.MeanLayerBits > 2);
        Assert.Equal(8, cache.Default.Model.Layers[0].Down.Bits);
        Assert.Equal(2, cache.Default.Model.Layers[0].Up.Bits);
        Assert.Equal(2.0, cache.Get(2).Model.MeanLayerBits);   // an explicit bits value serves uniformly

        PackedLlamaSession first;
        using (var lease = cache.Default.Rent()) first = lease.Session;
        using (var again = cache.Default.Rent())
        {
            Assert.Same(first, again.Session);
            using var second = cache.Default.Rent();   // in use: a new one
            Assert.NotSame(first, second.Session);
        }
    }
}
