// `matq quantize-cnn`: the one verb that quantizes a vision model folder written by `matq train cnn`: ptq, qat or efqat of
// the trained net (test accuracy; --sweep writes the PTQ / EfQAT / QAT accuracy table), or maqd, fully quantized training
// from scratch with the folder's architecture (LBN, standardized round-clip weights, round-clip activations, surrogate
// gradients; --sweep writes the MaQD table). The recipes live in Training/Vision; every mistake fails before data is loaded.
using System.Globalization;
using System.Text;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.MaQD;
using Matq.Models.Vision;
using Matq.Quantization;
using Matq.Runtime.Models;
using Matq.Training.Vision;
using TorchSharp;

namespace Matq.Cli.Verbs;

/// <summary>Top-level verb "quantize-cnn".</summary>
public sealed class VisionQuantizeVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<VisionQuantizeSettings>(console, "quantize-cnn",
    "Quantize a Fashion-MNIST model folder (from `matq train cnn`) with PTQ, QAT, EfQAT or MaQD and report test accuracy",
    "matq quantize-cnn --model models/cnn --method efqat --mode cwpl --fraction 0.25 --wbits 2",
    "matq quantize-cnn --model models/cnn --sweep docs/results/vision-fashion-mnist.md --device cuda",
    "matq quantize-cnn --model models/cnn --method maqd --wstates 3 --astates 15 --epochs 5 --fold --device cuda",
    "matq quantize-cnn --model models/cnn --method maqd --sweep docs/results/maqd-fashion-mnist.md --sweep-settings 8:20000:1,128:60000:4 --device cuda")
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = new("--model") { Description = "A folder written by `matq train cnn`", Required = true, HelpName = "DIR" };
    private readonly Option<string> _method = new("--method") { Description = "ptq (RTN, MSE clip), qat (full QAT), efqat (partial QAT) of the trained net, or maqd (fully quantized training from scratch with its architecture)", DefaultValueFactory = _ => "efqat", HelpName = "ptq|qat|efqat|maqd" };
    private readonly Option<int> _wbits = new("--wbits", "--bits") { Description = "ptq, qat, efqat: weight bits, 2..8 (signed, per output channel)", DefaultValueFactory = _ => 4, HelpName = "B" };
    private readonly Option<int> _abits = new("--abits") { Description = "ptq, qat, efqat: activation bits, 2..8 (unsigned, per tensor)", DefaultValueFactory = _ => 8, HelpName = "B" };
    private readonly Option<string> _mode = new("--mode") { Description = "efqat: selection cwpl, cwpn or lwpn", DefaultValueFactory = _ => "cwpl", HelpName = "cwpl|cwpn|lwpn" };
    private readonly Option<double> _fraction = new("--fraction") { Description = "efqat: fraction of channels/layers trained, 0..1", DefaultValueFactory = _ => 0.25, HelpName = "F" };
    private readonly Option<int?> _epochs = new("--epochs") { Description = $"Training epochs (default: qat and efqat {VisionQuantRecipe.DefaultEpochs}, maqd {MaqdRecipe.DefaultEpochs})", HelpName = "N" };
    private readonly Option<double?> _lr = new("--lr") { Description = "Peak learning rate (default: qat and efqat 2e-4 AdamW; maqd SGD 0.1·min(1, sqrt(B/128)))", HelpName = "LR" };
    private readonly Option<int> _batch = new("--batch") { Description = "Images per training step", DefaultValueFactory = _ => 128, HelpName = "B" };
    private readonly Option<int?> _limit = new("--limit-train") { Description = "Use only the first N training images", HelpName = "N" };
    private readonly Option<int?> _limitTest = new("--limit-test") { Description = "Evaluate on only the first N test images (quick runs)", HelpName = "N" };
    private readonly Option<string?> _sweep = new("--sweep") { Description = "Run a whole table and write it as markdown to FILE: efqat, the PTQ / EfQAT modes × fractions / full QAT table at W4A8 and W2A8; maqd, float+BN, float+LBN and MaQD (3,15) (15,15) (3,3) (255,255)", HelpName = "FILE" };
    private readonly Option<string?> _settings = new("--sweep-settings") { Description = "maqd --sweep: columns as B[:IMAGES[:EPOCHS]],... (default 8,128 with --limit-train and --epochs)", HelpName = "SPEC" };
    private readonly Option<int> _wstates = new("--wstates") { Description = "maqd: weight states N, odd 3..255 (3 = ternary)", DefaultValueFactory = _ => 3, HelpName = "N" };
    private readonly Option<int> _astates = new("--astates") { Description = "maqd: activation states M, 2..256 (levels 0..M-1, a quantized ReLU)", DefaultValueFactory = _ => 15, HelpName = "M" };
    private readonly Option<int> _ends = new("--ends-wstates") { Description = "maqd: weight states of the first conv (on the pixels) and the classifier, odd 3..255; 255 = 8-bit codes as is usual for these layers; give the --wstates value to quantize every layer alike", DefaultValueFactory = _ => 255, HelpName = "N" };
    private readonly Option<string> _surrogate = new("--surrogate") { Description = "maqd: gradient of the round-clips: ste (1 inside the clip range) or smooth (derivative of a smooth staircase)", DefaultValueFactory = _ => "ste", HelpName = "ste|smooth" };
    private readonly Option<double> _width = new("--width") { Description = "maqd: smooth surrogate half-width per step, 0 < w <= 4", DefaultValueFactory = _ => 1.0, HelpName = "W" };
    private readonly Option<string> _norm = new("--norm") { Description = "maqd: normalization of the trained net: lbn (Layer-Batch Norm), bn, or none (mlp only)", DefaultValueFactory = _ => "lbn", HelpName = "lbn|bn|none" };
    private readonly Option<double> _freeze = new("--freeze-lbn") { Description = "maqd, LBN nets: train the last fraction of the steps with the norms frozen at recomputed running estimates (the map folding keeps); 0 = never", DefaultValueFactory = _ => 0.2, HelpName = "F" };
    private readonly Option<double?> _clip = new("--clip-grad") { Description = "maqd: largest gradient norm per step (rescaled above it; guards against the spikes that kill quantized layers); default 2·sqrt(128/B), the gradient noise growing as 1/sqrt(B); 0 = no clipping", HelpName = "G" };
    private readonly Option<bool> _float = new("--float") { Description = "maqd: train the float net with the same recipe and norm (no quantizers), the reference for a MaQD run" };
    private readonly Option<string?> _init = new("--init") { Description = "maqd: start from the float weights of a `matq train cnn` folder with the same architecture and norm (e.g. --norm lbn) instead of a fresh seeded init", HelpName = "DIR" };
    private readonly Option<bool> _fold = new("--fold") { Description = "maqd: fold the norms into the preceding layers after training and report the folded net's accuracy" };
    private readonly Option<int?> _holdout = new("--holdout") { Description = "maqd: hold out the last N training images and report accuracy on them instead of the test set (for choosing settings); training uses the images before them", HelpName = "N" };
    private readonly Option<int?> _threads = new("--threads") { Description = "CPU threads for torch (default: torch's own); on a shared CPU, 1 avoids oversubscription", HelpName = "N" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<string> _cudnnBenchmark = CommonOptions.CudnnBenchmark();
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options => [_model, _method, _wbits, _abits, _mode, _fraction, _epochs, _lr, _batch, _limit, _limitTest, _sweep, _settings, _wstates, _astates,
        _ends, _surrogate, _width, _norm, _freeze, _clip, _float, _init, _fold, _holdout, _threads, _device, _cudnnBenchmark, _seed];

    protected override VisionQuantizeSettings Read(ParseResult r) => new()
    {
        Model = r.GetValue(_model)!, Method = (r.GetValue(_method) ?? "").Trim().ToLowerInvariant(), WeightBits = r.GetValue(_wbits), ActBits = r.GetValue(_abits),
        Mode = r.GetValue(_mode)!, Fraction = r.GetValue(_fraction), Epochs = r.GetValue(_epochs), Lr = r.GetValue(_lr), Batch = r.GetValue(_batch),
        LimitTrain = r.GetValue(_limit), LimitTest = r.GetValue(_limitTest), Sweep = r.GetValue(_sweep), SweepSettings = r.GetValue(_settings),
        WeightStates = r.GetValue(_wstates), ActStates = r.GetValue(_astates), EndWeightStates = r.GetValue(_ends), Surrogate = r.GetValue(_surrogate)!,
        Width = r.GetValue(_width), Norm = r.GetValue(_norm)!, FreezeLbn = r.GetValue(_freeze), ClipGrad = r.GetValue(_clip), Float = r.GetValue(_float),
        Init = r.GetValue(_init), Fold = r.GetValue(_fold), Holdout = r.GetValue(_holdout), Threads = r.GetValue(_threads), Device = r.GetValue(_device)!,
        CudnnBenchmark = r.GetValue(_cudnnBenchmark)!, Seed = r.GetValue(_seed),
        Given = Options.Where(o => r.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToHashSet(StringComparer.Ordinal),
    };

    protected override int Run(VisionQuantizeSettings o)
    {
        var runtime = TorchRuntime.Configure(o.Device, o.Threads, o.CudnnBenchmark);
        return o.Method == "maqd" ? Maqd(o, runtime.Device) : Quantize(o, runtime.Device);
    }

    // ptq, qat, efqat of the trained net: one run, or the whole table with --sweep.
    private int Quantize(VisionQuantizeSettings o, torch.Device device)
    {
        var train = VisionQuantRecipe.TrainOptions(o.Epochs, o.Lr, o.Batch, o.Seed, o.LimitTrain, o.LimitTest);
        List<(string Label, VisionQuantRequest Request)> requests = o.Sweep is null
            ? [VisionQuantRecipe.Single(o.Method, o.WeightBits, o.ActBits, EfQatConfig.ParseMode(o.Mode), o.Fraction, train)]
            : [.. VisionQuantRecipe.SweepPlan(train)];
        var fm = _data().FashionMnist();
        var test = o.LimitTest is int n && n < fm.Test.Count ? fm.Test.Slice(0, n) : fm.Test;
        var floatNet = VisionNetIO.Load(o.Model);
        floatNet.to(device);
        double floatAcc = CnnTrainer.Accuracy(floatNet, test, device);
        floatNet.Dispose();
        Console.MarkupLine($"float model {Markup.Escape(o.Model)}: test accuracy {floatAcc:P2}");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("method", "W/A bits", "weights trained", "PTQ acc", "final acc", "train s");
        var md = new StringBuilder();
        md.AppendLine("| method | W/A bits | weights trained (last selection) | PTQ (start) acc | final test acc | train s |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var (label, req) in requests)
        {
            torch.manual_seed(o.Seed);
            using var net = VisionNetIO.Load(o.Model);
            net.to(device);
            VisionQuantOutcome r = null!;
            Console.Status().Start(Markup.Escape($"{label} W{req.Quant.WeightBits}A{req.Quant.ActBits}"), _ => r = VisionQuantization.Run(net, fm.Train, test, req, device));
            string trained = req.Method == "ptq" ? "-" : $"{r.SelectedWeightFraction:P1}";
            table.AddRow(Markup.Escape(label), $"W{req.Quant.WeightBits}A{req.Quant.ActBits}", trained, $"{r.PtqAccuracy:P2}", $"{r.Accuracy:P2}", $"{r.TrainSeconds:F1}");
            md.AppendLine($"| {label} | W{req.Quant.WeightBits}A{req.Quant.ActBits} | {trained} | {r.PtqAccuracy:P2} | {r.Accuracy:P2} | {r.TrainSeconds:F1} |");
            Console.MarkupLine($"[grey]{Markup.Escape(label)} W{req.Quant.WeightBits}A{req.Quant.ActBits}: {r.PtqAccuracy:P2} → {r.Accuracy:P2}[/]");
            foreach (var c in r.Codes) { c.Codes.Dispose(); c.Step.Dispose(); }
        }
        Console.Write(table);
        if (o.Sweep is { } path)
        {
            Matq.Formats.IO.AtomicFile.WriteAllText(path, $"Float model test accuracy: {floatAcc:P2}; QAT: {train.Epochs} epoch(s), AdamW lr {train.Lr}, batch {train.Batch}, device {device}\n\n{md}");
            Console.MarkupLine($"wrote {Markup.Escape(path)}");
        }
        return 0;
    }

    // maqd: one run, or the sweep (rows = MaqdTraining.SweepPlan, columns = --sweep-settings).
    private int Maqd(VisionQuantizeSettings o, torch.Device device)
    {
        var arch = VisionNetIO.ReadConfig(o.Model);
        var surrogate = MaqdConfig.ParseSurrogate(o.Surrogate);
        var jobs = o.MaqdJobs();
        var settings = o.MaqdSettings;
        bool fold = o.Sweep is not null || o.Fold;
        var fm = _data().FashionMnist();
        if (o.Holdout >= fm.Train.Count) throw new MatqException($"--holdout {o.Holdout} leaves no training images of the {fm.Train.Count}: lower it");
        var (trainSet, evalSet) = o.Holdout is int h ? (fm.Train.Slice(0, fm.Train.Count - h), fm.Train.Slice(fm.Train.Count - h, h)) : (fm.Train, fm.Test);
        string evalName = o.Holdout is int h1 ? $"held-out training images {fm.Train.Count - h1:N0}..{fm.Train.Count - 1:N0}" : "test images";
        Console.MarkupLine(Markup.Escape($"MaQD trains from scratch with the architecture of {o.Model} ({arch.Arch}, widths [{string.Join(", ", arch.Widths)}]); its weights are not used"));
        var outcomes = new List<MaqdRunOutcome>();
        Console.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                foreach (var (spec, t) in jobs)
                {
                    var task = ctx.AddTask(Markup.Escape($"{spec.Label} B={t.Batch}"), maxValue: 1);
                    var r = MaqdTraining.Run(arch, spec, trainSet, evalSet, t, device, fold,
                        (s, total, l) => { task.MaxValue = total; task.Value = s; task.Description = Markup.Escape($"{spec.Label} B={t.Batch} step {s}/{total} loss {l:F3}"); });
                    task.Value = task.MaxValue;
                    outcomes.Add(r);
                    if (o.Sweep is { } path)   // rewritten (atomically) after every run, so an interrupted sweep keeps the rows it finished
                        Matq.Formats.IO.AtomicFile.WriteAllText(path, MaqdRecipe.SweepMarkdown(outcomes, settings, jobs.Take(jobs.Count / settings.Count).Select(j => j.Spec).ToList(),
                            o.Model, device.ToString(), surrogate, o.Width, o.FreezeLbn, o.ClipGrad, o.EndWeightStates, evalName));
                    Console.MarkupLine(Markup.Escape($"{spec.Label} B={t.Batch}: {(o.Holdout is null ? "test" : "held-out")} accuracy {r.Accuracy:P2}" + (r.FoldedAccuracy is double f ? $", folded {f:P2}" : "") + $" ({r.Seconds:F1} s)"));
                }
            });
        var table = new Table().Border(TableBorder.Rounded).AddColumns("run", "surrogate", "batch", "steps", o.Holdout is null ? "test acc" : "held-out acc", "folded acc", "weight codes (inner / first+last)", "train s");
        foreach (var r in outcomes)
            table.AddRow(Markup.Escape(r.Spec.Label), r.Spec.Maqd is null ? "-" : MaqdRecipe.SurrogateText(r.Spec.Maqd), r.Batch.ToString(CultureInfo.InvariantCulture),
                r.Steps.ToString("N0", CultureInfo.InvariantCulture), $"{r.Accuracy:P2}", r.FoldedAccuracy is double f ? $"{f:P2}" : "-",
                MaqdRecipe.CodesText(r), $"{r.Seconds:F1}");
        Console.Write(table);
        if (o.Sweep is not null) Console.MarkupLine($"wrote {Markup.Escape(o.Sweep)}");
        return 0;
    }
}

