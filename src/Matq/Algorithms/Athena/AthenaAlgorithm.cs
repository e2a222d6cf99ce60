// Contract: the pipeline's "gptq" and "athena" methods: sequential calibration over the selected linears, each solved
// by AthenaSolver (GPTQ-exact or Athena mode) and emitted as a QuantizedLinearResult with Hessian errors before/after.
using System.Text.Json.Nodes;
using Matq.Calibration;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

public sealed class AthenaAlgorithm : QuantizationAlgorithm
{
    public const string GptqName = "gptq", AthenaName = "athena";

    /// <summary>Registry row "gptq": GPTQ-exact (Frantar et al. 2022).</summary>
    public static AlgorithmRegistration<AthenaConfig> GptqRegistration { get; } = new(GptqName,
        "GPTQ: second-order error-feedback rounding with the calibration Hessian, block by block (needs calibration)",
        NeedsCalibration: true, AthenaConfig.Options(sweeps: false), o => AthenaConfig.Parse(o, AthenaMode.GptqExact),
        (config, solver) => new AthenaAlgorithm(config, solver));

    /// <summary>Registry row "athena": GPTQ's pass plus Hessian-weighted group refit sweeps (never worse per layer).</summary>
    public static AlgorithmRegistration<AthenaConfig> AthenaRegistration { get; } = new(AthenaName,
        "Athena: GPTQ plus Hessian-weighted refits of group scales/zeros and re-quantization sweeps (needs calibration)",
        NeedsCalibration: true, AthenaConfig.Options(sweeps: true), o => AthenaConfig.Parse(o, AthenaMode.Athena),
        (config, solver) => new AthenaAlgorithm(config, solver));

    /// <summary>The method of <paramref name="mode"/> with its default options (tests, code).</summary>
    public AthenaAlgorithm(QuantizationConfig config, AthenaMode mode)
        : this(config, (mode == AthenaMode.GptqExact ? GptqRegistration : AthenaRegistration).Parse(new OptionReader(config))) { }

    public AthenaAlgorithm(QuantizationConfig config, AthenaConfig solver) : base(config)
    {
        Solver = solver ?? throw new ArgumentNullException(nameof(solver));
        if (!solver.Spec.Equals(config.Spec))
            throw new ArgumentException($"the solver's spec ({solver.Spec}) differs from the run's ({config.Spec})", nameof(solver));
    }

    public AthenaConfig Solver { get; }
    public int CalibrationBatch => Solver.CalibrationBatch;

    public override string Name => Solver.Mode == AthenaMode.GptqExact ? GptqName : AthenaName;

    public override JsonObject DescribeSettings() => Describe(Solver);

    /// <summary>The solver's settings as recorded in the artifact's algorithm_config (also matquant's base=athena).</summary>
    public static JsonObject Describe(AthenaConfig solver)
    {
        ArgumentNullException.ThrowIfNull(solver);
        return new JsonObject
        {
            ["mode"] = solver.Mode == AthenaMode.GptqExact ? "gptq-exact" : "athena",
            ["percdamp"] = solver.PercDamp,
            ["block"] = solver.BlockSize,
            ["act_order"] = solver.ActOrder ? "static-groups" : "off",
            ["sweeps"] = solver.Sweeps,
            ["damp_retries"] = solver.MaxDampRetries,
            ["row_block"] = solver.RowBlockSize,
            ["group_grid"] = solver.GroupGrid == GroupGrid.BlockStart ? AthenaConfig.BlockStartGrid : AthenaConfig.UpdatedGrid,
            ["calib_batch"] = solver.CalibrationBatch,
        };
    }

    public override bool SupportsResume => true;

    public override bool Streams => true;

    public override bool LayerParallel => true;

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return SequentialQuantization.Run(context, Name, CalibrationBatch, linear =>
        {
            using var solved = AthenaSolver.Quantize(linear.Name, linear.Weight.to(context.Device), linear.Hessian, Solver);
            var r = solved.Report;
            var w = solved.Weights;
            int cols = checked((int)w.Codes.shape[1]);
            var report = new LayerReport(linear.Name, checked((int)w.Codes.shape[0]), cols, Config.Bits, r.WeightMse, r.RtnError, r.FinalError, r.Seconds);
            var result = QuantizedLinearResult.FromTensors(linear.Name, w.Codes, w.Scales, w.Zeros, Config.StoredGroupSize(cols), null, report);
            // the solve is done with the weight: ŵ is written over it in row chunks and installed from there, where a
            // separate ŵ would be one more full-size tensor at the peak (2.1 GB for a 128256-row head)
            return (result, solved.DequantizeInto(linear.Weight));
        });
    }
}
