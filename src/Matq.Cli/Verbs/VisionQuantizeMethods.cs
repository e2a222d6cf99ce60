// The vision side of `matq quantize`: --method efqat (EfQAT on a trained Fashion-MNIST model folder, as in quantize-cnn)
// and --method maqd (fully quantized training from scratch with the folder's architecture: LBN, standardized
// round-clip weights, round-clip activations, surrogate gradients), a --sweep that writes the MaQD accuracy table,
// and the check that vision-only options are not given to an LM run. Every user mistake fails before data is loaded.
using System.CommandLine;
using System.Globalization;
using System.Text;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.MaQD;
using Matq.Data;
using Matq.Models.Vision;
using Matq.Quantization;
using Matq.Runtime;
using Matq.Training.Vision;
using Spectre.Console;
using TorchSharp;

namespace Matq.Cli.Verbs;

/// <summary>Options and execution of the vision methods of `quantize`.</summary>
public sealed class VisionQuantizeMethods(IAnsiConsole console, Func<DataStore> data)
{
    public static IReadOnlyList<string> Methods { get; } = ["efqat", "maqd"];

    private readonly Option<int> _wstates = new("--wstates") { Description = "maqd: weight states N, odd 3..255 (3 = ternary)", DefaultValueFactory = _ => 3, HelpName = "N" };
    private readonly Option<int> _astates = new("--astates") { Description = "maqd: activation states M, 2..256 (levels 0..M-1, a quantized ReLU)", DefaultValueFactory = _ => 15, HelpName = "M" };
    private readonly Option<string> _surrogate = new("--surrogate") { Description = "maqd: gradient of the round-clips: ste (1 inside the clip range) or smooth (derivative of a smooth staircase)", DefaultValueFactory = _ => "ste", HelpName = "ste|smooth" };
    private readonly Option<double> _width = new("--width") { Description = "maqd: smooth surrogate half-width per step, 0 < w <= 4", DefaultValueFactory = _ => 1.0, HelpName = "W" };
    private readonly Option<string> _norm = new("--norm") { Description = "maqd: normalization of the trained net: lbn (Layer-Batch Norm), bn, or none (mlp only)", DefaultValueFactory = _ => "lbn", HelpName = "lbn|bn|none" };
    private readonly Option<double> _freeze = new("--freeze-lbn") { Description = "LBN nets: train the last fraction of the steps with the norms frozen at recomputed running estimates (the map folding keeps); 0 = never", DefaultValueFactory = _ => 0.2, HelpName = "F" };
    private readonly Option<int> _ends = new("--ends-wstates") { Description = "maqd: weight states of the first conv (on the pixels) and the classifier, odd 3..255; 255 = 8-bit codes as is usual for these layers; give the --wstates value to quantize every layer alike", DefaultValueFactory = _ => 255, HelpName = "N" };
    private readonly Option<double?> _clip = new("--clip-grad") { Description = "maqd: largest gradient norm per step (rescaled above it; guards against the spikes that kill quantized layers); default 2·sqrt(128/B), the gradient noise growing as 1/sqrt(B); 0 = no clipping", HelpName = "G" };
    private readonly Option<bool> _float = new("--float") { Description = "maqd: train the float net with the same recipe and norm (no quantizers), the reference for a MaQD run" };
    private readonly Option<string?> _init = new("--init") { Description = "maqd: start from the float weights of a `matq train cnn` folder with the same architecture and norm (e.g. --norm lbn) instead of a fresh seeded init", HelpName = "DIR" };
    private readonly Option<bool> _fold = new("--fold") { Description = "maqd: fold the norms into the preceding layers after training and report the folded net's accuracy" };
    private readonly Option<int> _batch = new("--batch") { Description = "Images per training step", DefaultValueFactory = _ => 128, HelpName = "B" };
    private readonly Option<int?> _epochs = new("--epochs") { Description = "Training epochs (default: efqat 1, maqd 15)", HelpName = "N" };
    private readonly Option<double?> _lr = new("--lr") { Description = "Peak learning rate (default: efqat 2e-4 AdamW; maqd SGD 0.1·min(1, sqrt(B/128)))", HelpName = "LR" };
    private readonly Option<int?> _limit = new("--limit-train") { Description = "Use only the first N training images", HelpName = "N" };
    private readonly Option<int?> _limitTest = new("--limit-test") { Description = "Evaluate on only the first N test images (quick runs)", HelpName = "N" };
    private readonly Option<int?> _holdout = new("--holdout") { Description = "maqd: hold out the last N training images and report accuracy on them instead of the test set (for choosing settings); training uses the images before them", HelpName = "N" };
    private readonly Option<int?> _threads = new("--threads") { Description = "CPU threads for torch (default: torch's own); on a shared CPU, 1 avoids oversubscription", HelpName = "N" };
    private readonly Option<string> _cudnnBenchmark = Common.CommonOptions.CudnnBenchmark();
    private readonly Option<int> _abits = new("--abits") { Description = "efqat: activation bits 2..8 (weights: --bits)", DefaultValueFactory = _ => 8, HelpName = "B" };
    private readonly Option<string> _mode = new("--mode") { Description = "efqat: selection cwpl, cwpn or lwpn", DefaultValueFactory = _ => "cwpl", HelpName = "cwpl|cwpn|lwpn" };
    private readonly Option<double> _fraction = new("--fraction") { Description = "efqat: fraction of channels/layers trained, 0..1", DefaultValueFactory = _ => 0.25, HelpName = "F" };
    private readonly Option<string?> _sweep = new("--sweep") { Description = "maqd: train the whole table (float+BN, float+LBN with and without weight standardization, MaQD (3,15) (15,15) (3,3) (255,255)) and write it as markdown to FILE", HelpName = "FILE" };
    private readonly Option<string?> _settings = new("--sweep-settings") { Description = "maqd --sweep: columns as B[:IMAGES[:EPOCHS]],... (default 8,128 with --limit-train and --epochs)", HelpName = "SPEC" };