/// <summary>What `quantize-cnn` was asked: every option's value and which were given. <see cref="Validate"/> checks
/// them all before any data or torch is touched: one line per mistake, naming the option and what to use.</summary>
public sealed record VisionQuantizeSettings : IVerbSettings
{
    public static IReadOnlyList<string> Methods { get; } = ["ptq", "qat", "efqat", "maqd"];

    public required string Model { get; init; }
    public required string Method { get; init; }
    public int WeightBits { get; init; } = 4;
    public int ActBits { get; init; } = 8;
    public string Mode { get; init; } = "cwpl";
    public double Fraction { get; init; } = 0.25;
    public int? Epochs { get; init; }
    public double? Lr { get; init; }
    public int Batch { get; init; } = 128;
    public int? LimitTrain { get; init; }
    public int? LimitTest { get; init; }
    public string? Sweep { get; init; }
    public string? SweepSettings { get; init; }
    public int WeightStates { get; init; } = 3;
    public int ActStates { get; init; } = 15;
    public int EndWeightStates { get; init; } = 255;
    public string Surrogate { get; init; } = "ste";
    public double Width { get; init; } = 1.0;
    public string Norm { get; init; } = "lbn";
    public double FreezeLbn { get; init; } = 0.2;
    public double? ClipGrad { get; init; }
    public bool Float { get; init; }
    public string? Init { get; init; }
    public bool Fold { get; init; }
    public int? Holdout { get; init; }
    public int? Threads { get; init; }
    public string Device { get; init; } = "auto";
    public string? CudnnBenchmark { get; init; }
    public int Seed { get; init; } = 1234;

