// The "gptq" and "athena" registry methods through the quantization entry point on tiny-llama: results, installed
// weights, layer selection with lm_head, calibration requirement, option parsing.
using Matq.Algorithms.Athena;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class AthenaAlgorithmTests
{
    private static QuantizationContext Context(Matq.Models.LlamaForCausalLM model, List<QuantizationEvent>? events = null) =>
        new(model, CPU, () => new CalibrationTokens(AthenaTestData.ZipfWindows(16, 24, seed: 3)), progress: events is null ? null : events.Add);

    [Fact]
    public void RegistryHoldsGptqAndAthena()
    {
        Assert.Contains("gptq", AlgorithmRegistry.Names);
        Assert.Contains("athena", AlgorithmRegistry.Names);
        Assert.True(AlgorithmRegistry.Get("athena").NeedsCalibration);
        var alg = Assert.IsType<AthenaAlgorithm>(AlgorithmRegistry.Create(new QuantizationConfig("gptq", 4, 32,
            options: new Dictionary<string, string> { ["act-order"] = "true", ["percdamp"] = "0.05" })));
        Assert.Equal(AthenaMode.GptqExact, alg.Solver.Mode);
        Assert.True(alg.Solver.ActOrder);
        Assert.Equal(0.05, alg.Solver.PercDamp);
    }

    [Fact]
    public void GroupGridDefaultsToUpstreamsAndIsRecorded()
    {
        var byDefault = Assert.IsType<AthenaAlgorithm>(AlgorithmRegistry.Create(new QuantizationConfig("gptq", 4, 32)));
        Assert.Equal(GroupGrid.BlockStart, byDefault.Solver.GroupGrid);
        Assert.Equal("block-start", byDefault.DescribeSettings()["group_grid"]!.ToString());
        var updated = Assert.IsType<AthenaAlgorithm>(AlgorithmRegistry.Create(new QuantizationConfig("athena", 4, 32,
            options: new Dictionary<string, string> { ["group-grid"] = "updated" })));
        Assert.Equal(GroupGrid.Updated, updated.Solver.GroupGrid);
        Assert.Equal("updated", updated.DescribeSettings()["group_grid"]!.ToString());
        Assert.Equal(GroupGrid.Updated, updated.Solver.AsGptqExact().GroupGrid);
    }

    [Theory]
    [InlineData("athena", "sweeps", "-1", "sweeps")]
    [InlineData("athena", "percdamp", "abc", "percdamp")]
    [InlineData("gptq", "act-order", "maybe", "act-order")]
    [InlineData("gptq", "calib-batch", "0", "calib-batch")]
    [InlineData("athena", "group-grid", "late", "athena group-grid = 'late' is not known: use block-start or updated")]
    public void BadOptionsNameTheKey(string method, string key, string value, string expected)
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig(method, 4, 32, options: new Dictionary<string, string> { [key] = value })));
        Assert.Contains(expected, e.Message);
        // gptq has no sweeps
        Assert.Throws<MatqException>(() => new QuantizationConfig("gptq", 4, 32, options: new Dictionary<string, string> { ["sweeps"] = "2" }));
    }

    [Theory]
    [InlineData("gptq")]
    [InlineData("athena")]
    public void RunsThroughTheEntryPointAndInstallsTheQuantizedWeights(string method)
    {
        using var scope = NewDisposeScope();
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        var events = new List<QuantizationEvent>();
        var result = QuantizationRunner.Run(new QuantizationConfig(method, 3, 32, options: new Dictionary<string, string> { ["block"] = "32" }),
            Context(model, events));
        Assert.Equal(14, result.Layers.Count);
        Assert.Equal(method, result.Algorithm);
        foreach (var layer in result.Layers)
        {
            Assert.True(layer.Report.HessianErrorAfter < layer.Report.HessianErrorBefore, $"{layer.Name}: no better than RTN");
            var installed = LinearSelection.WeightOf(layer.Name, model.Linears().Single(l => l.Name == layer.Name).Module);
            Assert.True(AthenaTestData.MaxAbsDiff(installed, layer.Dequantize()) < 1e-6, $"{layer.Name}: the model does not hold ŵ");
        }
        Assert.Equal(14, events.Count(e => e.Kind == QuantizationEventKind.LayerDone));
        Assert.Equal(2, events.Count(e => e.Kind == QuantizationEventKind.BlockDone));
        var path = Path.Combine(HfFixtures.TempDir(), "tiny.matq");
        ArtifactExport.Write(result, model, path);
        Assert.True(new FileInfo(path).Length > 0);
    }

    [Fact]
    public void OnlySelectedLayersAndTheHeadAreQuantized()
    {
        using var scope = NewDisposeScope();
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        using var reference = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        string[] only = ["model.layers.1.mlp.down_proj", "lm_head"];
        var result = QuantizationRunner.Run(new QuantizationConfig("athena", 4, 32, includeLmHead: true, onlyLayers: only), Context(model));
        Assert.Equal(only, result.Layers.Select(l => l.Name).ToArray());
        var after = model.Linears(includeHead: true).ToDictionary(l => l.Name, l => LinearSelection.WeightOf(l.Name, l.Module));
        foreach (var (name, module) in reference.Linears(includeHead: true))
        {
            double diff = AthenaTestData.MaxAbsDiff(after[name], LinearSelection.WeightOf(name, module));
            if (only.Contains(name)) Assert.True(diff > 0, $"{name} was not quantized");
            else Assert.Equal(0.0, diff);
        }
        var head = result.Layers.Single(l => l.Name == "lm_head");
        Assert.True(head.Report.HessianErrorAfter < head.Report.HessianErrorBefore);
    }

    [Fact]
    public void NeedsCalibration()
    {
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        var e = Assert.Throws<MatqException>(() => QuantizationRunner.Run(new QuantizationConfig("gptq", 4, 32), new QuantizationContext(model, CPU)));
        Assert.Contains("calibration", e.Message);
    }
}
