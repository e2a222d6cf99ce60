// `matq bench efqat-lm`: the EfQAT perplexity table on a language model: at each weight bit-width, PTQ alone (the
// min-max start EfQAT trains from), EfQAT at each mode × fraction, fraction 0 (norms only) and full QAT (fraction 1),
// every training run with the same step budget; SOTU-test and Moby-Dick perplexity, trained-weight fraction, seconds.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.Rtn;
using Matq.Cli.Common;
using Matq.Data;
using Matq.Evaluation;
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime;
using Matq.Runtime.Tokenizers;
using Spectre.Console;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchEfQatLmVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb(console)
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _bits = new("--bits") { Description = "Weight bit-widths", DefaultValueFactory = _ => "4,3", HelpName = "B[,B...]" };
    private readonly Option<int> _group = CommonOptions.Group(64);
    private readonly Option<string> _modes = new("--modes") { Description = "EfQAT modes", DefaultValueFactory = _ => "cwpl,cwpn,lwpn", HelpName = "M[,M...]" };
    private readonly Option<string> _fractions = new("--fractions") { Description = "EfQAT fractions run for every mode (0 and 1 are added once)", DefaultValueFactory = _ => "0.05,0.25", HelpName = "F[,F...]" };
    private readonly Option<int> _steps = new("--steps") { Description = "QAT steps per run (same budget for every run)", DefaultValueFactory = _ => 200, HelpName = "N" };
    private readonly Option<int> _batch = new("--batch") { Description = "QAT windows per step", DefaultValueFactory = _ => 8, HelpName = "N" };
    private readonly Option<int> _context = new("--context") { Description = "QAT window length (tokens)", DefaultValueFactory = _ => 128, HelpName = "T" };
    private readonly Option<int> _refresh = new("--refresh") { Description = "Steps between importance refreshes", DefaultValueFactory = _ => 50, HelpName = "N" };
    private readonly Option<int> _maxTokens = new("--max-tokens") { Description = "Tokens of each evaluation text scored (0 = all)", DefaultValueFactory = _ => 20000, HelpName = "N" };
    private readonly Option<string> _out = new("--out") { Description = "Markdown report", DefaultValueFactory = _ => "docs/results/efqat-lm-tiny.md", HelpName = "PATH" };
    private readonly Option<string> _work = new("--work") { Description = "Folder for the artifacts", DefaultValueFactory = _ => "out/bench-efqat-lm", HelpName = "DIR" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _seed = CommonOptions.Seed();

    public override string Name => "efqat-lm";
    public override string Description => "EfQAT on a language model: perplexity of PTQ, EfQAT modes × fractions and full QAT at each bit-width";
    public override IReadOnlyList<string> Examples =>
    [
        "matq bench efqat-lm --model models/tiny --device cpu --steps 60 --bits 4",
        "matq bench efqat-lm --model models/small --device cuda --out docs/results/efqat-lm-small.md",
    ];

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { _model, _bits, _group, _modes, _fractions, _steps, _batch, _context, _refresh, _maxTokens, _out, _work, _device, _seed })
            command.Options.Add(o);
    }

    private sealed record Row(int Bits, string Run, double Trained, double Sotu, double Moby, double Seconds);

    protected override int Execute(ParseResult result)
    {
        var modelPath = result.GetValue(_model)!;
        var bitsList = CommonOptions.ParseBits(result.GetValue(_bits)!);
        var modes = result.GetValue(_modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var m in modes) EfQatConfig.ParseMode(m);
        var fractions = result.GetValue(_fractions)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && f > 0 && f < 1 ? f
                : throw new MatqException($"--fractions '{s}' is invalid: each must be strictly between 0 and 1 (0 and 1 are always run)")).ToArray();
        int group = result.GetValue(_group), steps = result.GetValue(_steps), batch = result.GetValue(_batch), context = result.GetValue(_context);
        int refresh = result.GetValue(_refresh), maxTokens = result.GetValue(_maxTokens), seed = result.GetValue(_seed);
        if (steps < 1 || batch < 1 || context < 2 || refresh < 1) throw new MatqException("--steps, --batch, --refresh must be ≥ 1 and --context ≥ 2");
        var outPath = result.GetValue(_out)!;
        var work = result.GetValue(_work)!;
        Matq.Formats.IO.OutputPaths.CheckFile(outPath, "--out", modelPath);
        Matq.Formats.IO.OutputPaths.CheckWorkFolder(work, "--work", modelPath);
        Directory.CreateDirectory(work);
        var device = TorchDevices.Resolve(result.GetValue(_device));

        var tokenizer = TextTokenizer.Load(modelPath);
        var train = tokenizer.Encode(_data().Sotu().Text(DataSplit.Train));
        var texts = new[] { ("SOTU test", _data().Sotu().Text(DataSplit.Test)), ("Moby-Dick", _data().MobyDick()) }
            .Select(t => { var ids = tokenizer.Encode(t.Item2); return (t.Item1, maxTokens > 0 && ids.Length > maxTokens ? ids[..maxTokens] : ids); }).ToArray();
        var qatData = CalibrationTokens.Sample(train, Math.Min(steps * batch, train.Length / (context + 1) - 1), context + 1, seed);
        var ppl = new PerplexityOptions { Context = 256, Stride = 128, Batch = 8 };
        (double, double) Evaluate(nn.Module<Tensor, Tensor> m) =>
            texts.Select(t => Perplexity.Evaluate(m, t.Item2, t.Item2.Length, ppl, device).Perplexity).ToArray() is var p ? (p[0], p[1]) : default;

        var rows = new List<Row>();
        double floatSotu, floatMoby;
        using (var source = ModelSource.Open(modelPath, device: device))
            (floatSotu, floatMoby) = Evaluate(source.Model);
        Console.MarkupLine($"float: SOTU-test ppl {floatSotu:F3}, Moby-Dick ppl {floatMoby:F3}");

        var runs = new List<(string Label, string Method, Dictionary<string, string> Options)>
        {
            ("PTQ (min-max RTN, the EfQAT start)", RtnAlgorithm.MethodName, new() { ["clip"] = "minmax" }),
            ("EfQAT 0 % (norms only)", EfQatLmAlgorithm.MethodName, new() { ["fraction"] = "0" }),
        };
        foreach (var mode in modes)
            foreach (var f in fractions)
                runs.Add(($"EfQAT {mode.ToUpperInvariant()} {f * 100:0.#} %", EfQatLmAlgorithm.MethodName, new() { ["mode"] = mode, ["fraction"] = f.ToString("R", CultureInfo.InvariantCulture) }));
        runs.Add(("full QAT (EfQAT 100 %)", EfQatLmAlgorithm.MethodName, new() { ["fraction"] = "1" }));

        foreach (int bits in bitsList)
            foreach (var (label, method, extra) in runs)
            {
                var options = new Dictionary<string, string>(extra);
                if (method == EfQatLmAlgorithm.MethodName)
                {
                    options["steps"] = steps.ToString(CultureInfo.InvariantCulture);
                    options["batch"] = batch.ToString(CultureInfo.InvariantCulture);
                    options["refresh"] = refresh.ToString(CultureInfo.InvariantCulture);
                }
                var config = new QuantizationConfig(method, bits, group, options: options);
                var path = Path.Combine(work, $"w{bits}-{Slug(label)}.matq");
                var sw = Stopwatch.StartNew();
                double trained = 0;
                using (var source = ModelSource.Open(modelPath, device: device))
                {
                    var ctx = new QuantizationContext(source.Model, device, () => qatData, seed);
                    var q = QuantizationRunner.Run(config, ctx);
                    if (q.AlgorithmSettings["selected_weight_fraction"] is { } f) trained = f.GetValue<double>();
                    ArtifactExport.Write(q, source.Model, path, source.TokenizerFolder);
                }
                double seconds = sw.Elapsed.TotalSeconds;
                var artifact = MatqArtifact.Open(path);
                using var served = QuantizedModelLoader.LoadServed(artifact, bits, device, ScalarType.Float32, false, null);
                var (s, m) = Evaluate(served.Model);
                rows.Add(new Row(bits, label, trained, s, m, seconds));
                Console.MarkupLine(Markup.Escape($"W{bits} · {label}: trained {trained:P1} of weights, SOTU {s:F3}, Moby {m:F3}  [{seconds:F0} s]"));
            }

        var md = new StringBuilder();
        md.AppendLine($"Model {modelPath}; group {group}; every QAT run: {steps} AdamW steps × {batch} windows × {context} tokens of SOTU train, importance refresh every {refresh} steps, RMSNorm weights trained.");
        md.AppendLine($"Perplexity: windows 256, stride 128, {(maxTokens > 0 ? $"first {maxTokens} tokens" : "all tokens")} of each text. Float model: SOTU-test {floatSotu:F3}, Moby-Dick {floatMoby:F3}. Device {device}.");
        md.AppendLine();
        md.AppendLine("| weights | run | weights trained (last selection) | SOTU-test ppl | Moby-Dick ppl | quantize + train s |");
        md.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine($"| W{r.Bits} | {r.Run} | {(r.Run.StartsWith("PTQ") ? "–" : r.Trained.ToString("P1", CultureInfo.InvariantCulture))} | {r.Sotu:F3} | {r.Moby:F3} | {r.Seconds:F1} |");
        Matq.Formats.IO.AtomicFile.WriteAllText(outPath, md.ToString());
        Console.WriteLine(md.ToString());
        Console.MarkupLine($"wrote [bold]{Markup.Escape(outPath)}[/]");
        return 0;
    }

    private static string Slug(string label) => new(label.ToLowerInvariant().Select(ch => char.IsLetterOrDigit(ch) ? ch : '-').ToArray());
}
