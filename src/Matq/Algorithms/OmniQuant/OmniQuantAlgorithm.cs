// Contract: the pipeline's "omniquant" method: OmniQuant's block-wise learnable weight clipping (LWC; LET is not
// implemented) at one bit-width c = --bits, i.e. OmniQuantBlockwise with the objective R = {c}, λ = {1}. It is the
// "trained independently at r bits with the same base and budget" baseline of the MatQuant tables.
using System.Text.Json.Nodes;
using Matq.Algorithms.MatQuant;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.OmniQuant;

public sealed class OmniQuantAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "omniquant";

    public static AlgorithmRegistration Registration { get; } = new(MethodName,
        "OmniQuant: block-wise learnable weight clipping (sigmoid-parameterized per-group clip of max/min) trained with Adam on block-output reconstruction; LET not implemented (needs calibration)",
        NeedsCalibration: true, OmniQuantConfig.Options, config => new OmniQuantAlgorithm(config));

    public OmniQuantAlgorithm(QuantizationConfig config) : base(config)
    {
        Omni = OmniQuantConfig.FromOptions(config);
        Objective = new MatQuantConfig([config.Bits], [1.0], config.Bits, MatQuantBase.OmniQuant);
    }

    public OmniQuantConfig Omni { get; }

    /// <summary>The single-width objective R = {c}.</summary>
    public MatQuantConfig Objective { get; }

    /// <summary>Called with each block epoch (tests, logs).</summary>
    public Action<OmniQuantEpoch>? EpochLog { get; init; }

    public override string Name => MethodName;

    public override bool SupportsResume => true;

    public override bool Streams => true;

    public override JsonObject DescribeSettings() => Describe(Omni, Omni.MaxFor(Objective.Bits, Objective.MasterBits));

    /// <summary>The budget as recorded in the artifact's algorithm_config (<paramref name="max"/>: the resolved bound of γ, β).</summary>
    public static JsonObject Describe(OmniQuantConfig omni, double max)
    {
        ArgumentNullException.ThrowIfNull(omni);
        return new JsonObject
        {
            ["epochs"] = omni.Epochs,
            ["lr"] = omni.Lr,
            ["batch"] = omni.Batch,
            ["init"] = omni.Init,
            ["samples"] = omni.Samples,
            ["max"] = max,
            ["let"] = false,
            ["target"] = "float model block output on the float path; inputs from the quantized path",
        };
    }

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return OmniQuantBlockwise.Run(context.Model, LinearSelection.Select(context.Model, Config), Config, Objective, Omni,
            context.RequireCalibration(Name), context.Seed, context.Report, EpochLog, context.Cancellation, context.Checkpoint, context.Hold);
    }
}