    /// <summary>Options only the vision methods read (given to an LM method they are an error).</summary>
    public IReadOnlyList<Option> Options => [_wstates, _astates, _ends, _surrogate, _width, _norm, _freeze, _clip, _float, _init, _fold, _batch, _epochs, _lr, _limit, _limitTest, _holdout, _threads, _cudnnBenchmark, _abits, _mode, _fraction, _sweep, _settings];

    private static bool Given(ParseResult r, Option o) => r.GetResult(o) is { Implicit: false };

    /// <summary>An LM run: fails on the first vision-only option that was given.</summary>
    public void RejectForLanguageModel(ParseResult r, string method)
    {
        if (Options.FirstOrDefault(o => Given(r, o)) is { } o)
            throw new MatqException($"{o.Name} applies to the vision methods (--method efqat|maqd with a `matq train cnn` folder), not to --method {method}");
    }

    /// <summary>Runs efqat or maqd on the vision folder <paramref name="model"/>; <paramref name="lmOnly"/> are the
    /// LM options, which must not be given here.</summary>
    public int Execute(ParseResult r, string method, string model, Option<string> bits, Option<string> device, Option<int> seed, IEnumerable<Option> lmOnly)
    {
        if (lmOnly.FirstOrDefault(o => Given(r, o)) is { } lm)
            throw new MatqException($"{lm.Name} applies to LM quantization (HF models), not to --method {method} on a vision model");
        if (method == "efqat" && Options.Where(o => o == _wstates || o == _astates || o == _ends || o == _surrogate || o == _width || o == _norm || o == _freeze || o == _clip || o == _float || o == _init || o == _fold || o == _sweep || o == _settings || o == _holdout).FirstOrDefault(o => Given(r, o)) is { } m)
            throw new MatqException($"{m.Name} applies to --method maqd, not to efqat");
        if (method == "maqd" && new Option[] { _abits, _mode, _fraction }.FirstOrDefault(o => Given(r, o)) is { } e)
            throw new MatqException($"{e.Name} applies to --method efqat, not to maqd");
        if (method == "maqd" && Given(r, bits))
            throw new MatqException("--bits applies to efqat; maqd counts states: use --wstates N and --astates M");
        if (r.GetValue(_threads) is < 1) throw new MatqException($"--threads {r.GetValue(_threads)} is out of range: at least 1");
        var arch = VisionNetIO.ReadConfig(model);
        if (r.GetValue(_threads) is int threads) { Matq.Runtime.TorchDevices.PreloadTorchLib(); torch.set_num_threads(threads); }   // MATQ_TORCH_LIB first
        return method == "efqat" ? EfQat(r, model, bits, device, seed) : Maqd(r, model, arch, device, seed);
    }

