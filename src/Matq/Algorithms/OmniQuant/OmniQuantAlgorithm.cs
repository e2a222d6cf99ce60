// Contract: the pipeline's "omniquant" method: OmniQuant's block-wise learnable weight clipping (LWC), optionally with
// the learnable equivalent transformation (LET, --option let=true), at one bit-width c = --bits, i.e. OmniQuantBlockwise with the objective R = {c}, λ = {1}. It is the
// "trained independently at r bits with the same base and budget" baseline of the MatQuant tables.
using System.Text.Json.Nodes;
using Matq.Algorithms.MatQuant;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.OmniQuant;

public sealed class OmniQuantAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "omniquant";

    public static AlgorithmRegistration<OmniQuantConfig> Registration { get; } = new(MethodName,
        "OmniQuant: block-wise learnable weight clipping (sigmoid-parameterized per-group clip of max/min) trained with Adam on block-output reconstruction; --option let=true adds LET's per-channel scales (needs calibration)",
        NeedsCalibration: true, OmniQuantConfig.Options, OmniQuantConfig.Parse, (config, omni) => new OmniQuantAlgorithm(config, omni));

    /// <summary>The method with the budget read from <paramref name="config"/>'s options.</summary>
    public OmniQuantAlgorithm(QuantizationConfig config) : this(config, Registration.Parse(new OptionReader(config))) { }

    public OmniQuantAlgorithm(QuantizationConfig config, OmniQuantConfig omni) : base(config)
    {
        Omni = omni ?? throw new ArgumentNullException(nameof(omni));
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
        var o = new JsonObject
        {
            ["epochs"] = omni.Epochs,
            ["lr"] = omni.Lr,
            ["batch"] = omni.Batch,
            ["init"] = omni.Init,
            ["samples"] = omni.Samples,
            ["max"] = max,
            ["let"] = omni.Let,
            ["target"] = "float model block output on the float path; inputs from the quantized path",
        };
        if (omni.Let)
        {
            o["let_lr"] = omni.LetLr;
            o["let_pairs"] = "scales only (no shifts), folded into the model: input norm→q/k/v, mlp norm→gate/up, v→o, q↔k (not with q/k norms)";
        }
        return o;
    }

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return OmniQuantBlockwise.Run(context, Config, Objective, Omni, Name, EpochLog);
    }
}