    /// <summary>Names of the options given on the command line (the rest hold their defaults).</summary>
    public IReadOnlySet<string> Given { get; init; } = new HashSet<string>();

    // Which methods read each method-specific option; any other method given it is a mistake.
    private static readonly (string[] Options, string[] Methods)[] AppliesTo =
    [
        (["--wstates", "--astates", "--ends-wstates", "--surrogate", "--width", "--norm", "--freeze-lbn", "--clip-grad", "--float", "--init", "--fold", "--sweep-settings", "--holdout"], ["maqd"]),
        (["--mode", "--fraction"], ["efqat"]),
        (["--abits"], ["ptq", "qat", "efqat"]),
        (["--epochs", "--lr", "--batch"], ["qat", "efqat", "maqd"]),
        (["--sweep"], ["efqat", "maqd"]),
    ];

    // maqd --sweep runs a fixed table: these options would set what the table fixes.
    private static readonly string[] FixedByMaqdSweep = ["--wstates", "--astates", "--norm", "--batch", "--float", "--init"];
    private static readonly string[] FixedByEfQatSweep = ["--mode", "--fraction", "--wbits", "--abits"];
    private static readonly string[] Quantizers = ["--wstates", "--astates", "--ends-wstates", "--surrogate", "--width"];

    private bool Has(string option) => Given.Contains(option);

