// Contract: the pipeline's "matquant" method: wraps a base (qat | athena | omniquant) so its loss is Σ_{r∈R} λ_r·loss(slice r) and
// emits ONE set of c-bit master codes per linear (artifact trained_bits = R), servable at any r ≤ c by the loader.
using System.Text.Json.Nodes;
using Matq.Algorithms.Athena;
using Matq.Algorithms.OmniQuant;
using Matq.Calibration;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Algorithms.MatQuant;

public sealed class MatQuantAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "matquant";

    /// <summary>Registry row "matquant": its own options plus the Athena solver's (base=athena) and OmniQuant's (base=omniquant).</summary>
    public static AlgorithmRegistration Registration { get; } = new(MethodName,
        "MatQuant: one c-bit artifact whose nested int4/int2 slices are trained jointly (base=qat|athena|omniquant; needs calibration text)",
        NeedsCalibration: true,
        [.. MatQuantConfig.Options, .. AthenaAlgorithm.AthenaRegistration.Options, .. OmniQuantConfig.Options],
        config => new MatQuantAlgorithm(config));

    private readonly AthenaAlgorithm _athena;

    public MatQuantAlgorithm(QuantizationConfig config) : base(config)
    {
        MatQuant = MatQuantConfig.FromOptions(config);
        // The Athena options (percdamp, block, sweeps, ...) are parsed by Athena's own algorithm from a config of its method.
        var athenaKeys = AthenaAlgorithm.AthenaRegistration.Options.Select(o => o.Key).ToHashSet();
        var athenaOptions = config.Options.Where(kv => athenaKeys.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        _athena = new AthenaAlgorithm(new QuantizationConfig(AthenaAlgorithm.AthenaName, config.Bits, config.GroupSize, config.Symmetric,
            config.IncludeLmHead, athenaOptions, config.OnlyLayers, config.Layers), AthenaMode.Athena);
        Omni = OmniQuantConfig.FromOptions(config);
    }

    public MatQuantConfig MatQuant { get; }

    /// <summary>The OmniQuant budget (used by base=omniquant).</summary>
    public OmniQuantConfig Omni { get; }

    /// <summary>Called with each block epoch of base=omniquant (tests, logs).</summary>
    public Action<OmniQuantEpoch>? EpochLog { get; init; }

    /// <summary>Called with each logged QAT step (progress display, tests).</summary>
    public Action<MatQuantStep>? StepLog { get; init; }

    public override string Name => MethodName;

    public override IReadOnlyList<int> TrainedBits => MatQuant.Bits;

    /// <summary>The athena and omniquant bases walk the model block by block and resume; qat trains the whole model.</summary>
    public override bool SupportsResume => MatQuant.Base != MatQuantBase.Qat;

    public override bool Streams => MatQuant.Base != MatQuantBase.Qat;

    public override JsonObject DescribeSettings()
    {
        var o = new JsonObject
        {
            ["base"] = MatQuant.Base.ToString().ToLowerInvariant(),
            ["bits"] = new JsonArray(MatQuant.Bits.Select(b => (JsonNode?)JsonValue.Create(b)).ToArray()),
            ["lambda"] = new JsonArray(MatQuant.Lambda.Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
            ["extra_precision"] = MatQuant.ExtraPrecision,
        };
        if (MatQuant.Base == MatQuantBase.Qat)
        {
            o["codistill"] = string.Join(",", MatQuant.Codistill);
            o["codistill_weight"] = MatQuant.CodistillWeight;
            o["distill"] = MatQuant.Distill;
            o["steps"] = MatQuant.Steps;
            o["batch"] = MatQuant.Batch;
            o["lr"] = MatQuant.Lr;
            o["scale_lr"] = MatQuant.ScaleLr;
            o["warmup"] = MatQuant.Warmup;
            o["clip"] = MatQuant.ClipNorm;
            o["grid"] = MatQuant.Grid == QatGrid.MinMax ? "minmax" : "learned";
        }
        else if (MatQuant.Base == MatQuantBase.OmniQuant)
        {
            o["codistill"] = string.Join(",", MatQuant.Codistill);
            o["codistill_weight"] = MatQuant.CodistillWeight;
            o["omniquant"] = OmniQuantAlgorithm.Describe(Omni, Omni.MaxFor(MatQuant.Bits, MatQuant.MasterBits));
        }
        else o["athena"] = _athena.DescribeSettings();
        return o;
    }

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return MatQuant.Base switch
        {
            MatQuantBase.Qat => ConvertQat(context),
            MatQuantBase.OmniQuant => OmniQuantBlockwise.Run(context.Model, LinearSelection.Select(context.Model, Config), Config, MatQuant, Omni,
                context.RequireCalibration(Name), context.Seed, context.Report, EpochLog, context.Cancellation, context.Checkpoint, context.Hold),
            _ => ConvertAthena(context),
        };
    }

    private IReadOnlyList<QuantizedLinearResult> ConvertQat(QuantizationContext context)
    {
        var model = context.Model;
        var selected = LinearSelection.Select(model, Config);
        var data = context.RequireCalibration(Name);
        int blocks = model.Config.NumLayers + (selected.Any(s => s.Name == "lm_head") ? 1 : 0);
        context.Report(new QuantizationEvent(QuantizationEventKind.Started, 0, blocks, 0, selected.Count));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var trained = MatQuantQat.Train(model, selected, Config, MatQuant, data, context.Device, context.Seed, s =>
        {
            StepLog?.Invoke(s);
            context.Report(new QuantizationEvent(QuantizationEventKind.Message, 0, blocks, 0, selected.Count,
                Message: $"qat step {s.Step}/{MatQuant.Steps}, loss {s.Loss:F4}"));
        }, context.Cancellation);
        return MatQuantQat.Export(trained, selected, Config, context, sw.Elapsed.TotalSeconds);
    }

    // Sequential calibration as in Athena; the weight installed for the next blocks is the λ-weighted mean of the
    // slices Σ λ_r ŵ_r / Σ λ: the single weight closest (in Σ λ_r‖·‖²) to every served precision, so later blocks are
    // calibrated on inputs between those of the widths they will be served at.
    private IReadOnlyList<QuantizedLinearResult> ConvertAthena(QuantizationContext context) =>
        SequentialQuantization.Run(context, Config, Name, _athena.CalibrationBatch, linear =>
        {
            var w = linear.Weight.to(context.Device);
            using var r = MatQuantAthena.Quantize(linear.Name, w, linear.Hessian, _athena.Solver, MatQuant);
            int cols = checked((int)r.Codes.shape[1]);
            Tensor mean = zeros_like(w);
            for (int i = 0; i < MatQuant.Bits.Count; i++)
            {
                int b = MatQuant.Bits[i];
                var sliced = MatQuant.ExtraPrecision ? Matq.Quantization.TensorNestedSlice.SliceExtra(r.Codes, Config.Bits, b).Codes
                    : Matq.Quantization.TensorNestedSlice.Slice(r.Codes, Config.Bits, b);
                mean.add_(Matq.Quantization.TensorNestedSlice.Dequantize(sliced, r.Scales, r.Zeros, r.GroupSize, Config.Bits, b).mul(MatQuant.Lambda[i]));
            }
            mean.div_(MatQuant.LambdaSum);
            double mse = (w - Matq.Quantization.TensorAffineQuantizer.Dequantize(r.Codes, r.Scales, r.Zeros, r.GroupSize)).square().mean().item<float>();
            var report = new LayerReport(linear.Name, checked((int)r.Codes.shape[0]), cols, Config.Bits, mse, r.AthenaSlicedError, r.NestedError, r.Seconds);
            return (QuantizedLinearResult.FromTensors(linear.Name, r.Codes, r.Scales, r.Zeros, Config.StoredGroupSize(cols), null, report), mean);
        });
}
