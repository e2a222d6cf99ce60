// Contract: the pipeline's "gptq" and "athena" methods: sequential calibration over the selected linears, each solved
// by AthenaSolver (GPTQ-exact or Athena mode) and emitted as a QuantizedLinearResult with Hessian errors before/after.
using System.Globalization;
using System.Text.Json.Nodes;
using Matq.Calibration;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

public sealed class AthenaAlgorithm : QuantizationAlgorithm
{
    public const string GptqName = "gptq", AthenaName = "athena";
    public const string PercDampKey = "percdamp", BlockKey = "block", ActOrderKey = "act-order", SweepsKey = "sweeps",
        DampRetriesKey = "damp-retries", RowBlockKey = "row-block", CalibBatchKey = "calib-batch";

    private static AlgorithmOption[] CommonOptions(bool sweeps) =>
    [
        new(PercDampKey, "dampening λ = percdamp·mean(diag H) added to diag H, 0..1", "0.01"),
        new(BlockKey, "columns per lazy-batch block B", "128"),
        new(ActOrderKey, "true: columns by descending diag H (static groups, no stored perm)", "false"),
        .. (sweeps ? new[] { new AlgorithmOption(SweepsKey, "Hessian-weighted refit + re-quantize sweeps after the GPTQ pass, 0..16", "2") } : []),
        new(DampRetriesKey, "ten-fold dampening retries when H is not positive definite, 0..6", "3"),
        new(RowBlockKey, "rows of W solved together (0 = all; bounds memory, same result)", "0"),
        new(CalibBatchKey, "calibration windows per forward batch", "8"),
    ];

    /// <summary>Registry row "gptq": GPTQ-exact (Frantar et al. 2022).</summary>
    public static AlgorithmRegistration GptqRegistration { get; } = new(GptqName,
        "GPTQ: second-order error-feedback rounding with the calibration Hessian, block by block (needs calibration)",
        NeedsCalibration: true, CommonOptions(sweeps: false), config => new AthenaAlgorithm(config, AthenaMode.GptqExact));

    /// <summary>Registry row "athena": GPTQ's pass plus Hessian-weighted group refit sweeps (never worse per layer).</summary>
    public static AlgorithmRegistration AthenaRegistration { get; } = new(AthenaName,
        "Athena: GPTQ plus Hessian-weighted refits of group scales/zeros and re-quantization sweeps (needs calibration)",
        NeedsCalibration: true, CommonOptions(sweeps: true), config => new AthenaAlgorithm(config, AthenaMode.Athena));

    public AthenaAlgorithm(QuantizationConfig config, AthenaMode mode) : base(config)
    {
        Solver = new AthenaConfig(config.Spec, mode,
            percDamp: Number(config, PercDampKey),
            blockSize: Integer(config, BlockKey),
            actOrder: Flag(config, ActOrderKey),
            sweeps: mode == AthenaMode.Athena ? Integer(config, SweepsKey) : 0,
            maxDampRetries: Integer(config, DampRetriesKey),
            rowBlockSize: Integer(config, RowBlockKey));
        CalibrationBatch = Integer(config, CalibBatchKey);
        if (CalibrationBatch < 1 || CalibrationBatch > 4096)
            throw new MatqException($"{CalibBatchKey} = {CalibrationBatch} is out of range: allowed 1..4096 windows per batch");
    }

    public AthenaConfig Solver { get; }
    public int CalibrationBatch { get; }

    public override string Name => Solver.Mode == AthenaMode.GptqExact ? GptqName : AthenaName;

    public override JsonObject DescribeSettings() => new()
    {
        ["mode"] = Solver.Mode == AthenaMode.GptqExact ? "gptq-exact" : "athena",
        ["percdamp"] = Solver.PercDamp,
        ["block"] = Solver.BlockSize,
        ["act_order"] = Solver.ActOrder ? "static-groups" : "off",
        ["sweeps"] = Solver.Sweeps,
        ["damp_retries"] = Solver.MaxDampRetries,
        ["row_block"] = Solver.RowBlockSize,
        ["calib_batch"] = CalibrationBatch,
    };

    public override bool SupportsResume => true;

    public override bool Streams => true;

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return SequentialQuantization.Run(context, Config, Name, CalibrationBatch, linear =>
        {
            using var solved = AthenaSolver.Quantize(linear.Name, linear.Weight.to(context.Device), linear.Hessian, Solver);
            var r = solved.Report;
            var w = solved.Weights;
            int cols = checked((int)w.Codes.shape[1]);
            var report = new LayerReport(linear.Name, checked((int)w.Codes.shape[0]), cols, Config.Bits, r.WeightMse, r.RtnError, r.FinalError, r.Seconds);
            return (QuantizedLinearResult.FromTensors(linear.Name, w.Codes, w.Scales, w.Zeros, Config.StoredGroupSize(cols), null, report), solved.Dequantize());
        });
    }

    private static double Number(QuantizationConfig config, string key)
    {
        var text = config.Option(key);
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new MatqException($"{key} = '{text}' is not a number");
    }

    private static int Integer(QuantizationConfig config, string key)
    {
        var text = config.Option(key);
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new MatqException($"{key} = '{text}' is not an integer");
    }

    private static bool Flag(QuantizationConfig config, string key) => config.Option(key).Trim().ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" => false,
        var other => throw new MatqException($"{key} = '{other}' is not true or false"),
    };
}