    public void Validate()
    {
        if (!Methods.Contains(Method))
            throw new MatqException($"--method '{SafeText.Escape(Method)}' is not supported: use {string.Join(", ", Methods)} (language models: `matq quantize`)");
        if (Method == "maqd" && Has("--wbits"))
            throw new MatqException("--wbits (--bits) applies to ptq, qat and efqat; maqd counts states: use --wstates N and --astates M");
        foreach (var (options, methods) in AppliesTo)
            if (!methods.Contains(Method) && options.FirstOrDefault(Has) is { } wrong)
                throw new MatqException($"{wrong} applies to --method {string.Join(" or ", methods)}, not to {Method}");
        TorchRuntime.Check(Device, Threads, CudnnBenchmark);
        if (Sweep is not null) Matq.Formats.IO.OutputPaths.CheckFile(Sweep, "--sweep", Model);
        if (Method == "maqd") ValidateMaqd();
        else
        {
            if (Sweep is not null && FixedByEfQatSweep.FirstOrDefault(Has) is { } f)
                throw new MatqException($"{f} does not apply to --sweep (it runs the fixed table: every mode and fraction at W4A8 and W2A8, PTQ at W8/4/2)");
            Train.Validate();
            VisionQuantRecipe.Single(Method, WeightBits, ActBits, EfQatConfig.ParseMode(Mode), Fraction, Train);
        }
        RequireVisionFolder();
        if (Method == "maqd") ValidateMaqdArchitecture(VisionNetIO.ReadConfig(Model));
    }

