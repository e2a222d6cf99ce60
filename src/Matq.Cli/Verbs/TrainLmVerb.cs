// `matq train lm`: trains a reference Llama-style LM from scratch on SOTU (a preset + overrides), with a live
// progress bar, Ctrl+C = stop cleanly with a checkpoint, and a closing table including ms/step and tokens/s.
using Matq.Training;

namespace Matq.Cli.Verbs;

/// <summary>The "lm" sub-verb of "train" (wire as: train → lm).</summary>
public sealed class TrainLmVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<TrainLmSettings>(console, "lm",
    "Train a reference language model from scratch on State of the Union addresses (HF folder + loss plot + model card)",
    "matq train lm --preset tiny --out models/tiny",
    "matq train lm --preset small --device cuda --max-minutes 15 --out models/small",
    "matq train lm --preset tiny --out models/tiny --resume",
    "MATQ_TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib matq train lm --preset small --device cuda --gpus 2 --out models/small-dp")
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());

    private readonly Option<string> _preset = new("--preset")
    {
        Description = "Recipe: " + string.Join("; ", LmPreset.All.Select(p => $"{p.Name} = {p.Summary}")),
        DefaultValueFactory = _ => "tiny",
        HelpName = string.Join("|", LmPreset.Names),
    };
    private readonly Option<string> _out = CommonOptions.Out();
    private readonly Option<int?> _steps = new("--steps") { Description = "Optimizer steps (default: the preset's)", HelpName = "N" };
    private readonly Option<int?> _batch = new("--batch") { Description = "Sequences per step (default: the preset's)", HelpName = "B" };
    private readonly Option<double?> _lr = new("--lr") { Description = "Peak learning rate (default: the preset's)", HelpName = "LR" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<bool> _force = new("--force") { Description = "Train into an --out folder that already holds a model (its files are replaced when the run ends)" };
    private readonly Option<bool> _resume = new("--resume") { Description = "Continue the unfinished run in --out from its last checkpoint (same settings required)" };
    private readonly Option<double?> _maxMinutes = new("--max-minutes")
    {
        Description = "Time budget for the training loop: the schedule is shortened to fit and the run stops with a final checkpoint and card",
        HelpName = "MIN",
    };
    private readonly Option<int?> _evalEvery = new("--eval-every") { Description = "Validation loss every N steps (default: the preset's; 0 = only at the end)", HelpName = "N" };
    private readonly Option<int> _gpus = new("--gpus")
    {
        Description = "Data-parallel over N ranks, one process per GPU (cuda:0..N-1, gradients averaged through NCCL; with --device cpu, N processes over loopback TCP): each rank trains on 1/N of every step's --batch rows",
        DefaultValueFactory = _ => 1,
        HelpName = "N",
    };

    protected override IEnumerable<Option> Options => [_preset, _out, _steps, _batch, _lr, _device, _seed, _resume, _force, _maxMinutes, _evalEvery, _gpus];

    protected override TrainLmSettings Read(ParseResult result) => new(new LmRunRequest(result.GetValue(_preset)!, result.GetValue(_out)!)
    {
        Steps = result.GetValue(_steps),
        Batch = result.GetValue(_batch),
        Lr = result.GetValue(_lr),
        Device = result.GetValue(_device) ?? "auto",
        Seed = result.GetValue(_seed),
        Resume = result.GetValue(_resume),
        MaxMinutes = result.GetValue(_maxMinutes),
        EvalEvery = result.GetValue(_evalEvery),
    }, result.GetValue(_force), result.GetValue(_gpus));

    protected override int Run(TrainLmSettings settings)
    {
        var request = settings.Request;
        if (settings.Gpus > 1 && !RankLauncher.IsRank)
            return RankLauncher.LaunchSelf(Console, settings.Gpus, Matq.Runtime.TorchRuntime.Configure(request.Device).Device,
                $"data-parallel; rank 0 writes {request.OutDir}");

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        System.Console.CancelKeyPress += onCancel;
        LmRunReport? report;
        try
        {
            report = Console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("preparing", autoStart: true, maxValue: 1);
                    void Log(string line) => Console.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
                    void Progress(TrainProgress p)
                    {
                        task.MaxValue = p.PlannedSteps;
                        task.Value = p.Step;
                        var val = p.ValidationLoss is double v ? $" val {v:F3}" : "";
                        var loss = double.IsNaN(p.TrainLoss) ? "-" : p.TrainLoss.ToString("F3");
                        task.Description = $"step {p.Step}/{p.PlannedSteps} loss {loss}{val} lr {p.Lr:0.0e+0} {p.TokensPerSecond:N0} tok/s";
                        if (p.ValidationLoss is double vl) Log($"step {p.Step}: validation loss {vl:F4} (ppl {Math.Exp(vl):F2})");
                        if (p.Note is not null) Log(p.Note);
                    }
                    return LmTrainingRun.Run(request, _data, Progress, Log, cts.Token);
                });
        }
        finally
        {
            System.Console.CancelKeyPress -= onCancel;
        }
        if (report is null) Console.MarkupLine("this rank's part is done; rank 0 writes the model");
        else PrintSummary(report);
        return 0;
    }

    private void PrintSummary(LmRunReport r)
    {
        var s = r.Training.State;
        var table = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn("");
        table.AddRow("model folder", Markup.Escape(r.OutDir));
        table.AddRow("parameters", $"{r.Parameters:N0}");
        table.AddRow("steps", $"{s.Step:N0} / {s.PlannedSteps:N0}" + (r.Training.StoppedByBudget ? " (time budget)" : r.Training.Cancelled ? " (interrupted; --resume continues)" : ""));
        table.AddRow("tokens seen", $"{s.TokensSeen:N0} ({(double)s.TokensSeen / Math.Max(1, r.TrainTokens):F2} epochs)");
        table.AddRow("wall time (training)", TimeSpan.FromSeconds(s.ElapsedSeconds).ToString(@"hh\:mm\:ss"));
        table.AddRow("device", Markup.Escape($"{r.DeviceText}, {r.Options.ComputeDtype}"));
        table.AddRow("validation loss / ppl / bits per byte", $"{r.Validation.MeanNll:F4} / {r.Validation.Perplexity:F3} / {r.Validation.BitsPerByte:F4}");
        Console.Write(table);
        if (r.Training.MeasuredSteps > 0)
            Console.MarkupLine($"throughput: [bold]{r.Training.MsPerStep:F2} ms/step, {r.Training.TokensPerSecond:N0} tokens/s[/] " +
                               $"(batch {r.Options.BatchSize} × {r.Options.ContextLength}, {r.Training.MeasuredSteps} steps after {r.Options.ThroughputWarmup} warm-up steps, validation and checkpoints excluded)");
    }
}

