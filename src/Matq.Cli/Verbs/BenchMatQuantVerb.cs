// `matq bench matquant`: on one float model, per base (qat, athena, omniquant): independently quantized baselines at each
// bit-width (omniquant: the `omniquant` method at r bits) vs MatQuant (R = {8,4,2}) sliced to 8/6/4/3/2, with
// co-distillation (qat, omniquant), single-precision MatQuant at 2 and extra
// precision at 2 (measured effective bits); then Mix'n'Match curves (uniform / pyramid / budget, ppl vs average bits)
// of the MatQuant artifact. Prints the tables and writes them as markdown (+ one PNG per base).
// --seeds S,S,...: every row once per quantization seed; the tables give mean ± sd, the Δ vs independent paired by seed,
// the > 2 sd verdict, per-seed CSVs and Mix'n'Match with ±1 sd bands (without --seeds the single-seed report is unchanged).
// --lambdas sweeps λ: the runs over R = {8,4,2} (plain, co-distill, extra precision) are repeated per λ vector, labelled
// "… λ=a,b,c" unless the only vector is the default 1,1,1; Mix'n'Match uses the first λ's plain MatQuant artifact.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Cli.Common;
using Spectre.Console;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchMatQuantVerb(IAnsiConsole console, Func<DataStore>? data = null) : LmBenchVerb<BenchMatQuantSettings>(console, data, "out/bench-matquant", "matquant",
    "MatQuant vs independently quantized baselines (QAT, Athena and OmniQuant bases; --seeds for mean ± sd and paired Δ), sliced widths, extra precision and Mix'n'Match curves",
    "matq bench matquant --model models/tiny --device cpu --max-tokens 20000",
    "matq bench matquant --model models/tiny --bases athena --budgets 3,4",
    "matq bench matquant --model models/tiny --bases qat --lambdas \"1,1,1;1,1,2;0.1,0.1,1\" --independent none --budgets none",
    "matq bench matquant --model models/tiny --bases athena --seeds 1,2,3 --codistill \"8->2;8->4,4->2\" --out docs/results/matquant-study/rows.md",
    "matq bench matquant --model models/tiny --bases omniquant --independent 8,4,2 --codistill 8->2 --epochs 5 --threads 1 --out docs/results/matquant-tiny-omniquant.md")
{
    private readonly Option<string> _bases = new("--bases") { Description = "Bases to run: qat, athena, omniquant (comma-separated)", DefaultValueFactory = _ => "qat,athena", HelpName = "B[,B...]" };
    private readonly Option<int> _epochs = new("--epochs") { Description = "OmniQuant epochs per block (every run gets the same budget)", DefaultValueFactory = _ => 10, HelpName = "N" };
    private readonly Option<double> _lwcLr = new("--lwc-lr") { Description = "OmniQuant Adam learning rate of the clip logits", DefaultValueFactory = _ => 0.01, HelpName = "LR" };
    private readonly Option<int> _lwcBatch = new("--lwc-batch") { Description = "OmniQuant calibration windows per Adam step", DefaultValueFactory = _ => 1, HelpName = "N" };
    private readonly Option<bool> _let = new("--let") { Description = "OmniQuant base and its independent baselines alike: train LET (per-channel scales, folded into the model) with LWC" };
    private readonly Option<string> _codistill = new("--codistill") { Description = "Co-distillation runs (qat, omniquant): pairs T->S per run, runs separated by ';' (8->2;8->4,4->2 = two runs); empty or none = no co-distill run", DefaultValueFactory = _ => "8->4,8->2", HelpName = "T->S[,...]" };
    private readonly Option<int?> _threads = new("--threads") { Description = "Torch CPU threads (default: torch's choice)", HelpName = "N" };
    private readonly Option<int> _calibN = new("--calib-n") { Description = "Athena and OmniQuant calibration windows (256 tokens)", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<string> _independent = new("--independent") { Description = "Bit-widths of the independently quantized baselines (none = skip them)", DefaultValueFactory = _ => "8,6,4,3,2", HelpName = "B[,B...]" };
    private readonly Option<string> _budgets = new("--budgets") { Description = "Average-bits budgets of the Mix'n'Match curves (none = skip the curves)", DefaultValueFactory = _ => "2.5,3,3.5,4,5,6", HelpName = "B[,B...]|none" };
    private readonly Option<string> _grid = new("--grid") { Description = "QAT grid of every qat run (independent baselines and MatQuant alike): learned or minmax (frozen min-max of the current weights)", DefaultValueFactory = _ => "learned", HelpName = "learned|minmax" };
    private readonly Option<string> _lambdas = new("--lambdas") { Description = "λ vectors for R = {8,4,2}, ';'-separated: the MatQuant runs are repeated for each (a sweep)", DefaultValueFactory = _ => "1,1,1", HelpName = "L8,L4,L2[;...]" };
    private readonly Option<string> _out = new("--out") { Description = "Report path: the tables go to <stem>-tables.md, the PNG plots beside it", DefaultValueFactory = _ => "docs/results/matquant-tiny.md", HelpName = "PATH" };
    private readonly Option<string?> _seeds = new("--seeds") { Description = "Quantization seeds (calibration sampling, QAT data order, init): every row runs once per seed; the report gives mean ± sd, paired Δ vs independent, a verdict and per-seed CSVs", HelpName = "S,S[,...]" };
    private readonly Option<string> _layers = new("--layers") { Description = "Linears every run quantizes (the rest stay float): all, ffn, attn or suffixes/globs (see matq quantize --layers)", DefaultValueFactory = _ => "all", HelpName = "all|ffn|attn|PATTERN" };

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { ModelOption, _bases, GroupOption, StepsOption, BatchOption, ContextOption, _epochs, _lwcLr, _lwcBatch, _let, _codistill, _threads, _calibN, _independent, MaxTokensOption, _budgets, _lambdas, _grid, _out, WorkOption, _layers, DeviceOption, SeedOption, _seeds })
            command.Options.Add(o);
    }

    protected override BenchMatQuantSettings Read(ParseResult r) => new(r.GetValue(ModelOption)!, r.GetValue(_bases)!, r.GetValue(GroupOption), r.GetValue(StepsOption),
        r.GetValue(BatchOption), r.GetValue(ContextOption), r.GetValue(_epochs), r.GetValue(_lwcLr), r.GetValue(_lwcBatch), r.GetValue(_let), r.GetValue(_codistill)!,
        r.GetValue(_threads), r.GetValue(_calibN), r.GetValue(_independent)!, r.GetValue(MaxTokensOption), r.GetValue(_budgets)!, r.GetValue(_grid)!,
        r.GetValue(_lambdas)!, r.GetValue(_out)!, r.GetValue(WorkOption)!, r.GetValue(_layers), r.GetValue(DeviceOption)!, r.GetValue(SeedOption), r.GetValue(_seeds));

    protected override int Run(BenchMatQuantSettings o)
    {
        string modelPath = o.Model, codistill = o.Codistill, outPath = o.Out;
        var (bases, independent, lambdas, grid, budgets, selection) = (o.BaseList, o.IndependentList, o.LambdaList, o.Grid, o.BudgetList, o.Selection);
        bool mix = o.Mix;
        int group = o.Group, steps = o.Steps, batch = o.Batch, context = o.Context, epochs = o.Epochs, maxTokens = o.MaxTokens;
        int[] seeds = o.SeedList ?? [o.Seed];
        bool multi = o.SeedList is not null;
        Directory.CreateDirectory(o.Work);
        var device = TorchRuntime.Configure(o.Device, o.Threads).Device;   // the device before the threads: MATQ_TORCH_LIB loads first

        var bench = QuantizeServeBench.Open(modelPath, device, Data, maxTokens);
        var rows = new List<MatQuantRow>();
        var report = new StringBuilder();
        {
            var p = bench.ScoreFloat();
            rows.Add(new MatQuantRow("-", "float", 32, 32, p[0], p[1]));
            Console.MarkupLine($"float: SOTU-test ppl {p[0]:F3}, Moby-Dick ppl {p[1]:F3}");
        }
        var curves = new List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)>();
        var seedCurves = new List<MatQuantCurvePoint>();
        var omniBudget = (o.Let ? "LWC + LET: " : "LWC only (no LET): ") + $"{epochs} epochs per block over {o.CalibN} windows × 256 tokens of SOTU train, Adam lr {o.LwcLr}, " +
            $"{o.LwcBatch} window(s) per step, clip init σ(4) = 0.982, bound of γ, β: 1 at one width, 2 for MatQuant (lwc-max auto)";
        var settings = new MatQuantSeedSettings(modelPath, steps, batch, context, group, maxTokens, omniBudget, o.CalibN, selection.Text, grid, independent, [.. bench.Labels]);
        // --seeds: the run file after every run, so a process stopped by a time limit leaves every row it finished
        void Progress(int seed)
        {
            if (multi)
                MatQuantSeedReport.SaveProgress(outPath, new MatQuantSeedRun(MatQuantSeedRun.CurrentVersion, settings,
                    seeds.TakeWhile(x => x != seed).Append(seed).ToArray(), rows, seedCurves, [seed]));
        }
        foreach (var seed in seeds)
        {
        var qatData = bench.QatWindows(steps, batch, context, seed);
        var athenaData = CalibrationTokens.Sample(bench.TrainTokens, o.CalibN, 256, seed);
        var seedTag = multi ? $"seed {seed} · " : "";
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
                opts[OmniQuantConfig.LrKey] = o.LwcLr.ToString("R", CultureInfo.InvariantCulture);
                opts[OmniQuantConfig.BatchKey] = o.LwcBatch.ToString(CultureInfo.InvariantCulture);
                if (o.Let) opts[OmniQuantConfig.LetKey] = "true";
            }
            foreach (var run in MatQuantBenchPlan.PlanRuns(b, independent, lambdas, codistill))
            {
                var sw = Stopwatch.StartNew();
                var options = new Dictionary<string, string>(opts) { ["bits"] = run.Bits, ["lambda"] = run.Lambda };
                foreach (var (k, v) in run.Extra) options[k] = v;
                // OmniQuant's independent baselines are the plain `omniquant` method at r bits (the same engine at R = {r})
                bool plain = b == "omniquant" && run.Label.StartsWith("independent", StringComparison.Ordinal);
                var config = plain
                    ? new QuantizationConfig(OmniQuantAlgorithm.MethodName, run.Master, group, options: opts.Where(kv => kv.Key != "base").ToDictionary(), layers: selection)
                    : new QuantizationConfig(MatQuantAlgorithm.MethodName, run.Master, group, options: options, layers: selection);
                var path = Path.Combine(o.Work, $"{b}-{QuantizeServeBench.Slug(run.Label)}{(multi ? $"-seed{seed}" : "")}.matq");
                bench.Quantize(config, () => b == "qat" ? qatData : athenaData, seed, path);
                var artifact = MatqArtifact.Open(path);
                foreach (var bits in run.Serve)
                {
                    var served = bench.Serve(artifact, bits, run.ServeExtra);
                    double s = served.Perplexity[0], m = served.Perplexity[1];
                    rows.Add(new MatQuantRow(b, run.Label, bits, served.EffectiveBits, s, m, served.PaperBits, served.SparseBits, seed));
                    Console.MarkupLine(Markup.Escape($"{seedTag}{b} · {run.Label} @ {bits} bits{(served.ExtraPrecision ? $" ({served.ExtraBitsText})" : "")}: SOTU {s:F3}, Moby {m:F3}  [{sw.Elapsed.TotalSeconds:F0} s]"));
                }
                if (run.MixSource && mix) mixArtifacts[b] = path;
                Progress(seed);
            }
        }

        // Mix'n'Match curves on each base's MatQuant artifact (levels = its trained bits)
        foreach (var (b, path) in mixArtifacts)
        {
            var artifact = MatqArtifact.Open(path);
            var layers = PlanLayer.From(artifact);
            int[] levels = [2, 4, 8];
            var hash = BitPlan.ModelHashOf(artifact);
            int sensN = Math.Min(8, athenaData.Windows.Count);   // --calib-n may be below 8
            using var calib = tensor(athenaData.Windows.Take(sensN).SelectMany(w => w.Take(128).Select(t => (long)t)).ToArray(), new long[] { sensN, 128 });
            var sens = LayerSensitivity.Measure(artifact, calib, levels, device: device);
            void Add(string strategy, double target, Dictionary<string, int> bits)
            {
                var plan = new BitPlan(hash, artifact.Metadata.MasterBits, 8, bits, strategy);
                var (s, m) = bench.Serve(artifact, 8, plan: plan).Perplexity is var p ? (p[0], p[1]) : default;
                curves.Add((b, strategy, plan.AverageBits(artifact), plan.WeightBytes(artifact), s, m));
                seedCurves.Add(new MatQuantCurvePoint(seed, b, strategy, target, plan.AverageBits(artifact), plan.WeightBytes(artifact), s, m));
                Console.MarkupLine(Markup.Escape($"{seedTag}{b} · {strategy} avg {plan.AverageBits(artifact):F2} bits: SOTU {s:F3}, Moby {m:F3}"));
            }
            foreach (var r in MatQuantBenchPlan.Sliced) Add("uniform", r, PlanStrategies.Uniform(layers, r));
            foreach (var budget in budgets)
            {
                Add("pyramid", budget, PlanStrategies.Pyramid(layers, budget, levels));
                Add("budget", budget, PlanStrategies.Budget(layers, budget, levels, (l, bits) => sens[(l, bits)]));
            }
            if (!multi) MatQuantBenchPlan.SavePlot(MatQuantBenchPlan.PlotPath(outPath, b), curves.Where(c => c.Base == b).ToList(), b);
            Progress(seed);
        }
        }
        if (multi)
            MatQuantSeedReport.Write(Console, outPath, new MatQuantSeedRun(MatQuantSeedRun.CurrentVersion, settings, seeds, rows, seedCurves));
        else
            WriteReport(outPath, rows, curves, independent, modelPath, steps, batch, context, group, maxTokens, omniBudget, o.CalibN, selection.Text, grid);
        Console.MarkupLine($"wrote [bold]{Markup.Escape(Path.ChangeExtension(Path.GetFullPath(outPath), null) + "-tables.md")}[/] (+ plots beside it)");
        return 0;
    }

    private void WriteReport(string path, List<MatQuantRow> rows, List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)> curves,
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
            md.AppendLine($"OmniQuant with {omniBudget} (same budget for every run).");
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
            foreach (var bits in MatQuantBenchPlan.Sliced.Union(independent).Distinct().OrderByDescending(x => x))
            {
                string Cell(MatQuantRow? r) => r is null ? "–" : $"{r.Sotu:F3} / {r.Moby:F3}"
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
}

