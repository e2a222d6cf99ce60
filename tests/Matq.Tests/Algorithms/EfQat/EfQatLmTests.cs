// EfQAT on language models: the split forward gives selected rows autograd's weight gradient and frozen rows none;
// training moves only selected rows of the latent weights (frozen rows stay bit-identical) while norms train;
// fraction 0 leaves every code at its PTQ value; invalid options are one-line errors.
using Matq.Algorithms.EfQat;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.Qat;
using Matq.Kernels.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.EfQat;

public class EfQatLmTests
{
    private static CalibrationTokens Data() => new(AthenaTestData.ZipfWindows(16, 17, seed: 5));

    private static QuantizationConfig Config(string fraction, string mode = "cwpl", int steps = 4, string extra = "") =>
        new("efqat", 4, 32, options: new Dictionary<string, string>
        {
            ["fraction"] = fraction, ["mode"] = mode, ["steps"] = steps.ToString(), ["batch"] = "2", ["warmup"] = "1",
            ["lr"] = "0.01", ["scale-lr"] = "0.01", ["refresh"] = "1000",
        }.Concat(extra.Length == 0 ? [] : extra.Split(';').Select(kv => kv.Split('=')).Select(p => KeyValuePair.Create(p[0], p[1])))
         .ToDictionary());

    [Theory]
    [InlineData(ConvWeightGradMethod.Unfold)]   // the gather-GEMM custom function
    [InlineData(ConvWeightGradMethod.Inject)]
    public void Split_forward_gives_selected_rows_the_full_gradient_and_frozen_rows_none(ConvWeightGradMethod method)
    {
        SelectedRowsGetTheFullGradient(method);
    }

    private static void SelectedRowsGetTheFullGradient(ConvWeightGradMethod method)
    {
        manual_seed(3);
        var w = randn(8, 32) * 0.05;
        using var full = new NestedQuantLinear("a", w, QuantSpec.Grouped(4, 16));
        using var part = new NestedQuantLinear("b", w, QuantSpec.Grouped(4, 16)) { GradMethod = method };
        var x = randn(2, 5, 32);
        var up = randn(2, 5, 8);
        full.forward(x).mul(up).sum().backward();
        part.SelectedRows = tensor(new long[] { 1, 6 });
        part.FrozenRows = tensor(new long[] { 0, 2, 3, 4, 5, 7 });
        var y = part.forward(x);
        Assert.True(y.allclose(full.forward(x), 1e-6, 1e-6));
        y.mul(up).sum().backward();
        var sel = part.SelectedRows;
        Assert.True(part.Weight.grad!.index_select(0, sel).allclose(full.Weight.grad!.index_select(0, sel), 1e-5, 1e-6));
        Assert.True(part.LogScale.grad!.index_select(0, sel).allclose(full.LogScale.grad!.index_select(0, sel), 1e-5, 1e-6));
        Assert.Equal(0f, part.Weight.grad!.index_select(0, part.FrozenRows).abs().max().item<float>());
        Assert.Equal(0f, part.LogScale.grad!.index_select(0, part.FrozenRows).abs().max().item<float>());
        Assert.True(full.Weight.grad!.index_select(0, part.FrozenRows).abs().max().item<float>() > 0);
    }

    [Theory]
    [InlineData("cwpl")]
    [InlineData("cwpn")]
    [InlineData("lwpn")]
    public void Training_moves_only_selected_rows_and_the_norms(string mode)
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = Config("0.25", mode);
        var alg = (EfQatLmAlgorithm)AlgorithmRegistry.Create(config);
        var selected = LinearSelection.Select(model, config);
        var norm = model.named_parameters().First(p => p.name.EndsWith("norm.weight")).parameter;
        var normBefore = norm.detach().clone();
        var objective = new RecordingObjective(alg.Settings, [norm]);
        var trained = QatTrainer.Train(model, selected, config.Spec, alg.Qat, objective, Data(), CPU, 9);
        var selector = objective.Selector;
        var before = objective.Before;
        long moved = 0, frozenRows = 0;
        for (int l = 0; l < trained.Count; l++)
        {
            var changed = trained[l].Module.Weight.detach().ne(before![l]).any(1);          // [out]
            var chosen = new HashSet<int>(selector!.Selection[l]);
            for (int o = 0; o < changed.shape[0]; o++)
            {
                bool c = changed[o].item<bool>();
                if (!chosen.Contains(o)) { Assert.False(c, $"{trained[l].Name} row {o} is frozen but moved"); frozenRows++; }
                else if (c) moved++;
            }
        }
        Assert.True(moved > 0, "some selected rows trained");
        Assert.True(frozenRows > 0);
        Assert.False(norm.detach().eq(normBefore).all().item<bool>(), "the norm weight trained");
        Assert.InRange(selector!.SelectedWeightFraction(), mode == "lwpn" ? 0.01 : 0.2, mode == "lwpn" ? 0.6 : 0.3);
        foreach (var (_, m) in trained) m.Dispose();
    }

    // The EfQAT-LM objective that also keeps the latent weights as they were when the modules were attached.
    private sealed class RecordingObjective(EfQatLmConfig config, IReadOnlyList<TorchSharp.Modules.Parameter> norms) : EfQatLmObjective(config, norms)
    {
        public List<Tensor>? Before { get; private set; }

        public override void Attached(IReadOnlyList<NestedQuantLinear> modules)
        {
            base.Attached(modules);
            Before = modules.Select(m => m.Weight.detach().clone()).ToList();
        }
    }

    [Fact]
    public void Fraction_zero_keeps_the_ptq_codes()
    {
        using var model = PipelineFixtures.LoadTiny();
        var ptq = QuantizationRunner.Run(new QuantizationConfig("rtn", 4, 32, options: new Dictionary<string, string> { ["clip"] = "minmax" }),
            new QuantizationContext(model, CPU, null, 1));
        using var model2 = PipelineFixtures.LoadTiny();
        var ef = QuantizationRunner.Run(Config("0"), new QuantizationContext(model2, CPU, Data, 1));
        Assert.Equal(ptq.Layers.Count, ef.Layers.Count);
        for (int i = 0; i < ptq.Layers.Count; i++)
            Assert.Equal(ptq.Layers[i].Codes, ef.Layers[i].Codes);
        Assert.Equal(0.0, ef.AlgorithmSettings["selected_weight_fraction"]!.GetValue<double>());
    }

    [Theory]
    [InlineData("fraction=1.5", "fraction")]
    [InlineData("mode=diagonal", "mode")]
    [InlineData("start=gptq", "start")]
    [InlineData("refresh=0", "refresh")]
    [InlineData("train-norms=maybe", "train-norms")]
    public void Invalid_options_are_one_line_errors(string option, string named)
    {
        var kv = option.Split('=');
        var options = new Dictionary<string, string> { [kv[0]] = kv[1] };
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig("efqat", 4, 32, options: options)));
        Assert.Contains(named, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
