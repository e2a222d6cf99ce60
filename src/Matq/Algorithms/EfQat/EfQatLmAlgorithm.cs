// Contract: the pipeline's "efqat" method for language models (Ashkboos et al. 2024): start from a PTQ model (RTN
// min-max or Athena codes), then QAT at the run's bits on calibration windows in which only the most important rows
// (output channels; importance = mean |W|, recomputed every `refresh` steps) of the quantized linears get weight
// gradients; the frozen rows' latent weights stay bit-identical. Trained besides the selected rows: their α and z,
// and (train-norms=true) every RMSNorm weight. A frozen row's α and z get no gradient: that gradient needs the row's
// full weight gradient, the very compute EfQAT skips (the backward computes weight gradients for selected rows only,
// via PartialWeightGrad.SplitLinear). fraction = 1 is full QAT; fraction = 0 trains the norms only.
using System.Text.Json.Nodes;
using Matq.Algorithms.Athena;
using Matq.Algorithms.Qat;
using Matq.Models;
using Matq.Quantization.Pipeline;
using TorchSharp.Modules;

namespace Matq.Algorithms.EfQat;

public sealed class EfQatLmAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "efqat";

    /// <summary>Registry row "efqat": its own options, the QAT budget shared with MatQuant, and Athena's (start=athena).</summary>
    public static AlgorithmRegistration<EfQatLmConfig> Registration { get; } = new(MethodName,
        "EfQAT: QAT from a PTQ start that updates only the most important output channels (needs calibration text)",
        NeedsCalibration: true, EfQatLmConfig.Options, EfQatLmConfig.Parse, (config, settings) => new EfQatLmAlgorithm(config, settings));

    public EfQatLmAlgorithm(QuantizationConfig config, EfQatLmConfig settings) : base(config)
    {
        Settings = settings ?? throw new ArgumentNullException(nameof(settings));
        if (settings.Objective.MasterBits != config.Bits)
            throw new ArgumentException($"the objective's bits {settings.Objective.MasterBits} ≠ the run's bits {config.Bits}", nameof(settings));
    }

    public EfQatLmConfig Settings { get; }
    public EfQatMode Mode => Settings.Selection.Mode;
    public EfQatConfig Selection => Settings.Selection;
    public bool TrainNorms => Settings.TrainNorms;
    public QatConfig Qat => Settings.Qat;

    /// <summary>Called with each logged QAT step (progress display, tests).</summary>
    public Action<QatStep>? StepLog { get; init; }

    /// <summary>After training: the fraction of quantized weights that the last selection trained.</summary>
    public double SelectedWeightFraction { get; private set; } = double.NaN;

    public override string Name => MethodName;

    public override JsonObject DescribeSettings() => new()
    {
        ["mode"] = EfQatConfig.ShortName(Mode).ToLowerInvariant(),
        ["fraction"] = Selection.Fraction,
        ["refresh"] = Selection.RefreshEvery,
        ["start"] = Settings.Start.ToString().ToLowerInvariant(),
        ["train_norms"] = TrainNorms,
        ["steps"] = Qat.Steps,
        ["batch"] = Qat.Batch,
        ["lr"] = Qat.Lr,
        ["scale_lr"] = Qat.ScaleLr,
        ["warmup"] = Qat.Warmup,
        ["clip"] = Qat.ClipNorm,
        ["grid"] = Qat.Grid == Matq.Algorithms.MatQuant.QatGrid.MinMax ? "minmax" : "learned",
        ["distill"] = Settings.Objective.Distill,
        ["selected_weight_fraction"] = double.IsNaN(SelectedWeightFraction) ? null : SelectedWeightFraction,
    };

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.RequireCalibration(Name);
        IReadOnlyDictionary<string, QuantizedLinearResult>? start = null;
        if (Settings.Athena is { } athena)
        {
            context.Progress.Message(0, "efqat: Athena PTQ start");
            start = new AthenaAlgorithm(Config, athena).Convert(context).ToDictionary(r => r.Name, StringComparer.Ordinal);
        }
        var objective = new EfQatLmObjective(Settings, TrainNorms ? Norms(context.Model) : [], start);
        var results = QatTrainer.Run(context, Config, Qat, objective, Name, StepLog);
        SelectedWeightFraction = objective.SelectedWeightFraction;
        return results;
    }

    private static List<Parameter> Norms(LlamaForCausalLM model) =>
        model.named_parameters().Where(p => p.name.EndsWith("norm.weight", StringComparison.Ordinal)).Select(p => p.parameter).ToList();
}