    private int EfQat(ParseResult r, string model, Option<string> bitsOption, Option<string> deviceOption, Option<int> seedOption)
    {
        var bits = Common.CommonOptions.ParseBits(r.GetValue(bitsOption)!);
        if (bits.Length != 1) throw new MatqException($"--bits {r.GetValue(bitsOption)}: efqat takes one weight bit-width in 2..8");
        var q = new QuantSettings(bits[0], r.GetValue(_abits));
        var ef = new EfQatConfig(EfQatConfig.ParseMode(r.GetValue(_mode)!), r.GetValue(_fraction), q.WeightBits, q.ActBits);
        var train = new CnnTrainOptions
        {
            Epochs = r.GetValue(_epochs) ?? 1, Batch = r.GetValue(_batch), Lr = r.GetValue(_lr) ?? 2e-4, Optimizer = "adamw", WeightDecay = 0,
            WarmupSteps = 20, Augment = true, Seed = r.GetValue(seedOption), LimitTrain = r.GetValue(_limit),
        };
        train.Validate();
        var request = new VisionQuantRequest("efqat", q, train, ef);
        var device = TorchDevices.Resolve(r.GetValue(deviceOption));
        Common.CommonOptions.ApplyCudnnBenchmark(r.GetValue(_cudnnBenchmark)!, device);
        var fm = data().FashionMnist();
        torch.manual_seed(r.GetValue(seedOption));
        using var net = VisionNetIO.Load(model);
        net.to(device);
        VisionQuantOutcome o = null!;
        console.Status().Start($"EfQAT {EfQatConfig.ShortName(ef.Mode)} {ef.Fraction:P0} W{q.WeightBits}A{q.ActBits}", _ => o = VisionQuantization.Run(net, fm.Train, fm.Test, request, device));
        var table = new Table().Border(TableBorder.Rounded).AddColumns("method", "W/A bits", "weights trained", "PTQ acc", "final acc", "train s");
        table.AddRow($"EfQAT {EfQatConfig.ShortName(ef.Mode)} {ef.Fraction:P0}", $"W{q.WeightBits}A{q.ActBits}", $"{o.SelectedWeightFraction:P1}", $"{o.PtqAccuracy:P2}", $"{o.Accuracy:P2}", $"{o.TrainSeconds:F1}");
        console.Write(table);
        foreach (var c in o.Codes) { c.Codes.Dispose(); c.Step.Dispose(); }
        return 0;
    }

    /// <summary>One column of the sweep: batch size, training images (null = all or --limit-train), epochs.</summary>
    public sealed record SweepSetting(int Batch, int? Images, int Epochs);

