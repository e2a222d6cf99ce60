// The registry lists rtn and refuses unknown names with the known list; config validation names the field;
// linear selection picks the decoder linears (not lm_head/embeddings) unless asked; the runner emits progress.
using Matq.Algorithms.Rtn;
using Matq.Quantization.Pipeline;

namespace Matq.Tests.Pipeline;

public sealed class RegistryAndConfigTests
{
    [Fact]
    public void Registry_lists_rtn_and_creates_it()
    {
        Assert.Contains("rtn", AlgorithmRegistry.Names);
        Assert.Same(RtnAlgorithm.Registration, AlgorithmRegistry.Get("RTN"));
        var alg = AlgorithmRegistry.Create(PipelineFixtures.Rtn(4, clip: "mse"));
        var rtn = Assert.IsType<RtnAlgorithm>(alg);
        Assert.Equal(RtnClip.Mse, rtn.Rtn.Clip);
        Assert.False(AlgorithmRegistry.Get("rtn").NeedsCalibration);
    }

    [Theory]
    [InlineData("gptq-nope")]
    [InlineData("")]
    public void Unknown_method_lists_the_known_ones(string name)
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Get(name));
        Assert.Contains("rtn", e.Message);
        var e2 = Assert.Throws<MatqException>(() => new QuantizationConfig(name, 4));
        Assert.Contains("choose one of", e2.Message);
    }

    [Theory]
    [InlineData(0, 128, false, "bits = 0")]
    [InlineData(9, 128, false, "bits = 9")]
    [InlineData(1, 128, true, "bits = 1")]
    [InlineData(4, -3, false, "groupSize = -3")]
    public void Config_validation_names_the_field(int bits, int group, bool symmetric, string expected)
    {
        var e = Assert.Throws<MatqException>(() => new QuantizationConfig("rtn", bits, group, symmetric));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Config_normalizes_per_channel_and_checks_option_keys()
    {
        Assert.Equal(-1, new QuantizationConfig("rtn", 4, 0).GroupSize);
        Assert.Equal(-1, new QuantizationConfig("rtn", 4, -1).GroupSize);
        Assert.True(new QuantizationConfig("rtn", 4, 0).PerChannel);
        Assert.Equal(64, new QuantizationConfig("rtn", 4, 128).StoredGroupSize(64));
        var e = Assert.Throws<MatqException>(() => new QuantizationConfig("rtn", 4, options: new Dictionary<string, string> { ["damp"] = "0.01" }));
        Assert.Contains("'damp'", e.Message);
        Assert.Contains("clip", e.Message);
        var bad = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(PipelineFixtures.Rtn(4, clip: "percentile")));
        Assert.Contains("clip = 'percentile'", bad.Message);
        Assert.Contains("clip-min", Assert.Throws<MatqException>(() => new RtnConfig(RtnClip.Mse, minShrink: 0)).Message);
        Assert.Contains("clip-step", Assert.Throws<MatqException>(() => new RtnConfig(RtnClip.Mse, step: -0.1)).Message);
    }

    [Fact]
    public void Rtn_grid_runs_from_one_down_to_the_minimum()
    {
        var grid = new RtnConfig(RtnClip.Mse, 0.5, 0.05).Grid;
        Assert.Equal(11, grid.Count);
        Assert.Equal(1.0, grid[0]);
        Assert.Equal(0.95, grid[1]);
        Assert.Equal(0.5, grid[^1]);
    }

    [Fact]
    public void Selection_is_decoder_linears_by_default_head_on_request_and_only_layers_checked()
    {
        using var model = PipelineFixtures.LoadTiny();
        var all = LinearSelection.Select(model, PipelineFixtures.Rtn(4));
        Assert.Equal(2 * 7, all.Count);
        Assert.DoesNotContain(all, l => l.Name == "lm_head" || l.Name.Contains("embed"));
        Assert.Equal(new[] { 0, 1 }, all.Select(l => l.Block).Distinct());
        var withHead = LinearSelection.Select(model, PipelineFixtures.Rtn(4, head: true));
        Assert.Equal("lm_head", withHead[^1].Name);
        Assert.Equal(2, withHead[^1].Block);

        var only = new QuantizationConfig("rtn", 4, onlyLayers: ["model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj"]);
        Assert.Equal(new[] { "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj" }, LinearSelection.Select(model, only).Select(l => l.Name));
        var unknown = new QuantizationConfig("rtn", 4, onlyLayers: ["model.layers.5.mlp.up_proj"]);
        Assert.Contains("model.layers.5.mlp.up_proj", Assert.Throws<MatqException>(() => LinearSelection.Select(model, unknown)).Message);
    }

    [Fact]
    public void Runner_reports_blocks_and_layers_and_honours_cancellation()
    {
        using var model = PipelineFixtures.LoadTiny();
        var events = new List<QuantizationEvent>();
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(4), events);
        Assert.Equal(14, result.Layers.Count);
        Assert.Equal(QuantizationEventKind.Started, events[0].Kind);
        Assert.Equal(2, events.Count(e => e.Kind == QuantizationEventKind.BlockStarted));
        var done = events.Where(e => e.Kind == QuantizationEventKind.LayerDone).ToList();
        Assert.Equal(result.Layers.Select(l => l.Name), done.Select(e => e.Report!.Name));
        Assert.Equal(14, done[^1].LayersDone);
        Assert.All(result.Layers, l => Assert.True(l.Report.WeightMse > 0));

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => QuantizationRunner.Run(PipelineFixtures.Rtn(4),
            new QuantizationContext(model, cancellation: cts.Token)));
    }

    [Fact]
    public void Calibration_is_required_only_when_asked_for()
    {
        using var model = PipelineFixtures.LoadTiny();
        var none = new QuantizationContext(model);
        Assert.False(none.HasCalibration);
        Assert.Contains("--calib-data", Assert.Throws<MatqException>(() => none.RequireCalibration("gptq")).Message);
        int calls = 0;
        var tokens = Enumerable.Range(0, 1000).Select(i => i % 384).ToArray();
        var ctx = new QuantizationContext(model, calibration: () => { calls++; return CalibrationTokens.Sample(tokens, 4, 16, 3); });
        var a = ctx.RequireCalibration("gptq");
        Assert.Same(a, ctx.RequireCalibration("gptq"));
        Assert.Equal(1, calls);
        var batches = a.Batches(3, TorchSharp.torch.CPU).ToList();
        Assert.Equal(new long[] { 3, 16 }, batches[0].shape);
        Assert.Equal(new long[] { 1, 16 }, batches[1].shape);
        Assert.Equal(a.Windows[3][5], batches[1][0, 5].item<long>());
        foreach (var b in batches) b.Dispose();
    }
}
