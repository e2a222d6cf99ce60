// `matq train cnn`: trains the small ResNet (or the MLP) on Fashion-MNIST with a cosine schedule, optional
// augmentation, per-epoch atomic checkpoints (resumed automatically) and writes model.safetensors + config.json + README.md.
using Matq.Models.Vision;
using Matq.Training.Vision;
using TorchSharp;

namespace Matq.Cli.Verbs;

/// <summary>The "cnn" sub-verb of "train" (wire as: train → cnn).</summary>
public sealed class TrainCnnVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<TrainCnnSettings>(console, "cnn",
    "Train a small ResNet (or MLP) classifier on Fashion-MNIST (safetensors + config.json + model card)",
    "matq train cnn --out models/cnn",
    "matq train cnn --arch mlp --optimizer adamw --lr 1e-3 --epochs 10 --out models/mlp",
    "matq train cnn --norm lbn --out models/cnn-lbn")
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _arch = new("--arch") { Description = "resnet (~175K params) or mlp (~235K params)", DefaultValueFactory = _ => "resnet", HelpName = "resnet|mlp" };
    private readonly Option<string?> _widths = new("--widths") { Description = "Stage channels (resnet, two blocks each) or hidden sizes (mlp); default resnet 16,32,64, mlp 256,128", HelpName = "W[,W...]" };
    private readonly Option<string?> _norm = new("--norm") { Description = "Normalization: bn (BatchNorm) or lbn (Layer-Batch Norm, per-sample statistics); mlp also none (its default)", HelpName = "bn|lbn|none" };
    private readonly Option<bool?> _ws = new("--weight-std") { Description = "Standardize each output channel's weights before use (default: on with lbn, off otherwise)", HelpName = "true|false" };
    private readonly Option<double> _freeze = new("--freeze-lbn") { Description = "lbn: train the last fraction of the steps with the norms frozen at recomputed running estimates; 0 = never", DefaultValueFactory = _ => 0.2, HelpName = "F" };
    private readonly Option<string> _out = CommonOptions.Out();
    private readonly Option<int> _epochs = new("--epochs") { Description = "Passes over the training set", DefaultValueFactory = _ => 15, HelpName = "N" };
    private readonly Option<int> _batch = new("--batch") { Description = "Images per step", DefaultValueFactory = _ => 128, HelpName = "B" };
    private readonly Option<double> _lr = new("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 0.1, HelpName = "LR" };
    private readonly Option<string> _optimizer = new("--optimizer") { Description = "sgd (momentum 0.9, nesterov) or adamw", DefaultValueFactory = _ => "sgd", HelpName = "sgd|adamw" };
    private readonly Option<bool> _noAugment = new("--no-augment") { Description = "Disable random shift (pad-2 crop) + horizontal flip" };
    private readonly Option<int?> _limit = new("--limit-train") { Description = "Use only the first N training images (quick runs)", HelpName = "N" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<string> _cudnnBenchmark = CommonOptions.CudnnBenchmark();
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options =>
    [
        _arch, _widths, _norm, _ws, _freeze, _out, _epochs, _batch, _lr, _optimizer, _noAugment, _limit, _device, _cudnnBenchmark, _seed,
    ];

    protected override TrainCnnSettings Read(ParseResult r) => new(r.GetValue(_arch)!, r.GetValue(_widths), r.GetValue(_norm), r.GetValue(_ws), r.GetValue(_freeze),
        r.GetValue(_out)!, r.GetValue(_epochs), r.GetValue(_batch), r.GetValue(_lr), r.GetValue(_optimizer)!, !r.GetValue(_noAugment), r.GetValue(_limit),
        r.GetValue(_device)!, r.GetValue(_cudnnBenchmark)!, r.GetValue(_seed));

    protected override int Run(TrainCnnSettings settings)
    {
        var (cfg, opts, outDir) = (settings.Config, settings.TrainOptions, settings.Out);
        var device = TorchRuntime.Configure(settings.Device, cudnnBenchmark: settings.CudnnBenchmark).Device;
        var fm = _data().FashionMnist();
        torch.manual_seed(opts.Seed);
        var net = VisionNet.Create(cfg);
        net.to(device);
        CnnTrainResult r = null!;
        Console.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: 1);
                r = CnnTrainer.Train(net, fm.Train, fm.Test, opts, device,
                    e => Console.MarkupLine($"[grey]epoch {e.Epoch}: loss {e.TrainLoss:F4} lr {e.Lr:0.0e+0} {e.Seconds:F1} s[/]"),
                    outDir, stepProgress: (s, t, l) => { task.MaxValue = t; task.Value = s; task.Description = $"step {s}/{t} loss {l:F3}"; });
            });
        VisionNetIO.Save(net, outDir, new Dictionary<string, string> { ["test_accuracy"] = r.TestAccuracy.ToString("F4") });
        WriteCard(Path.Combine(outDir, "README.md"), net, opts, r, device);
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("");
        table.AddRow("model folder", Markup.Escape(outDir));
        table.AddRow("parameters", $"{net.ParameterCount():N0}");
        table.AddRow("steps / seconds", $"{r.Steps:N0} / {r.Seconds:F1}");
        table.AddRow("test accuracy", $"{r.TestAccuracy:P2}");
        Console.Write(table);
        return 0;
    }

    private static void WriteCard(string path, VisionNet net, CnnTrainOptions o, CnnTrainResult r, torch.Device device)
    {
        var c = net.Config;
        string text = $"""
            # matq Fashion-MNIST {c.Arch}

            - architecture: {c.Arch}, widths [{string.Join(", ", c.Widths)}], blocks per stage {c.Blocks}, norm {c.Norm}{(c.StandardizeWeights ? " with weight standardization" : "")}; {net.ParameterCount():N0} parameters
            - data: Fashion-MNIST (Debian dataset-fashion-mnist), 60,000 train / 10,000 test, pixels /255
            - training: {o.Epochs} epochs, batch {o.Batch}, {o.Optimizer} lr {o.Lr} (warm-up {o.WarmupSteps} steps + cosine), weight decay {o.WeightDecay}, augmentation {(o.Augment ? "random shift ±2 px + horizontal flip" : "none")}, seed {o.Seed}
            - device: {device}; {r.Steps} steps in {r.Seconds:F1} s
            - **test accuracy: {r.TestAccuracy:P2}** (10,000 test images, eval-mode {(c.Norm == "lbn" ? $"Layer-Batch Norm, running estimates recomputed over 4,096 training images{(o.FreezeLbnFraction > 0 ? $" and frozen for the last {o.FreezeLbnFraction:P0} of the steps" : "")}" : c.Norm == "bn" ? "BatchNorm" : "net")})
            - files: model.safetensors (F32 state dict incl. the norms' running statistics), config.json; load with VisionNetIO.Load
            """;
        Matq.Formats.IO.AtomicFile.WriteAllText(path, text + "\n");
    }
}

