// Mix'n'Match plans: strategy invariants (uniform exact, pyramid middle ≥ outer, budget average ≤ budget), the JSON
// round trip, the loader conversion, and the refusals (unknown layer, bits out of range, a different model).
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Plans;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;

namespace Matq.Tests.Plans;

public class PlanTests
{
    // 6 decoder blocks × 3 linears of unequal sizes (same per block), as PlanLayer sees an artifact
    private static IReadOnlyList<PlanLayer> Layers() =>
        Enumerable.Range(0, 6).SelectMany(b => new[]
        {
            new PlanLayer($"model.layers.{b}.self_attn.q_proj", b, 64 * 64),
            new PlanLayer($"model.layers.{b}.mlp.up_proj", b, 64 * 176),
            new PlanLayer($"model.layers.{b}.mlp.down_proj", b, 176 * 64),
        }).ToArray();

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(8)]
    public void Uniform_has_exactly_the_requested_bits(int bits)
    {
        var plan = PlanStrategies.Uniform(Layers(), bits);
        Assert.All(plan.Values, b => Assert.Equal(bits, b));
        Assert.Equal(bits, PlanStrategies.AverageBits(Layers(), plan), 9);
    }

    [Theory]
    [InlineData(2.5)]
    [InlineData(3.0)]
    [InlineData(4.7)]
    [InlineData(6.0)]
    public void Pyramid_gives_middle_blocks_at_least_the_outer_blocks_bits_within_budget(double budget)
    {
        var layers = Layers();
        var plan = PlanStrategies.Pyramid(layers, budget, [2, 4, 8]);
        Assert.True(PlanStrategies.AverageBits(layers, plan) <= budget + 1e-9);
        int Bits(int block) => plan[$"model.layers.{block}.mlp.up_proj"];
        Assert.True(Bits(2) >= Bits(1) && Bits(1) >= Bits(0), $"blocks 0,1,2 got {Bits(0)},{Bits(1)},{Bits(2)}");
        Assert.True(Bits(3) >= Bits(4) && Bits(4) >= Bits(5), $"blocks 3,4,5 got {Bits(3)},{Bits(4)},{Bits(5)}");
        Assert.True(plan.Values.Distinct().Count() > 1 || budget >= 8, "a budget between levels mixes widths");
        Assert.All(layers.GroupBy(l => l.Block), g => Assert.Single(g.Select(l => plan[l.Name]).Distinct()));
    }

    [Theory]
    [InlineData(2.0)]
    [InlineData(3.2)]
    [InlineData(5.5)]
    public void Budget_search_stays_within_budget_and_favours_sensitive_layers(double budget)
    {
        var layers = Layers();
        // down_proj layers are 10× more sensitive than the others; lower bits hurt more (4 bits: ¼ of 2 bits')
        double Sens(string name, int bits) => (name.Contains("down_proj") ? 10 : 1) * (bits == 2 ? 1.0 : bits == 4 ? 0.25 : 0);
        var plan = PlanStrategies.Budget(layers, budget, [2, 4, 8], Sens);
        double avg = PlanStrategies.AverageBits(layers, plan);
        Assert.True(avg <= budget + 1e-9, $"average {avg} > budget {budget}");
        Assert.True(budget - avg < 2.0 * 176 * 64 * 4 / layers.Sum(l => (double)l.Parameters) + 1e-9, "the budget is used up to one raise");
        if (budget > 2)
            Assert.True(layers.Where(l => l.Name.Contains("down_proj")).Min(l => plan[l.Name]) >= layers.Where(l => !l.Name.Contains("down_proj")).Max(l => plan[l.Name]));
    }

    [Fact]
    public void Budget_below_the_lowest_level_is_refused()
    {
        Assert.Throws<MatqException>(() => PlanStrategies.Budget(Layers(), 1.5, [2, 4, 8], (_, _) => 1));
        Assert.Throws<MatqException>(() => PlanStrategies.Pyramid(Layers(), 1.5, [2, 4, 8]));
    }

    [Fact]
    public void Plan_round_trips_and_serves_its_bits()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8));
        var artifact = MatqArtifact.Open(path);
        var layers = PlanLayer.From(artifact);
        var bits = PlanStrategies.Pyramid(layers, 5, [2, 4, 8]);
        var plan = new BitPlan(BitPlan.ModelHashOf(artifact), 8, 8, bits, "pyramid");
        var file = Path.Combine(HfFixtures.TempDir(), "plan.json");
        plan.Save(file);
        var loaded = BitPlan.Load(file);
        Assert.Equal(plan.ModelHash, loaded.ModelHash);
        Assert.Equal(bits.OrderBy(k => k.Key), loaded.Layers.OrderBy(k => k.Key));
        using var served = QuantizedModelLoader.LoadServed(artifact, 8, null, TorchSharp.torch.ScalarType.Float32, false, loaded);
        Assert.All(served.Layers, l => Assert.Equal(bits[l.Name[..^7]], l.Bits));
        Assert.Equal(plan.AverageBits(artifact), served.Layers.Sum(l => (double)l.Bits * l.Weights) / served.Layers.Sum(l => (double)l.Weights), 9);
    }

    [Fact]
    public void Plan_naming_an_unknown_layer_is_refused()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8));
        var artifact = MatqArtifact.Open(path);
        var plan = new BitPlan(BitPlan.ModelHashOf(artifact), 8, 4, new Dictionary<string, int> { ["model.layers.9.mlp.up_proj"] = 2 });
        var e = Assert.Throws<MatqException>(() => plan.Validate(artifact));
        Assert.Contains("model.layers.9.mlp.up_proj", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(9)]
    public void Plan_bits_out_of_range_are_refused(int bits)
    {
        var e = Assert.Throws<MatqException>(() => new BitPlan("abc", 8, 4, new Dictionary<string, int> { ["model.layers.0.mlp.up_proj"] = bits }));
        Assert.Contains("out of range", e.Message);
        Assert.Throws<MatqException>(() => BitPlan.Parse($$"""{"format":"matq-plan","model_hash":"x","master_bits":4,"default_bits":{{bits}},"layers":{} }"""));
    }

    [Fact]
    public void Plan_for_a_different_model_is_refused()
    {
        var (a, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 32));
        var (b, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 16));
        var artA = MatqArtifact.Open(a);
        var artB = MatqArtifact.Open(b);
        var plan = new BitPlan(BitPlan.ModelHashOf(artA), 8, 4, PlanStrategies.Uniform(PlanLayer.From(artA), 4));
        plan.Validate(artA);
        var e = Assert.Throws<MatqException>(() => plan.Validate(artB));
        Assert.Contains("different model", e.Message);
    }
}