/// <summary>What `bench matquant` was asked: the option values as typed; <see cref="Validate"/> checks them all (one line per
/// mistake) before any model, dataset or torch is touched.</summary>
public sealed record BenchMatQuantSettings(string Model, string Bases, int Group, int Steps, int Batch, int Context, int Epochs, double LwcLr,
    int LwcBatch, bool Let, string Codistill, int? Threads, int CalibN, string Independent, int MaxTokens, string Budgets, string GridText, string Lambdas,
    string Out, string Work, string? Layers, string Device, int Seed, string? Seeds = null) : IVerbSettings
{
    /// <summary>--seeds as distinct integers (null when not given: one run at --seed, the single-seed report).</summary>
    public int[]? SeedList
    {
        get
        {
            if (Seeds is null) return null;
            var list = Seeds.Split(',', StringSplitOptions.TrimEntries).Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= 0 ? v
                : throw new MatqException($"--seeds '{SafeText.Escape(Seeds)}': '{SafeText.Escape(s)}' is not a seed: give non-negative integers, e.g. 1,2,3")).ToArray();
            if (list.Distinct().Count() != list.Length) throw new MatqException($"--seeds '{SafeText.Escape(Seeds)}' repeats a seed");
            return list;
        }
    }

    public IReadOnlyList<string> BaseList => Bases.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(b => b is "qat" or "athena" or "omniquant" ? b : throw new MatqException($"--bases '{b}' is not qat, athena or omniquant")).ToArray();

    public int[] IndependentList => Independent.Trim().Equals("none", StringComparison.OrdinalIgnoreCase) ? [] : CommonOptions.ParseBits(Independent.Trim());

    public IReadOnlyList<double[]> LambdaList => MatQuantBenchPlan.ParseLambdas(Lambdas);

    public QatGrid Grid => MatQuantConfig.ParseGrid(GridText);

    /// <summary>False for --budgets none: no Mix'n'Match curves.</summary>
    public bool Mix => !Budgets.Trim().Equals("none", StringComparison.OrdinalIgnoreCase);

    public double[] BudgetList => (Mix ? Budgets.Trim() : "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var b) && b >= 1 && b <= 8 ? b
            : throw new MatqException($"--budgets '{s}' is invalid: give average bits in 1..8, e.g. 2.5,3,4")).ToArray();

    public LayerFilter Selection => LayerFilter.Parse(Layers);

    public void Validate()
    {
        _ = BaseList;
        _ = MatQuantBenchPlan.CodistillRuns(Codistill);
        _ = SeedList;
        TorchRuntime.Check(Device, Threads);
        _ = IndependentList;
        _ = LambdaList;
        _ = Grid;
        _ = BudgetList;
        _ = Selection;
        BenchStats.CheckMaxTokens(MaxTokens);
        Matq.Formats.IO.OutputPaths.CheckFile(Out, "--out", Model);
        Matq.Formats.IO.OutputPaths.CheckWorkFolder(Work, "--work", Model);
    }
}