    private CnnTrainOptions Train => VisionQuantRecipe.TrainOptions(Epochs, Lr, Batch, Seed, LimitTrain, LimitTest);

    private void RequireVisionFolder()
    {
        if (Directory.Exists(Model) && !VisionNetIO.IsVisionFolder(Model))
            throw new MatqException($"--method {Method} needs a vision model folder written by `matq train cnn` (config.json + model.safetensors with conv/linear layers); "
                + $"{Model} is not one{(File.Exists(Path.Combine(Model, "config.json")) ? " (a language model: quantize it with `matq quantize`)" : "")}");
        VisionNetIO.ReadConfig(Model);   // a missing folder or config: its own line
    }

    /// <summary>The sweep's columns, or the one setting of a single run.</summary>
    public IReadOnlyList<MaqdSweepSetting> MaqdSettings => Sweep is null
        ? [new MaqdSweepSetting(Batch, LimitTrain, Epochs ?? MaqdRecipe.DefaultEpochs)]
        : MaqdRecipe.ParseSettings(SweepSettings, LimitTrain, Epochs ?? MaqdRecipe.DefaultEpochs);

    /// <summary>The runs in order (setting-major for a sweep), each with its training options.</summary>
    public IReadOnlyList<(MaqdRunSpec Spec, CnnTrainOptions Train)> MaqdJobs()
    {
        var surrogate = MaqdConfig.ParseSurrogate(Surrogate);
        CnnTrainOptions TrainOf(MaqdSweepSetting s) => MaqdRecipe.TrainOptions(s.Batch, s.Images, s.Epochs, Lr, ClipGrad, FreezeLbn, Seed, LimitTest);
        if (Sweep is not null)
            return MaqdSettings.SelectMany(s => MaqdTraining.SweepPlan(surrogate, Width, EndWeightStates).Select(spec => (spec, TrainOf(s)))).ToList();
        var cfg = new MaqdConfig(WeightStates, ActStates, surrogate, Width, EndWeightStates);
        string from = Init is null ? "" : $", from {Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(Init)))}";
        var spec1 = Float ? new MaqdRunSpec($"float + {Norm.ToUpperInvariant()}{from}", Norm, null, Init: Init)
            : new MaqdRunSpec($"{cfg.Label} + {Norm.ToUpperInvariant()}, {cfg.LayersText}{from}", Norm, cfg, Init: Init);
        return [(spec1, TrainOf(MaqdSettings[0]))];
    }