    /// <summary>Parses "8:20000:1,128:60000:4" (IMAGES and EPOCHS optional).</summary>
    public static IReadOnlyList<SweepSetting> ParseSettings(string? text, int? images, int epochs)
    {
        if (text is null) return [new(8, images, epochs), new(128, images, epochs)];
        var list = new List<SweepSetting>();
        foreach (var item in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = item.Split(':');
            int[] v = new int[parts.Length];
            if (parts.Length > 3 || parts.Select((p, i) => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out v[i]) && v[i] > 0).Any(ok => !ok))
                throw new MatqException($"--sweep-settings item '{item}' is not B[:IMAGES[:EPOCHS]] with positive integers (e.g. 8:20000:1,128:60000:4)");
            list.Add(new(v[0], parts.Length > 1 ? v[1] : images, parts.Length > 2 ? v[2] : epochs));
        }
        if (list.Count == 0) throw new MatqException("--sweep-settings is empty: give B[:IMAGES[:EPOCHS]],... (e.g. 8,128)");
        return list;
    }

    /// <summary>The gradient-norm clip for a batch size: <paramref name="given"/> (0 = none), else 2·sqrt(128/B): 2 sits above
    /// the typical norm of a MaQD ResNet step at B = 128 (0.4–3) and below the spikes (10–22) that kill layers; the
    /// noise part of the norm grows as 1/sqrt(B) (median 4 at B = 8), so the clip scales with it.</summary>
    public static double? ClipFor(double? given, int batch) => given is double g ? (g > 0 ? g : null) : DefaultClip * Math.Sqrt(128.0 / batch);

    public const double DefaultClip = 2.0;

    /// <summary>SGD (nesterov, momentum 0.9) at 0.1 for batch ≥ 128, scaled with sqrt(B/128) below it (0.025 at B = 8):
    /// on a held-out split at B = 8 it beat linear scaling (0.00625) by 1.4 points for float BN and LBN and 0.6 for
    /// ternary MaQD, and with the clip 2·sqrt(128/B) it keeps the largest step lr·clip = 0.2 at every batch size.</summary>
    public static double DefaultMaqdLr(int batch) => 0.1 * Math.Min(1.0, Math.Sqrt(batch / 128.0));

    private int Maqd(ParseResult r, string model, VisionNetConfig arch, Option<string> deviceOption, Option<int> seedOption)
    {
        var surrogate = MaqdConfig.ParseSurrogate(r.GetValue(_surrogate)!);
        double width = r.GetValue(_width);
        int epochs = r.GetValue(_epochs) ?? 15;
        int? limit = r.GetValue(_limit);
        string? sweep = r.GetValue(_sweep);
        CnnTrainOptions TrainOptions(int batch, int? images, int ep) => new()
        {
            Epochs = ep, Batch = batch, Lr = r.GetValue(_lr) ?? DefaultMaqdLr(batch), Optimizer = "sgd", WeightDecay = 5e-4,
            WarmupSteps = Math.Clamp((images ?? 60_000) / batch * ep / 10, 1, 100),   // ≤ 10% of the run, at most 100 steps
            Augment = true, Seed = r.GetValue(seedOption), LimitTrain = images, LimitTest = r.GetValue(_limitTest),
            FreezeLbnFraction = r.GetValue(_freeze), ClipGradNorm = ClipFor(r.GetValue(_clip), batch),
        };
        var jobs = new List<(MaqdRunSpec Spec, CnnTrainOptions Train)>();
        bool fold;
        IReadOnlyList<SweepSetting> settings;
        if (sweep is null)
        {
            if (Given(r, _settings)) throw new MatqException("--sweep-settings needs --sweep FILE");
            if (r.GetValue(_float) && new Option[] { _wstates, _astates, _ends, _surrogate, _width }.FirstOrDefault(o => Given(r, o)) is { } q)
                throw new MatqException($"{q.Name} sets the quantizers, which --float leaves out: drop one of them");
            var cfg = new MaqdConfig(r.GetValue(_wstates), r.GetValue(_astates), surrogate, width, r.GetValue(_ends));
            string norm = r.GetValue(_norm)!;
            arch.WithNorm(norm);   // validates the norm for this architecture
            fold = r.GetValue(_fold);
            if (fold) MaqdTraining.CheckFoldable(arch, norm);
            settings = [new SweepSetting(r.GetValue(_batch), limit, epochs)];
            string? init = r.GetValue(_init);
            if (init is not null) MaqdTraining.CheckInit(arch.WithNorm(norm), init);
            string from = init is null ? "" : $", from {Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(init)))}";
            var spec = r.GetValue(_float) ? new MaqdRunSpec($"float + {norm.ToUpperInvariant()}{from}", norm, null, Init: init)
                : new MaqdRunSpec($"{cfg.Label} + {norm.ToUpperInvariant()}, {cfg.LayersText}{from}", norm, cfg, Init: init);
            jobs.Add((spec, TrainOptions(r.GetValue(_batch), limit, epochs)));
        }
        else
        {
            foreach (var o in new Option[] { _wstates, _astates, _norm, _batch, _float, _init })
                if (Given(r, o)) throw new MatqException($"{o.Name} does not apply to --sweep (it runs the fixed table; columns come from --sweep-settings)");
            if (arch.Arch != "resnet") throw new MatqException($"--sweep compares BN and LBN on the resnet; {model} is an {arch.Arch}");
            fold = true;
            settings = ParseSettings(r.GetValue(_settings), limit, epochs);
            foreach (var s in settings)
                foreach (var spec in MaqdTraining.SweepPlan(surrogate, width, r.GetValue(_ends)))
                    jobs.Add((spec, TrainOptions(s.Batch, s.Images, s.Epochs)));
        }
        if (r.GetValue(_clip) < 0) throw new MatqException($"--clip-grad {r.GetValue(_clip)} is invalid: allowed a positive norm (e.g. 2) or 0 for no clipping");
        foreach (var (_, t) in jobs) t.Validate();
        int? holdout = r.GetValue(_holdout);
        if (holdout is int h0)
        {
            if (h0 < 1 || h0 > 30_000) throw new MatqException($"--holdout {h0} is out of range: allowed 1..30000 of the 60,000 training images (e.g. 10000)");
            if (jobs.Select(j => j.Train.LimitTrain ?? 0).Max() is int most && most + h0 > 60_000)
                throw new MatqException($"--holdout {h0} leaves {60_000 - h0} training images, fewer than the {most} asked for: lower --limit-train or the sweep's image counts");
        }

        var device = TorchDevices.Resolve(r.GetValue(deviceOption));
        Common.CommonOptions.ApplyCudnnBenchmark(r.GetValue(_cudnnBenchmark)!, device);
        var fm = data().FashionMnist();
        if (holdout >= fm.Train.Count) throw new MatqException($"--holdout {holdout} leaves no training images of the {fm.Train.Count}: lower it");
        var (trainSet, evalSet) = holdout is int h ? (fm.Train.Slice(0, fm.Train.Count - h), fm.Train.Slice(fm.Train.Count - h, h)) : (fm.Train, fm.Test);
        string evalName = holdout is int h1 ? $"held-out training images {fm.Train.Count - h1:N0}..{fm.Train.Count - 1:N0}" : "test images";
        console.MarkupLine(Markup.Escape($"MaQD trains from scratch with the architecture of {model} ({arch.Arch}, widths [{string.Join(", ", arch.Widths)}]); its weights are not used"));
        var outcomes = new List<MaqdRunOutcome>();
        console.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                foreach (var (spec, t) in jobs)
                {
                    var task = ctx.AddTask(Markup.Escape($"{spec.Label} B={t.Batch}"), maxValue: 1);
                    var o = MaqdTraining.Run(arch, spec, trainSet, evalSet, t, device, fold,
                        (s, total, l) => { task.MaxValue = total; task.Value = s; task.Description = Markup.Escape($"{spec.Label} B={t.Batch} step {s}/{total} loss {l:F3}"); });
                    task.Value = task.MaxValue;
                    outcomes.Add(o);
                    if (sweep is not null) WriteSweep(sweep, outcomes);
                    console.MarkupLine(Markup.Escape($"{spec.Label} B={t.Batch}: {(holdout is null ? "test" : "held-out")} accuracy {o.Accuracy:P2}" + (o.FoldedAccuracy is double f ? $", folded {f:P2}" : "") + $" ({o.Seconds:F1} s)"));
                }
            });
        var table = new Table().Border(TableBorder.Rounded).AddColumns("run", "surrogate", "batch", "steps", holdout is null ? "test acc" : "held-out acc", "folded acc", "weight codes (inner / first+last)", "train s");
        foreach (var o in outcomes)
            table.AddRow(Markup.Escape(o.Spec.Label), o.Spec.Maqd is null ? "-" : SurrogateText(o.Spec.Maqd), o.Batch.ToString(CultureInfo.InvariantCulture),
                o.Steps.ToString("N0", CultureInfo.InvariantCulture), $"{o.Accuracy:P2}", o.FoldedAccuracy is double f ? $"{f:P2}" : "-",
                Codes(o), $"{o.Seconds:F1}");
        console.Write(table);
        if (sweep is not null) console.MarkupLine($"wrote {Markup.Escape(sweep)}");
        return 0;

        // Rewritten (atomically) after every run, so an interrupted sweep keeps the rows it finished.
        void WriteSweep(string path, IReadOnlyList<MaqdRunOutcome> done)
        {
            Matq.Formats.IO.AtomicFile.WriteAllText(path, SweepMarkdown(done, settings, jobs.Take(jobs.Count / settings.Count).Select(j => j.Spec).ToList(),
                model, device.ToString(), surrogate, width, r.GetValue(_freeze), r.GetValue(_clip), r.GetValue(_ends), evalName));
        }
    }

    private static string SurrogateText(MaqdConfig c) => c.Surrogate == Surrogate.Ste ? "ste" : $"smooth w={c.Width.ToString(CultureInfo.InvariantCulture)}";

    private static string Codes(MaqdRunOutcome o) => o.MaxDistinctCodes is int i ? $"{i} / {o.EndDistinctCodes?.ToString(CultureInfo.InvariantCulture) ?? "-"}" : "-";

    private static string Pct(double v) => (v * 100).ToString("F2", CultureInfo.InvariantCulture) + " %";

    /// <summary>Summary (rows = runs, columns = settings; the folded accuracy, Δ against float+BN of the same column) and
    /// details. <paramref name="outcomes"/> are in run order (setting-major) and may be a prefix of the plan: cells not
    /// yet run show "…".</summary>
    public static string SweepMarkdown(IReadOnlyList<MaqdRunOutcome> outcomes, IReadOnlyList<SweepSetting> settings, IReadOnlyList<MaqdRunSpec> rows,
        string model, string device, Surrogate surrogate, double width, double freeze, double? clip, int ends, string evalName = "test images")
    {
        var md = new StringBuilder();
        md.AppendLine("# MaQD on Fashion-MNIST: float vs fully quantized, BN vs LBN");
        md.AppendLine();
        md.AppendLine($"Architecture of `{model}`, trained from scratch per row; device {device}; surrogate {(surrogate == Surrogate.Ste ? "ste" : $"smooth, width {width.ToString(CultureInfo.InvariantCulture)}")}; "
            + "SGD nesterov (lr 0.1·min(1, sqrt(B/128)), warm-up min(100, 10% of the steps), cosine, weight decay 5e-4"
            + (clip is double g ? (g > 0 ? $", gradient norm clipped at {g.ToString(CultureInfo.InvariantCulture)}" : "") : $", gradient norm clipped at {DefaultClip.ToString(CultureInfo.InvariantCulture)}·sqrt(128/B)") + "), augmentation (shift ±2 px, flip), same recipe for every row. "
            + $"Accuracy = eval-mode net after folding every norm into the layer before it ({evalName}). "
            + "MaQD (N, M): N weight states (standardized per output channel, round-clip), M activation states (round-clip ReLU after every norm); "
            + $"\"first/last {ends}\" keeps the first conv (on the pixels) and the classifier at {ends} states, \"all layers\" quantizes them to N too. "
            + "float + LBN standardizes its weights as MaQD does (WS(W)/sqrt(fan_in), no rounding). "
            + (freeze > 0 ? $"LBN nets train their last {(freeze * 100).ToString("0.#", CultureInfo.InvariantCulture)} % of steps (--freeze-lbn) with the norms frozen at running estimates recomputed over 4,096 training images. "
                : "LBN running estimates: recomputed over 4,096 training images after training (--freeze-lbn 0). ")
            + $"{outcomes.Count} of {rows.Count * settings.Count} runs done.");
        md.AppendLine();
        md.Append("| run |");
        foreach (var s in settings) md.Append($" B={s.Batch} ({(s.Images is int n ? n.ToString("N0", CultureInfo.InvariantCulture) : "all")} images × {s.Epochs} ep) | Δ vs float+BN |");
        md.AppendLine();
        md.Append("|---|");
        foreach (var _ in settings) md.Append("---:|---:|");
        md.AppendLine();
        for (int row = 0; row < rows.Count; row++)
        {
            md.Append($"| {rows[row].Label} |");
            for (int c = 0; c < settings.Count; c++)
            {
                int i = c * rows.Count + row, b = c * rows.Count;
                if (i >= outcomes.Count) { md.Append(" … | … |"); continue; }
                double acc = outcomes[i].FoldedAccuracy ?? outcomes[i].Accuracy, baseAcc = outcomes[b].FoldedAccuracy ?? outcomes[b].Accuracy;
                md.Append($" {Pct(acc)} | {(row == 0 ? "-" : ((acc - baseAcc) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture))} |");
            }
            md.AppendLine();
        }
        md.AppendLine();
        md.AppendLine("| run | batch | steps | eval acc (unfolded) | folded acc | distinct weight codes per layer, most: inner / first+last | train s | ms/step |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var o in outcomes)
            md.AppendLine($"| {o.Spec.Label} | {o.Batch} | {o.Steps} | {Pct(o.Accuracy)} | {(o.FoldedAccuracy is double f ? Pct(f) : "-")} | {Codes(o)} | {o.Seconds.ToString("F1", CultureInfo.InvariantCulture)} | {(o.Steps > 0 ? (1000 * o.Seconds / o.Steps).ToString("F1", CultureInfo.InvariantCulture) : "-")} |");
        return md.ToString();
    }
}
