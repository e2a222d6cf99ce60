// Contract: the pipeline's "matquant" method: wraps a base (a row of MatQuantBase.All: qat | athena | omniquant) so its
// loss is Σ_{r∈R} λ_r·loss(slice r) and emits ONE set of c-bit master codes per linear (artifact trained_bits = R),
// servable at any r ≤ c by the loader.
using System.Text.Json.Nodes;
using Matq.Algorithms.Athena;
using Matq.Algorithms.OmniQuant;
using Matq.Algorithms.Qat;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.MatQuant;

/// <summary>The typed config of the "matquant" method: the nested objective (with its base and the QAT budget) and the
/// settings of the Athena and OmniQuant bases (every base's options are validated, whichever base runs).</summary>
public sealed record MatQuantSettings
{
    public MatQuantSettings(MatQuantConfig matQuant, AthenaConfig athena, OmniQuantConfig omni)
    {
        MatQuant = matQuant ?? throw new ArgumentNullException(nameof(matQuant));
        Athena = athena ?? throw new ArgumentNullException(nameof(athena));
        Omni = omni ?? throw new ArgumentNullException(nameof(omni));
        if (athena.Spec.Bits != matQuant.MasterBits)
            throw new ArgumentException($"the Athena solver's bits {athena.Spec.Bits} ≠ the master bits {matQuant.MasterBits}", nameof(athena));
    }

    public MatQuantConfig MatQuant { get; }
    public AthenaConfig Athena { get; }
    public OmniQuantConfig Omni { get; }

    /// <summary>Reads the objective's, the QAT budget's, Athena's and OmniQuant's keys from one reader.</summary>
    public static MatQuantSettings Parse(OptionReader options) =>
        new(MatQuantConfig.Parse(options), AthenaConfig.Parse(options, AthenaMode.Athena), OmniQuantConfig.Parse(options));
}

public sealed class MatQuantAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "matquant";

    /// <summary>Registry row "matquant": the objective's options plus every base's.</summary>
    public static AlgorithmRegistration<MatQuantSettings> Registration { get; } = new(MethodName,
        "MatQuant: one c-bit artifact whose nested int4/int2 slices are trained jointly (base=" + string.Join("|", MatQuantBase.All.Select(b => b.Name)) + "; needs calibration text)",
        NeedsCalibration: true,
        [.. MatQuantConfig.Options, .. MatQuantBase.All.SelectMany(b => b.Options)],
        MatQuantSettings.Parse,
        (config, settings) => new MatQuantAlgorithm(config, settings));

    /// <summary>The method with the settings read from <paramref name="config"/>'s options.</summary>
    public MatQuantAlgorithm(QuantizationConfig config) : this(config, Registration.Parse(new OptionReader(config))) { }

    public MatQuantAlgorithm(QuantizationConfig config, MatQuantSettings settings) : base(config)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.MatQuant.MasterBits != config.Bits)
            throw new ArgumentException($"the objective's master bits {settings.MatQuant.MasterBits} ≠ the run's bits {config.Bits}", nameof(settings));
        MatQuant = settings.MatQuant;
        Athena = settings.Athena;
        Omni = settings.Omni;
    }

    public MatQuantConfig MatQuant { get; }

    /// <summary>The Athena solver (used by base=athena).</summary>
    public AthenaConfig Athena { get; }

    /// <summary>The OmniQuant budget (used by base=omniquant).</summary>
    public OmniQuantConfig Omni { get; }

    /// <summary>Called with each block epoch of base=omniquant (tests, logs).</summary>
    public Action<OmniQuantEpoch>? EpochLog { get; init; }

    /// <summary>Called with each logged QAT step of base=qat (progress display, tests).</summary>
    public Action<QatStep>? StepLog { get; init; }

    public override string Name => MethodName;

    public override IReadOnlyList<int> TrainedBits => MatQuant.Bits;

    /// <summary>The base's: athena and omniquant walk the model block by block and resume; qat trains the whole model.</summary>
    public override bool SupportsResume => MatQuant.Base.SupportsResume;

    /// <summary>The base's: athena and omniquant read one held block at a time; qat needs the whole model resident.</summary>
    public override bool Streams => MatQuant.Base.Streams;

    public override bool LayerParallel => MatQuant.Base.LayerParallel;

    public override JsonObject DescribeSettings()
    {
        var o = new JsonObject
        {
            ["base"] = MatQuant.Base.Name,
            ["bits"] = new JsonArray(MatQuant.Bits.Select(b => (JsonNode?)JsonValue.Create(b)).ToArray()),
            ["lambda"] = new JsonArray(MatQuant.Lambda.Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
            ["extra_precision"] = MatQuant.ExtraPrecision,
        };
        MatQuant.Base.Describe(this, o);
        return o;
    }

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return MatQuant.Base.Convert(this, context);
    }
}
