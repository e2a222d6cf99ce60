// The one option reader: defaults, typed values, one clear line per bad key or value (method, key, value and a fix);
// typed configs reach the runner without strings; the context binds the run's selection and counts progress itself.
using Matq.Algorithms.Athena;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Algorithms.Qat;
using Matq.Algorithms.Rtn;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

public sealed class OptionReaderTests
{
    private static OptionReader Reader(string method, params (string Key, string Value)[] options) =>
        new(new QuantizationConfig(method, 8, 32, options: options.ToDictionary(o => o.Key, o => o.Value)));

    [Fact]
    public void Absent_keys_read_their_declared_defaults_and_given_ones_their_values()
    {
        var r = Reader("matquant", ("steps", "12"), ("lambda", "1, 0.5"), ("extra-precision", "ON"), ("lwc-max", "auto"));
        Assert.Equal(12, r.Int("steps"));
        Assert.Equal(8, r.Int("batch"));
        Assert.Equal(0.0005, r.Double("lr"));
        Assert.Equal([1.0, 0.5], r.Doubles("lambda"));
        Assert.Equal([8, 4, 2], r.Ints("bits"));
        Assert.True(r.Flag("extra-precision"));
        Assert.False(r.Flag("act-order"));
        Assert.Null(r.DoubleOr("lwc-max", "auto"));
        Assert.True(r.IsGiven("steps"));
        Assert.False(r.IsGiven("batch"));
        Assert.Same(MatQuantBase.Qat, r.Choice("base", MatQuantBase.All.Select(b => (b.Name, b)).ToArray()));
        Assert.Equal(2.5, Reader("omniquant", ("lwc-max", "2.5")).DoubleOr("lwc-max", "auto"));
    }