/// <summary>What `train cnn` was asked: the option values as typed; <see cref="Validate"/> checks them all (one line per mistake).</summary>
public sealed record TrainCnnSettings(string Arch, string? Widths, string? Norm, bool? WeightStd, double FreezeLbn, string Out, int Epochs, int Batch,
    double Lr, string Optimizer, bool Augment, int? LimitTrain, string Device, string CudnnBenchmark, int Seed) : IVerbSettings
{
    /// <summary>The architecture: resnet or mlp with the given widths and norm.</summary>
    public VisionNetConfig Config
    {
        get
        {
            var cfg = Arch switch
            {
                "resnet" => VisionNetConfig.ResNetSmall,
                "mlp" => VisionNetConfig.MlpSmall,
                var a => throw new MatqException($"--arch '{a}' is not supported: allowed resnet, mlp"),
            };
            if (Widths is { } widths) cfg = new VisionNetConfig(cfg.Arch, CommonOptions.ParseWidths(widths), cfg.Blocks);
            if (Norm is not null || WeightStd is not null) cfg = cfg.WithNorm(Norm ?? cfg.Norm, WeightStd);
            return cfg;
        }
    }

    /// <summary>SGD (weight decay 5e-4) or AdamW (0.05), cosine after the default warm-up.</summary>
    public CnnTrainOptions TrainOptions => new()
    {
        Epochs = Epochs, Batch = Batch, Lr = Lr, Optimizer = Optimizer, Augment = Augment, Seed = Seed, LimitTrain = LimitTrain,
        FreezeLbnFraction = FreezeLbn, WeightDecay = Optimizer == "adamw" ? 0.05 : 5e-4,
    };

    public void Validate()
    {
        _ = Config;
        TrainOptions.Validate();
        Matq.Formats.IO.OutputPaths.CheckWorkFolder(Out, "--out");
        TorchRuntime.Check(Device, cudnnBenchmark: CudnnBenchmark);
    }
}