/// <summary>What `train lm` was asked: the run request and --force; <see cref="Validate"/> checks the preset, --device and
/// --out (one line per mistake) before any data is touched.</summary>
public sealed record TrainLmSettings(LmRunRequest Request, bool Force, int Gpus = 1) : IVerbSettings
{
    public void Validate()
    {
        var preset = LmPreset.Get(Request.Preset);
        if (Gpus < 1) throw new MatqException($"--gpus {Gpus}: give 1 or more");
        if (Gpus > 1)
        {
            int batch = Request.Batch ?? preset.Defaults.BatchSize;
            if (batch % Gpus != 0) throw new MatqException($"--gpus {Gpus}: the batch of {batch} rows does not split over {Gpus} ranks: give a --batch that is a multiple of {Gpus}");
            if (Request.MaxMinutes is not null) throw new MatqException("--max-minutes with --gpus is not implemented: the ranks would have to agree on the shortened schedule; give --steps instead");
        }
        Matq.Runtime.TorchRuntime.Check(Request.Device);
        var outFull = OutputPaths.CheckWorkFolder(Request.OutDir, "--out");
        if (!Request.Resume && !Force && Matq.Loading.LlamaSaver.HoldsModel(outFull))
            throw new MatqException($"--out {Request.OutDir} already holds a model: pass --force to train over it, --resume to continue its run, or give a new folder");
    }
}