    [Theory]
    [InlineData("athena", "block", "12x", "athena block = '12x' is not an integer: give a whole number, e.g. block=128")]
    [InlineData("rtn", "clip-min", "half", "rtn clip-min = 'half' is not a number: give e.g. clip-min=0.5")]
    [InlineData("gptq", "act-order", "maybe", "gptq act-order = 'maybe' is not true or false: give act-order=true or act-order=false")]
    [InlineData("rtn", "clip", "p99", "rtn clip = 'p99' is not known: use minmax or mse")]
    [InlineData("matquant", "base", "gptq", "matquant base = 'gptq' is not known: use qat, athena or omniquant")]
    [InlineData("efqat", "start", "omniquant", "efqat start = 'omniquant' is not known: use rtn or athena")]
    [InlineData("matquant", "bits", "8,four", "matquant bits = 'four' is not an integer: give a whole number, e.g. bits=8,4,2")]
    [InlineData("efqat", "fraction", "a\u001bquarter", "efqat fraction = 'a\\x1Bquarter' is not a number: give e.g. fraction=0.25")]
    public void A_bad_value_is_one_line_naming_method_key_value_and_fix(string method, string key, string value, string expected)
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig(method, 8, 32,
            options: new Dictionary<string, string> { [key] = value })));
        Assert.Equal(expected, e.Message);
    }

    [Fact]
    public void An_unknown_key_lists_the_declared_ones()
    {
        var e = Assert.Throws<MatqException>(() => Reader("rtn", ("clip-max", "1")));
        Assert.Equal("options: method 'rtn' has no option 'clip-max' (it has: clip, clip-min, clip-step)", e.Message);
        var r = Reader("rtn");
        Assert.Throws<ArgumentException>(() => r.Int("steps"));   // a key the method does not declare is a programming error
    }

    [Fact]
    public void Every_registered_method_parses_its_defaults()
    {
        foreach (var row in AlgorithmRegistry.All)
        {
            var alg = row.Create(new QuantizationConfig(row.Name, 8, 32));
            Assert.Equal(row.Name, alg.Name);
            Assert.DoesNotContain(row.Options.GroupBy(o => o.Key), g => g.Count() > 1);
        }
        Assert.Equal(["qat", "athena", "omniquant"], MatQuantBase.All.Select(b => b.Name));
        var mq = MatQuantAlgorithm.Registration.Options.Select(o => o.Key).ToHashSet();
        Assert.All(MatQuantBase.All.SelectMany(b => b.Options), o => Assert.Contains(o.Key, mq));
    }

    [Fact]
    public void Typed_configs_run_without_strings_and_match_the_string_path()
    {
        using var model = PipelineFixtures.LoadTiny();
        var common = new QuantizationConfig("rtn", 4, 32);
        var typed = QuantizationRunner.Run(RtnAlgorithm.Registration, common, new RtnConfig(RtnClip.Mse, 0.6, 0.1), new QuantizationContext(model, CPU));
        var text = QuantizationRunner.Run(new QuantizationConfig("rtn", 4, 32, options: new Dictionary<string, string>
            { ["clip"] = "mse", ["clip-min"] = "0.6", ["clip-step"] = "0.1" }), new QuantizationContext(model, CPU));
        Assert.Equal(text.Layers.Count, typed.Layers.Count);
        for (int i = 0; i < text.Layers.Count; i++)
        {
            Assert.Equal(text.Layers[i].Codes, typed.Layers[i].Codes);
            Assert.Equal(text.Layers[i].Scales, typed.Layers[i].Scales);
        }
        Assert.Equal("mse", typed.AlgorithmSettings["clip"]!.GetValue<string>());
        Assert.Throws<ArgumentException>(() => QuantizationRunner.Run(RtnAlgorithm.Registration, new QuantizationConfig("gptq", 4, 32),
            new RtnConfig(), new QuantizationContext(model, CPU)));
    }

    [Fact]
    public void Typed_configs_validate_in_their_constructors()
    {
        Assert.Contains("qat steps = 0 is out of range", Assert.Throws<MatqException>(() => new QatConfig(steps: 0)).Message);
        Assert.Contains("qat warmup = 9 is out of range", Assert.Throws<MatqException>(() => new QatConfig(steps: 5, warmup: 9)).Message);
        Assert.Contains("calib-batch = 0 is out of range",
            Assert.Throws<MatqException>(() => new AthenaConfig(Matq.Kernels.Quantization.QuantSpec.Grouped(4, 32), calibrationBatch: 0)).Message);
        var single = new MatQuantConfig([4], [1], 4);
        Assert.Contains("needs act-order=false", Assert.Throws<MatqException>(() => new EfQatLmConfig(new EfQatConfig(EfQatMode.ChannelPerLayer, 0.5),
            single, EfQatStart.Athena, new AthenaConfig(Matq.Kernels.Quantization.QuantSpec.Grouped(4, 32), actOrder: true))).Message);
        Assert.Contains("efqat trains one width", Assert.Throws<MatqException>(() => new EfQatLmConfig(new EfQatConfig(EfQatMode.ChannelPerLayer, 0.5),
            new MatQuantConfig([8, 4], [1, 1], 8))).Message);
        Assert.Contains("not athena", Assert.Throws<MatqException>(() => new MatQuantConfig([8, 2], [1, 1], 8, MatQuantBase.Athena, [new CodistillPair(8, 2)])).Message);
        Assert.Equal(2.0, OmniQuantConfig.Parse(Reader("omniquant", ("lwc-max", "2"))).Max);
    }

    [Fact]
    public void The_context_holds_the_runs_selection_and_counts_progress()
    {
        using var model = PipelineFixtures.LoadTiny();
        var context = new QuantizationContext(model, CPU);
        Assert.Throws<InvalidOperationException>(() => context.Selected);
        var events = new List<QuantizationEvent>();
        var ffn = new QuantizationConfig("rtn", 4, 32, includeLmHead: true, layers: LayerFilter.Parse("ffn"));
        var run = QuantizationRunner.Run(ffn, new QuantizationContext(model, CPU, progress: events.Add));
        Assert.Equal(2 * 3 + 1, run.Layers.Count);
        Assert.All(events, e => Assert.Equal((3, 7), (e.BlockCount, e.LayerCount)));   // 2 decoder blocks + the head
        Assert.Equal(Enumerable.Range(1, 7), events.Where(e => e.Kind == QuantizationEventKind.LayerDone).Select(e => e.LayersDone));
        var progress = new QuantizationProgress(events.Add, 2, 4);
        progress.Restored(2);
        progress.LayerDone(1, run.Layers[0].Report);
        Assert.Equal(3, events[^1].LayersDone);
        progress.Started();
        Assert.Equal(0, progress.LayersDone);
    }
}
