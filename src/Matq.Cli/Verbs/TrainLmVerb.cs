// `matq train lm`: trains a reference Llama-style LM from scratch on SOTU (a preset + overrides), with a live
// progress bar, Ctrl+C = stop cleanly with a checkpoint, and a closing table including ms/step and tokens/s.
using Matq.Training;

namespace Matq.Cli.Verbs;

/// <summary>The "lm" sub-verb of "train" (wire as: train → lm).</summary>
public sealed class TrainLmVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<TrainLmSettings>(console, "lm",
    "Train a reference language model from scratch on State of the Union addresses (HF folder + loss plot + model card)",
    "matq train lm --preset tiny --out models/tiny",
    "matq train lm --preset small --device cuda --max-minutes 15 --out models/small",
    "matq train lm --preset tiny --out models/tiny --resume")
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

    protected override IEnumerable<Option> Options => [_preset, _out, _steps, _batch, _lr, _device, _seed, _resume, _force, _maxMinutes, _evalEvery];

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
    }, result.GetValue(_force));

    protected override int Run(TrainLmSettings settings)
    {
        var request = settings.Request;

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        System.Console.CancelKeyPress += onCancel;
        LmRunReport report;
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
        PrintSummary(report);
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
public sealed record TrainLmSettings(LmRunRequest Request, bool Force) : IVerbSettings
{
    public void Validate()
    {
        LmPreset.Get(Request.Preset);
        Matq.Runtime.TorchRuntime.Check(Request.Device);
        var outFull = OutputPaths.CheckWorkFolder(Request.OutDir, "--out");
        if (!Request.Resume && !Force && Matq.Loading.LlamaSaver.HoldsModel(outFull))
            throw new MatqException($"--out {Request.OutDir} already holds a model: pass --force to train over it, --resume to continue its run, or give a new folder");
    }
}
