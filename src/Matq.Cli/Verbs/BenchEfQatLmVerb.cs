// `matq bench efqat-lm`: the EfQAT perplexity table on a language model: at each weight bit-width, PTQ alone (the
// min-max start EfQAT trains from), EfQAT at each mode × fraction, fraction 0 (norms only) and full QAT (fraction 1),
// every training run with the same step budget; SOTU-test and Moby-Dick perplexity, trained-weight fraction, seconds.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Matq.Algorithms.EfQat;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchEfQatLmVerb(IAnsiConsole console, Func<DataStore>? data = null) : LmBenchVerb<BenchEfQatLmSettings>(console, data, "out/bench-efqat-lm", "efqat-lm",
    "EfQAT on a language model: perplexity of PTQ, EfQAT modes × fractions and full QAT at each bit-width",
    "matq bench efqat-lm --model models/tiny --device cpu --steps 60 --bits 4",
    "matq bench efqat-lm --model models/small --device cuda --out docs/results/efqat-lm-small.md")
{
    private readonly Option<string> _bits = new("--bits") { Description = "Weight bit-widths", DefaultValueFactory = _ => "4,3", HelpName = "B[,B...]" };
    private readonly Option<string> _modes = new("--modes") { Description = "EfQAT modes", DefaultValueFactory = _ => "cwpl,cwpn,lwpn", HelpName = "M[,M...]" };
    private readonly Option<string> _fractions = new("--fractions") { Description = "EfQAT fractions run for every mode (0 and 1 are added once)", DefaultValueFactory = _ => "0.05,0.25", HelpName = "F[,F...]" };
    private readonly Option<int> _refresh = new("--refresh") { Description = "Steps between importance refreshes", DefaultValueFactory = _ => 50, HelpName = "N" };
    private readonly Option<string> _out = new("--out") { Description = "Markdown report", DefaultValueFactory = _ => "docs/results/efqat-lm-tiny.md", HelpName = "PATH" };

    protected override IEnumerable<Option> Options =>
    [
        ModelOption, _bits, GroupOption, _modes, _fractions, StepsOption, BatchOption, ContextOption, _refresh, MaxTokensOption, _out, WorkOption,
        DeviceOption, SeedOption,
    ];

    private sealed record Row(int Bits, string Run, bool Ptq, double Trained, double Sotu, double Moby, double Seconds);

    protected override BenchEfQatLmSettings Read(ParseResult r) => new(r.GetValue(ModelOption)!, r.GetValue(_bits)!, r.GetValue(GroupOption), r.GetValue(_modes)!,
        r.GetValue(_fractions)!, r.GetValue(StepsOption), r.GetValue(BatchOption), r.GetValue(ContextOption), r.GetValue(_refresh), r.GetValue(MaxTokensOption),
        r.GetValue(_out)!, r.GetValue(WorkOption)!, r.GetValue(DeviceOption)!, r.GetValue(SeedOption));

    protected override int Run(BenchEfQatLmSettings o)
    {
        string modelPath = o.Model, outPath = o.Out;
        int group = o.Group, steps = o.Steps, batch = o.Batch, context = o.Context, refresh = o.Refresh, maxTokens = o.MaxTokens, seed = o.Seed;
        Directory.CreateDirectory(o.Work);
        var device = TorchRuntime.Configure(o.Device).Device;

        var bench = QuantizeServeBench.Open(modelPath, device, Data, maxTokens);
        var qatData = bench.QatWindows(steps, batch, context, seed);
        var rows = new List<Row>();
        var floatScores = bench.ScoreFloat();
        double floatSotu = floatScores[0], floatMoby = floatScores[1];
        Console.MarkupLine($"float: SOTU-test ppl {floatSotu:F3}, Moby-Dick ppl {floatMoby:F3}");

        foreach (int bits in o.BitList)
            foreach (var run in EfQatLmBenchPlan.Runs(bits, group, o.ModeList, o.FractionList, steps, batch, refresh))
            {
                var (label, config) = run;
                var path = Path.Combine(o.Work, $"w{bits}-{QuantizeServeBench.Slug(label)}.matq");
                var sw = Stopwatch.StartNew();
                var q = bench.Quantize(config, () => qatData, seed, path);
                double trained = q.AlgorithmSettings["selected_weight_fraction"] is { } f ? f.GetValue<double>() : 0;
                double seconds = sw.Elapsed.TotalSeconds;
                var score = bench.Serve(MatqArtifact.Open(path), bits);
                double s = score.Perplexity[0], m = score.Perplexity[1];
                rows.Add(new Row(bits, label, run.IsPtq, trained, s, m, seconds));
                Console.MarkupLine(Markup.Escape($"W{bits} · {label}: trained {trained:P1} of weights, SOTU {s:F3}, Moby {m:F3}  [{seconds:F0} s]"));
            }

        var md = new StringBuilder();
        md.AppendLine($"Model {modelPath}; group {group}; every QAT run: {steps} AdamW steps × {batch} windows × {context} tokens of SOTU train, importance refresh every {refresh} steps, RMSNorm weights trained.");
        md.AppendLine($"Perplexity: windows 256, stride 128, {(maxTokens > 0 ? $"first {maxTokens} tokens" : "all tokens")} of each text. Float model: SOTU-test {floatSotu:F3}, Moby-Dick {floatMoby:F3}. Device {device}.");
        md.AppendLine();
        md.AppendLine("| weights | run | weights trained (last selection) | SOTU-test ppl | Moby-Dick ppl | quantize + train s |");
        md.AppendLine("|---|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine($"| W{r.Bits} | {r.Run} | {(r.Ptq ? "–" : r.Trained.ToString("P1", CultureInfo.InvariantCulture))} | {r.Sotu:F3} | {r.Moby:F3} | {r.Seconds:F1} |");
        Matq.Formats.IO.AtomicFile.WriteAllText(outPath, md.ToString());
        Console.WriteLine(md.ToString());
        Console.MarkupLine($"wrote [bold]{Markup.Escape(outPath)}[/]");
        return 0;
    }
}

/// <summary>What `bench efqat-lm` was asked: the option values as typed; <see cref="Validate"/> checks them all (one line per mistake).</summary>
public sealed record BenchEfQatLmSettings(string Model, string Bits, int Group, string Modes, string Fractions, int Steps, int Batch, int Context,
    int Refresh, int MaxTokens, string Out, string Work, string Device, int Seed) : IVerbSettings
{
    public int[] BitList => CommonOptions.ParseBits(Bits);

    public IReadOnlyList<string> ModeList => Modes.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public double[] FractionList => Fractions.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && f > 0 && f < 1 ? f
            : throw new MatqException($"--fractions '{s}' is invalid: each must be strictly between 0 and 1 (0 and 1 are always run)")).ToArray();

    public void Validate()
    {
        _ = BitList;
        foreach (var m in ModeList) EfQatConfig.ParseMode(m);
        _ = FractionList;
        if (Steps < 1 || Batch < 1 || Context < 2 || Refresh < 1) throw new MatqException("--steps, --batch, --refresh must be ≥ 1 and --context ≥ 2");
        BenchStats.CheckMaxTokens(MaxTokens);
        TorchDevices.Parse(Device);
        Matq.Formats.IO.OutputPaths.CheckFile(Out, "--out", Model);
        Matq.Formats.IO.OutputPaths.CheckWorkFolder(Work, "--work", Model);
    }
}