    private void ValidateMaqd()
    {
        var surrogate = MaqdConfig.ParseSurrogate(Surrogate);
        if (Sweep is null)
        {
            if (Has("--sweep-settings")) throw new MatqException("--sweep-settings needs --sweep FILE");
            if (Float && Quantizers.FirstOrDefault(Has) is { } q)
                throw new MatqException($"{q} sets the quantizers, which --float leaves out: drop one of them");
            _ = new MaqdConfig(WeightStates, ActStates, surrogate, Width, EndWeightStates);
        }
        else
        {
            if (FixedByMaqdSweep.FirstOrDefault(Has) is { } f)
                throw new MatqException($"{f} does not apply to --sweep (it runs the fixed table; columns come from --sweep-settings)");
            _ = MaqdTraining.SweepPlan(surrogate, Width, EndWeightStates);
        }
        if (ClipGrad < 0) throw new MatqException($"--clip-grad {ClipGrad} is invalid: allowed a positive norm (e.g. 2) or 0 for no clipping");
        var settings = MaqdSettings;
        foreach (var s in settings) MaqdRecipe.TrainOptions(s.Batch, s.Images, s.Epochs, Lr, ClipGrad, FreezeLbn, Seed, LimitTest).Validate();
        if (Holdout is int h)
        {
            if (h < 1 || h > 30_000) throw new MatqException($"--holdout {h} is out of range: allowed 1..30000 of the 60,000 training images (e.g. 10000)");
            if (settings.Select(s => s.Images ?? 0).Max() is int most && most + h > 60_000)
                throw new MatqException($"--holdout {h} leaves {60_000 - h} training images, fewer than the {most} asked for: lower --limit-train or the sweep's image counts");
        }
    }

    // The checks that need the folder's architecture: the norm it can take, folding, --init's match, the sweep's resnet.
    private void ValidateMaqdArchitecture(VisionNetConfig arch)
    {
        if (Sweep is not null)
        {
            if (arch.Arch != "resnet") throw new MatqException($"--sweep compares BN and LBN on the resnet; {Model} is an {arch.Arch}");
            return;
        }
        arch.WithNorm(Norm);   // validates the norm for this architecture
        if (Fold) MaqdTraining.CheckFoldable(arch, Norm);
        if (Init is not null) MaqdTraining.CheckInit(arch.WithNorm(Norm), Init);
    }
}
