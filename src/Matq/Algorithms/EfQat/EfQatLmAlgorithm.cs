// Contract: the pipeline's "efqat" method for language models (Ashkboos et al. 2024): start from a PTQ model (RTN
// min-max or Athena codes), then QAT at the run's bits on calibration windows in which only the most important rows
// (output channels; importance = mean |W|, recomputed every `refresh` steps) of the quantized linears get weight
// gradients; the frozen rows' latent weights stay bit-identical. Trained besides the selected rows: their α and z,
// and (train-norms=true) every RMSNorm weight. A frozen row's α and z get no gradient: that gradient needs the row's
// full weight gradient, the very compute EfQAT skips (the backward computes weight gradients for selected rows only,
// via PartialWeightGrad.SplitLinear). fraction = 1 is full QAT; fraction = 0 trains the norms only.
using System.Globalization;
using System.Text.Json.Nodes;
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Models;
using Matq.Quantization.Pipeline;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.EfQat;

public sealed class EfQatLmAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "efqat";
    public const string ModeKey = "mode", FractionKey = "fraction", RefreshKey = "refresh", StartKey = "start", TrainNormsKey = "train-norms";

    private static readonly string[] QatKeys =
    [
        MatQuantConfig.StepsKey, MatQuantConfig.BatchKey, MatQuantConfig.LrKey, MatQuantConfig.ScaleLrKey, MatQuantConfig.WarmupKey,
        MatQuantConfig.ClipKey, MatQuantConfig.DistillKey, MatQuantConfig.CheckpointKey, MatQuantConfig.CheckpointEveryKey, MatQuantConfig.GridKey,
    ];

    /// <summary>Registry row "efqat": its own options, the QAT budget options shared with MatQuant, and Athena's (start=athena).</summary>
    public static AlgorithmRegistration Registration { get; } = new(MethodName,
        "EfQAT: QAT from a PTQ start that updates only the most important output channels (needs calibration text)",
        NeedsCalibration: true,
        [
            new(ModeKey, "selection: cwpl (channels per layer), cwpn (channels per network), lwpn (layers per network)", "cwpl"),
            new(FractionKey, "fraction of channels/layers whose weights train, 0..1 (0 = norms only, 1 = full QAT)", "0.25"),
            new(RefreshKey, "steps between importance refreshes", "50"),
            new(StartKey, "PTQ start: rtn (min-max) or athena", "rtn"),
            new(TrainNormsKey, "true: RMSNorm weights train too", "true"),
            .. MatQuantConfig.Options.Where(o => QatKeys.Contains(o.Key)),
            .. AthenaAlgorithm.AthenaRegistration.Options,
        ],
        config => new EfQatLmAlgorithm(config));

    private readonly AthenaAlgorithm? _athena;

    public EfQatLmAlgorithm(QuantizationConfig config) : base(config)
    {
        Mode = EfQatConfig.ParseMode(config.Option(ModeKey));
        string fractionText = config.Option(FractionKey);
        if (!double.TryParse(fractionText, NumberStyles.Float, CultureInfo.InvariantCulture, out var fraction))
            throw new MatqException($"efqat {FractionKey} = '{fractionText}' is not a number: give 0..1, e.g. fraction=0.25");
        string refreshText = config.Option(RefreshKey);
        if (!int.TryParse(refreshText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var refresh))
            throw new MatqException($"efqat {RefreshKey} = '{refreshText}' is not an integer");
        // EfQatConfig validates fraction and refresh (activation bits do not apply to the LM: weights only).
        Selection = new EfQatConfig(Mode, fraction, weightBits: Math.Max(2, config.Bits), actBits: 8, refreshEvery: refresh);
        Start = config.Option(StartKey).Trim().ToLowerInvariant() switch
        {
            "rtn" => "rtn",
            "athena" => "athena",
            var other => throw new MatqException($"efqat {StartKey} = '{other}' is not known: use rtn or athena"),
        };
        TrainNorms = config.Option(TrainNormsKey).Trim().ToLowerInvariant() switch
        {
            "true" or "1" or "yes" or "on" => true,
            "false" or "0" or "no" or "off" => false,
            var other => throw new MatqException($"efqat {TrainNormsKey} = '{other}' is not true or false"),
        };
        // The QAT budget is parsed by MatQuant's config with R = {bits}: a single-width QAT at the run's bits.
        var qatOptions = config.Options.Where(kv => QatKeys.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        qatOptions[MatQuantConfig.BitsKey] = config.Bits.ToString(CultureInfo.InvariantCulture);
        Qat = MatQuantConfig.FromOptions(new QuantizationConfig(MatQuantAlgorithm.MethodName, config.Bits, config.GroupSize, config.Symmetric,
            config.IncludeLmHead, qatOptions, config.OnlyLayers, config.Layers));
        if (Start == "athena")
        {
            var athenaKeys = AthenaAlgorithm.AthenaRegistration.Options.Select(o => o.Key).ToHashSet();
            var athenaOptions = config.Options.Where(kv => athenaKeys.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
            if (athenaOptions.TryGetValue(AthenaAlgorithm.ActOrderKey, out var ao) && ao.Trim().ToLowerInvariant() is "true" or "1" or "yes" or "on")
                throw new MatqException("efqat start=athena needs act-order=false: QAT trains contiguous column groups");
            _athena = new AthenaAlgorithm(new QuantizationConfig(AthenaAlgorithm.AthenaName, config.Bits, config.GroupSize, config.Symmetric,
                config.IncludeLmHead, athenaOptions, config.OnlyLayers, config.Layers), AthenaMode.Athena);
        }
    }

    public EfQatMode Mode { get; }
    public EfQatConfig Selection { get; }
    public string Start { get; }
    public bool TrainNorms { get; }
    public MatQuantConfig Qat { get; }

    /// <summary>Called with each logged QAT step (progress display, tests).</summary>
    public Action<MatQuantStep>? StepLog { get; init; }

    /// <summary>After training: the fraction of quantized weights that the last selection trained.</summary>
    public double SelectedWeightFraction { get; private set; } = double.NaN;

    public override string Name => MethodName;

    public override JsonObject DescribeSettings() => new()
    {
        ["mode"] = EfQatConfig.ShortName(Mode).ToLowerInvariant(),
        ["fraction"] = Selection.Fraction,
        ["refresh"] = Selection.RefreshEvery,
        ["start"] = Start,
        ["train_norms"] = TrainNorms,
        ["steps"] = Qat.Steps,
        ["batch"] = Qat.Batch,
        ["lr"] = Qat.Lr,
        ["scale_lr"] = Qat.ScaleLr,
        ["warmup"] = Qat.Warmup,
        ["clip"] = Qat.ClipNorm,
        ["grid"] = Qat.Grid == QatGrid.MinMax ? "minmax" : "learned",
        ["distill"] = Qat.Distill,
        ["selected_weight_fraction"] = double.IsNaN(SelectedWeightFraction) ? null : SelectedWeightFraction,
    };

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var model = context.Model;
        var data = context.RequireCalibration(Name);
        Func<SelectedLinear, NestedQuantLinear>? create = null;
        if (_athena is not null)
        {
            context.Report(new QuantizationEvent(QuantizationEventKind.Message, 0, 1, 0, 0, Message: "efqat: Athena PTQ start"));
            var start = _athena.Convert(context).ToDictionary(r => r.Name, StringComparer.Ordinal);
            create = s =>
            {
                var r = start[s.Name];
                using var scope = NewDisposeScope();
                var codes = tensor(r.Codes, new long[] { r.OutFeatures, r.InFeatures }, ScalarType.Byte);
                var scales = tensor(r.Scales, new long[] { r.OutFeatures, r.GroupCount });
                var zeros = tensor(r.Zeros, new long[] { r.OutFeatures, r.GroupCount });
                return new NestedQuantLinear(s.Name, codes, scales, zeros, r.GroupWidth, Config.Bits, s.Weight);
            };
        }
        var selected = LinearSelection.Select(model, Config);
        var norms = TrainNorms ? Norms(model) : [];
        EfQatAlgorithm? selector = null;
        var extras = new QatExtras(
            Create: create,
            AlsoTrain: norms,
            Attached: modules => selector = new EfQatAlgorithm(Selection, modules),
            BeforeStep: step => selector!.BeforeStep(step),
            AfterStep: () => selector!.AfterStep(),
            RunKey: $";efqat={Mode},{Selection.Fraction:R},{Selection.RefreshEvery},{Start},{TrainNorms}");
        var trained = MatQuantQat.Train(model, selected, Config, Qat, data, context.Device, context.Seed, s =>
        {
            StepLog?.Invoke(s);
            context.Report(new QuantizationEvent(QuantizationEventKind.Message, 0, 1, 0, selected.Count,
                Message: $"efqat step {s.Step}/{Qat.Steps}, loss {s.Loss:F4}"));
        }, context.Cancellation, extras);
        SelectedWeightFraction = selector?.SelectedWeightFraction() ?? double.NaN;
        selector?.Detach();
        return MatQuantQat.Export(trained, selected, Config, context);
    }

    private static List<Parameter> Norms(LlamaForCausalLM model) =>
        model.named_parameters().Where(p => p.name.EndsWith("norm.weight", StringComparison.Ordinal)).Select(p => p.parameter).ToList();
}
