// `matq bench matquant`: on one float model, per base (qat, athena, omniquant): independently quantized baselines at each
// bit-width (omniquant: the `omniquant` method at r bits) vs MatQuant (R = {8,4,2}) sliced to 8/6/4/3/2, with
// co-distillation (qat, omniquant), single-precision MatQuant at 2 and extra
// precision at 2 (measured effective bits); then Mix'n'Match curves (uniform / pyramid / budget, ppl vs average bits)
// of the MatQuant artifact. Prints the tables and writes them as markdown (+ one PNG per base).
// --lambdas sweeps λ: the runs over R = {8,4,2} (plain, co-distill, extra precision) are repeated per λ vector, labelled
// "… λ=a,b,c" unless the only vector is the default 1,1,1; Mix'n'Match uses the first λ's plain MatQuant artifact.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Cli.Common;
using Matq.Data;
using Matq.Evaluation;
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime;
using Matq.Runtime.Plans;
using Matq.Runtime.Tokenizers;
using Spectre.Console;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchMatQuantVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb(console)
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _bases = new("--bases") { Description = "Bases to run: qat, athena, omniquant (comma-separated)", DefaultValueFactory = _ => "qat,athena", HelpName = "B[,B...]" };
    private readonly Option<int> _group = CommonOptions.Group(64);
    private readonly Option<int> _steps = new("--steps") { Description = "QAT steps per run (every run gets the same budget)", DefaultValueFactory = _ => 200, HelpName = "N" };
    private readonly Option<int> _batch = new("--batch") { Description = "QAT windows per step", DefaultValueFactory = _ => 8, HelpName = "N" };
    private readonly Option<int> _context = new("--context") { Description = "QAT window length (tokens)", DefaultValueFactory = _ => 128, HelpName = "T" };
    private readonly Option<int> _epochs = new("--epochs") { Description = "OmniQuant epochs per block (every run gets the same budget)", DefaultValueFactory = _ => 10, HelpName = "N" };
    private readonly Option<double> _lwcLr = new("--lwc-lr") { Description = "OmniQuant Adam learning rate of the clip logits", DefaultValueFactory = _ => 0.01, HelpName = "LR" };
    private readonly Option<int> _lwcBatch = new("--lwc-batch") { Description = "OmniQuant calibration windows per Adam step", DefaultValueFactory = _ => 1, HelpName = "N" };
    private readonly Option<string> _codistill = new("--codistill") { Description = "Co-distillation pairs of the co-distill run (qat, omniquant; empty = skip that run)", DefaultValueFactory = _ => "8->4,8->2", HelpName = "T->S[,...]" };
    private readonly Option<int?> _threads = new("--threads") { Description = "Torch CPU threads (default: torch's choice)", HelpName = "N" };
    private readonly Option<int> _calibN = new("--calib-n") { Description = "Athena and OmniQuant calibration windows (256 tokens)", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<string> _independent = new("--independent") { Description = "Bit-widths of the independently quantized baselines (none = skip them)", DefaultValueFactory = _ => "8,6,4,3,2", HelpName = "B[,B...]" };
    private readonly Option<int> _maxTokens = new("--max-tokens") { Description = "Tokens of each evaluation text scored (0 = all)", DefaultValueFactory = _ => 20000, HelpName = "N" };
    private readonly Option<string> _budgets = new("--budgets") { Description = "Average-bits budgets of the Mix'n'Match curves (none = skip the curves)", DefaultValueFactory = _ => "2.5,3,3.5,4,5,6", HelpName = "B[,B...]|none" };
    private readonly Option<string> _grid = new("--grid") { Description = "QAT grid of every qat run (independent baselines and MatQuant alike): learned or minmax (frozen min-max of the current weights)", DefaultValueFactory = _ => "learned", HelpName = "learned|minmax" };
    private readonly Option<string> _lambdas = new("--lambdas") { Description = "λ vectors for R = {8,4,2}, ';'-separated: the MatQuant runs are repeated for each (a sweep)", DefaultValueFactory = _ => "1,1,1", HelpName = "L8,L4,L2[;...]" };
    private readonly Option<string> _out = new("--out") { Description = "Report path: the tables go to <stem>-tables.md, the PNG plots beside it", DefaultValueFactory = _ => "docs/results/matquant-tiny.md", HelpName = "PATH" };
    private readonly Option<string> _work = new("--work") { Description = "Folder for the artifacts", DefaultValueFactory = _ => "out/bench-matquant", HelpName = "DIR" };
    private readonly Option<string> _layers = new("--layers") { Description = "Linears every run quantizes (the rest stay float): all, ffn, attn or suffixes/globs (see matq quantize --layers)", DefaultValueFactory = _ => "all", HelpName = "all|ffn|attn|PATTERN" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _seed = CommonOptions.Seed();

    public override string Name => "matquant";
    public override string Description => "MatQuant vs independently quantized baselines (QAT and Athena bases), sliced widths, extra precision and Mix'n'Match curves";
    public override IReadOnlyList<string> Examples =>
    [
        "matq bench matquant --model models/tiny --device cpu --max-tokens 20000",
        "matq bench matquant --model models/tiny --bases athena --budgets 3,4",
        "matq bench matquant --model models/tiny --bases qat --lambdas \"1,1,1;1,1,2;0.1,0.1,1\" --independent none --budgets none",
        "matq bench matquant --model models/tiny --bases omniquant --independent 8,4,2 --codistill 8->2 --epochs 5 --threads 1 --out docs/results/matquant-tiny-omniquant.md",
    ];

    private static readonly int[] Sliced = [8, 6, 4, 3, 2];

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { _model, _bases, _group, _steps, _batch, _context, _epochs, _lwcLr, _lwcBatch, _codistill, _threads, _calibN, _independent, _maxTokens, _budgets, _lambdas, _grid, _out, _work, _layers, _device, _seed })
            command.Options.Add(o);
    }

    /// <summary>One quantization run of the bench: its row label, master bits, R, λ, extra options and the widths served.</summary>
    public sealed record Run(string Label, int Master, string Bits, string Lambda, Dictionary<string, string> Extra, int[] Serve, bool ServeExtra = false, bool MixSource = false);

    /// <summary>The nested widths every MatQuant run trains.</summary>
    public static readonly int[] Nested = [8, 4, 2];

    /// <summary>"1,1,1;1,1,2" → [[1,1,1],[1,1,2]]: one weight per width of R = {8,4,2} per vector, each valid for MatQuant
    /// (finite, ≥ 0, not all 0), no vector twice; one MatqException naming the vector otherwise.</summary>
    public static IReadOnlyList<double[]> ParseLambdas(string text)
    {
        var list = new List<double[]>();
        foreach (var part in (text ?? "").Split(';', StringSplitOptions.TrimEntries))
        {
            if (part.Length == 0) throw new MatqException($"--lambdas '{SafeText.Escape(text)}' has an empty vector: give L8,L4,L2 per run, ';'-separated, e.g. 1,1,1;1,1,2");
            var values = part.Split(',', StringSplitOptions.TrimEntries).Select(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
                : throw new MatqException($"--lambdas '{SafeText.Escape(part)}': '{SafeText.Escape(v)}' is not a number")).ToArray();
            if (values.Length != Nested.Length)
                throw new MatqException($"--lambdas '{SafeText.Escape(part)}' has {values.Length} value(s): give one weight per width of R = {{8,4,2}}, e.g. 1,1,1");
            _ = new MatQuantConfig(Nested, values, 8);   // λ ≥ 0, finite, not all 0 (its own message)
            if (list.Any(l => l.SequenceEqual(values))) throw new MatqException($"--lambdas repeats {LambdaText(values)}");
            list.Add(values);
        }
        return list;
    }

    private static string LambdaText(double[] l) => string.Join(",", l.Select(x => x.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>The runs of one base, in order: independent baselines, then per λ the R = {8,4,2} runs (plain, co-distill
    /// for qat/omniquant when pairs are given, extra precision), single-precision {2} once after the first λ's plain run.</summary>
    public static IReadOnlyList<Run> PlanRuns(string baseName, IReadOnlyList<int> independent, IReadOnlyList<double[]> lambdas, string codistill)
    {
        var runs = new List<Run>();
        foreach (var r in independent) runs.Add(new Run($"independent int{r}", r, r.ToString(CultureInfo.InvariantCulture), "1", new(), [r]));
        bool labelled = !(lambdas.Count == 1 && lambdas[0].All(x => x == 1));
        for (int i = 0; i < lambdas.Count; i++)
        {
            string lambda = LambdaText(lambdas[i]), suffix = labelled ? $" λ={lambda}" : "";
            runs.Add(new Run($"MatQuant {{8,4,2}}{suffix}", 8, "8,4,2", lambda, new(), Sliced, MixSource: i == 0));
            if (baseName is "qat" or "omniquant" && codistill.Length > 0)
                runs.Add(new Run($"MatQuant {{8,4,2}}{suffix} + co-distill {codistill.Replace("->", "→")}", 8, "8,4,2", lambda, new() { ["codistill"] = codistill }, Sliced));
            if (i == 0) runs.Add(new Run("single-precision MatQuant {2}", 8, "2", "1", new(), [2]));
            runs.Add(new Run($"MatQuant {{8,4,2}}{suffix} + extra precision", 8, "8,4,2", lambda, new() { ["extra-precision"] = "true" }, [4, 3, 2], ServeExtra: true));
        }
        return runs;
    }
    // EffBits = stored bits/weight with the escape stream, SparseBits = with sparse overflow lists, PaperBits = r + overflow fraction
    private sealed record Row(string Base, string Run, int Bits, double EffBits, double Sotu, double Moby, double PaperBits = 0, double SparseBits = 0);

    protected override int Execute(ParseResult result)
    {
        var modelPath = result.GetValue(_model)!;
        var bases = result.GetValue(_bases)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var b in bases) if (b is not ("qat" or "athena" or "omniquant")) throw new MatqException($"--bases '{b}' is not qat, athena or omniquant");
        int epochs = result.GetValue(_epochs);
        var codistill = result.GetValue(_codistill)!;
        MatQuantConfig.ParsePairs(codistill);
        if (result.GetValue(_threads) is int threads)
        {
            if (threads < 1) throw new MatqException($"--threads {threads} is out of range: at least 1");
            set_num_threads(threads);
        }
        var independentText = result.GetValue(_independent)!.Trim();
        var independent = independentText.Equals("none", StringComparison.OrdinalIgnoreCase) ? [] : CommonOptions.ParseBits(independentText);
        var lambdas = ParseLambdas(result.GetValue(_lambdas)!);
        var grid = MatQuantConfig.ParseGrid(result.GetValue(_grid)!);
        var budgetText = result.GetValue(_budgets)!.Trim();
        bool mix = !budgetText.Equals("none", StringComparison.OrdinalIgnoreCase);
        var budgets = (mix ? budgetText : "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var b) && b >= 1 && b <= 8 ? b
                : throw new MatqException($"--budgets '{s}' is invalid: give average bits in 1..8, e.g. 2.5,3,4")).ToArray();
        int group = result.GetValue(_group), steps = result.GetValue(_steps), batch = result.GetValue(_batch), context = result.GetValue(_context);
        int maxTokens = result.GetValue(_maxTokens), seed = result.GetValue(_seed);
        var selection = LayerFilter.Parse(result.GetValue(_layers));
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
        var athenaData = CalibrationTokens.Sample(train, result.GetValue(_calibN), 256, seed);
        var ppl = new PerplexityOptions { Context = 256, Stride = 128, Batch = 8 };

        (double, double) Evaluate(nn.Module<Tensor, Tensor> m) =>
            (texts.Select(t => Perplexity.Evaluate(m, t.Item2, t.Item2.Length, ppl, device).Perplexity).ToArray() is var p ? (p[0], p[1]) : default);

        var rows = new List<Row>();
        var report = new StringBuilder();
        using (var source = ModelSource.Open(modelPath, device: device))
        {
            var (s, m) = Evaluate(source.Model);
            rows.Add(new Row("-", "float", 32, 32, s, m));
            Console.MarkupLine($"float: SOTU-test ppl {s:F3}, Moby-Dick ppl {m:F3}");
        }
        var mixArtifacts = new Dictionary<string, string>();
        foreach (var b in bases)
        {
            var opts = new Dictionary<string, string> { ["base"] = b };
            if (b == "qat")
            {
                opts["steps"] = steps.ToString(CultureInfo.InvariantCulture); opts["batch"] = batch.ToString(CultureInfo.InvariantCulture);
                if (steps < 20) opts["warmup"] = steps.ToString(CultureInfo.InvariantCulture);   // the default warm-up (20) cannot exceed the steps
                if (grid != QatGrid.Learned) opts[MatQuantConfig.GridKey] = "minmax";
            }
            if (b == "omniquant")
            {
                opts[OmniQuantConfig.EpochsKey] = epochs.ToString(CultureInfo.InvariantCulture);
                opts[OmniQuantConfig.LrKey] = result.GetValue(_lwcLr).ToString("R", CultureInfo.InvariantCulture);
                opts[OmniQuantConfig.BatchKey] = result.GetValue(_lwcBatch).ToString(CultureInfo.InvariantCulture);
            }
            foreach (var run in PlanRuns(b, independent, lambdas, codistill))
            {
                var sw = Stopwatch.StartNew();
                var options = new Dictionary<string, string>(opts) { ["bits"] = run.Bits, ["lambda"] = run.Lambda };
                foreach (var (k, v) in run.Extra) options[k] = v;
                // OmniQuant's independent baselines are the plain `omniquant` method at r bits (the same engine at R = {r})
                bool plain = b == "omniquant" && run.Label.StartsWith("independent", StringComparison.Ordinal);
                var config = plain
                    ? new QuantizationConfig(OmniQuantAlgorithm.MethodName, run.Master, group, options: opts.Where(kv => kv.Key != "base").ToDictionary(), layers: selection)
                    : new QuantizationConfig(MatQuantAlgorithm.MethodName, run.Master, group, options: options, layers: selection);
                var path = Path.Combine(work, $"{b}-{Slug(run.Label)}.matq");
                using (var source = ModelSource.Open(modelPath, device: device))
                {
                    var ctx = new QuantizationContext(source.Model, device, () => b == "qat" ? qatData : athenaData, seed);
                    var q = QuantizationRunner.Run(config, ctx);
                    ArtifactExport.Write(q, source.Model, path, source.TokenizerFolder);
                }
                var artifact = MatqArtifact.Open(path);
                foreach (var bits in run.Serve)
                {
                    using var served = QuantizedModelLoader.LoadServed(artifact, bits, device, ScalarType.Float32, run.ServeExtra, null);
                    var (s, m) = Evaluate(served.Model);
                    rows.Add(new Row(b, run.Label, bits, served.MeanEffectiveBits, s, m, served.MeanPaperBits, served.MeanSparseBits));
                    Console.MarkupLine(Markup.Escape($"{b} · {run.Label} @ {bits} bits{(served.ExtraPrecision ? $" ({served.ExtraBitsText})" : "")}: SOTU {s:F3}, Moby {m:F3}  [{sw.Elapsed.TotalSeconds:F0} s]"));
                }
                if (run.MixSource && mix) mixArtifacts[b] = path;
            }
        }

        // Mix'n'Match curves on each base's MatQuant artifact (levels = its trained bits)
        var curves = new List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)>();
        foreach (var (b, path) in mixArtifacts)
        {
            var artifact = MatqArtifact.Open(path);
            var layers = PlanLayer.From(artifact);
            int[] levels = [2, 4, 8];
            var hash = BitPlan.ModelHashOf(artifact);
            using var calib = tensor(athenaData.Windows.Take(8).SelectMany(w => w.Take(128).Select(t => (long)t)).ToArray(), new long[] { 8, 128 });
            var sens = LayerSensitivity.Measure(artifact, calib, levels, device: device);
            void Add(string strategy, Dictionary<string, int> bits)
            {
                var plan = new BitPlan(hash, artifact.Metadata.MasterBits, 8, bits, strategy);
                using var served = QuantizedModelLoader.LoadServed(artifact, 8, device, ScalarType.Float32, false, plan);
                var (s, m) = Evaluate(served.Model);
                curves.Add((b, strategy, plan.AverageBits(artifact), plan.WeightBytes(artifact), s, m));
                Console.MarkupLine(Markup.Escape($"{b} · {strategy} avg {plan.AverageBits(artifact):F2} bits: SOTU {s:F3}, Moby {m:F3}"));
            }
            foreach (var r in Sliced) Add("uniform", PlanStrategies.Uniform(layers, r));
            foreach (var budget in budgets)
            {
                Add("pyramid", PlanStrategies.Pyramid(layers, budget, levels));
                Add("budget", PlanStrategies.Budget(layers, budget, levels, (l, bits) => sens[(l, bits)]));
            }
            SavePlot(PlotPath(outPath, b), curves.Where(c => c.Base == b).ToList(), b);
        }
        var omniBudget = $"{epochs} epochs per block over {result.GetValue(_calibN)} windows × 256 tokens of SOTU train, Adam lr {result.GetValue(_lwcLr)}, " +
            $"{result.GetValue(_lwcBatch)} window(s) per step, clip init σ(4) = 0.982, bound of γ, β: 1 at one width, 2 for MatQuant (lwc-max auto)";
        WriteReport(outPath, rows, curves, independent, modelPath, steps, batch, context, group, maxTokens, omniBudget, result.GetValue(_calibN), selection.Text, grid);
        Console.MarkupLine($"wrote [bold]{Markup.Escape(Path.ChangeExtension(Path.GetFullPath(outPath), null) + "-tables.md")}[/] (+ plots beside it)");
        return 0;
    }

    private static string Slug(string label) => new(label.ToLowerInvariant().Select(ch => char.IsLetterOrDigit(ch) ? ch : '-').ToArray());

    private void WriteReport(string path, List<Row> rows, List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)> curves,
        int[] independent, string model, int steps, int batch, int context, int group, int maxTokens, string omniBudget, int calibN, string layers, QatGrid grid)
    {
        var md = new StringBuilder();
        var f = rows.First(r => r.Run == "float");
        md.AppendLine($"Model {model}; group {group}; quantized linears: {(layers == "all" ? "all" : layers + " (the rest float)")}. Perplexity: windows 256, stride 128, first {maxTokens} tokens of each text (0 = all).");
        if (rows.Any(r => r.Base == "qat"))
            md.AppendLine($"QAT: {steps} steps × {batch} windows × {context} tokens per run (AdamW, same budget for every run){(grid == QatGrid.MinMax ? "; frozen min-max grid" : "")}.");
        if (rows.Any(r => r.Base == "athena"))
            md.AppendLine($"Athena: {calibN} windows × 256 tokens of SOTU train.");
        if (rows.Any(r => r.Base == "omniquant"))
            md.AppendLine($"OmniQuant (LWC, no LET): {omniBudget} (same budget for every run).");
        md.AppendLine($"Float model: SOTU-test {f.Sotu:F3}, Moby-Dick {f.Moby:F3}.");
        if (rows.Any(r => r.EffBits > r.Bits + 1e-9))
            md.AppendLine("Extra precision bits/weight: paper = r + overflow fraction (the MatQuant paper's metric, not a stored size); stored = true bits of matq's "
                + "encodings: escape = r-bit codes + one escape bit per top code, sparse = r-bit codes + per-row Golomb-Rice lists of the overflow positions.");
        md.AppendLine();
        foreach (var b in rows.Select(r => r.Base).Where(b => b != "-").Distinct())
        {
            md.AppendLine($"### Base: {b} — perplexity (SOTU-test / Moby-Dick) by served bits");
            md.AppendLine();
            var runs = rows.Where(r => r.Base == b).Select(r => r.Run).Distinct().Where(r => !r.StartsWith("independent")).ToList();
            md.AppendLine("| bits | independent | " + string.Join(" | ", runs) + " |");
            md.AppendLine("|---|---|" + string.Concat(runs.Select(_ => "---|")));
            foreach (var bits in Sliced.Union(independent).Distinct().OrderByDescending(x => x))
            {
                string Cell(Row? r) => r is null ? "–" : $"{r.Sotu:F3} / {r.Moby:F3}"
                    + (r.EffBits > r.Bits + 1e-9 ? $" (paper {r.PaperBits:F3} b; stored {r.EffBits:F3} escape / {r.SparseBits:F3} sparse b)" : "");
                var ind = rows.FirstOrDefault(r => r.Base == b && r.Run == $"independent int{bits}");
                md.AppendLine($"| {bits} | {Cell(ind)} | " + string.Join(" | ", runs.Select(run => Cell(rows.FirstOrDefault(r => r.Base == b && r.Run == run && r.Bits == bits)))) + " |");
            }
            md.AppendLine();
            var c = curves.Where(x => x.Base == b).ToList();
            if (c.Count == 0) continue;
            md.AppendLine($"Mix'n'Match on the {b} MatQuant {{8,4,2}} artifact (levels 2,4,8 for pyramid/budget; uniform at each width):");
            md.AppendLine();
            md.AppendLine("| strategy | avg bits | weight bytes | SOTU-test | Moby-Dick |");
            md.AppendLine("|---|---|---|---|---|");
            foreach (var x in c.OrderBy(x => x.Strategy).ThenBy(x => x.Avg))
                md.AppendLine($"| {x.Strategy} | {x.Avg:F3} | {x.Bytes:N0} | {x.Sotu:F3} | {x.Moby:F3} |");
            md.AppendLine();
        }
        Matq.Formats.IO.AtomicFile.WriteAllText(Path.ChangeExtension(Path.GetFullPath(path), null) + "-tables.md", md.ToString());
        Console.WriteLine(md.ToString());
    }

    /// <summary>"&lt;stem&gt;-&lt;base&gt;-mixnmatch.png", without doubling the base when the stem already ends in it
    /// (matquant-tiny-qat.md → matquant-tiny-qat-mixnmatch.png, not …-qat-qat-…).</summary>
    internal static string PlotPath(string outPath, string b)
    {
        var stem = Path.ChangeExtension(outPath, null);
        return (stem.EndsWith("-" + b, StringComparison.Ordinal) ? stem : stem + "-" + b) + "-mixnmatch.png";
    }

    private static void SavePlot(string path, List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)> points, string b)
    {
        var plot = new ScottPlot.Plot();
        foreach (var g in points.GroupBy(p => p.Strategy))
        {
            var ordered = g.OrderBy(p => p.Avg).ToArray();
            var s = plot.Add.Scatter(ordered.Select(p => p.Avg).ToArray(), ordered.Select(p => p.Sotu).ToArray());
            s.LegendText = g.Key;
            s.MarkerSize = 7;
        }
        plot.Title($"Mix'n'Match ({b} MatQuant artifact): SOTU-test perplexity vs average bits");
        plot.XLabel("parameter-weighted average bits");
        plot.YLabel("perplexity (SOTU test)");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Matq.Formats.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(900, 540, ScottPlot.ImageFormat.Png));
    }
}
