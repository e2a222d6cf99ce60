// Contract: the validated, immutable typed config of the "efqat" method for language models: which weights train
// (EfQatConfig: mode, fraction, refresh), the PTQ start (rtn min-max, or athena with its solver settings), whether the
// RMSNorm weights train, and the single-width QAT objective with its budget. Invalid values throw one MatqException.
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.Qat;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.EfQat;

/// <summary>The PTQ codes QAT starts from.</summary>
public enum EfQatStart
{
    /// <summary>Min-max α, z of the float weights (RTN).</summary>
    Rtn,

    /// <summary>Athena's codes, scales and zeros (second-order PTQ on the calibration windows).</summary>
    Athena,
}

public sealed record EfQatLmConfig
{
    public const string ModeKey = "mode", FractionKey = "fraction", RefreshKey = "refresh", StartKey = "start", TrainNormsKey = "train-norms";

    public EfQatLmConfig(EfQatConfig selection, MatQuantConfig objective, EfQatStart start = EfQatStart.Rtn, AthenaConfig? athena = null, bool trainNorms = true)
    {
        Selection = selection ?? throw new ArgumentNullException(nameof(selection));
        Objective = objective ?? throw new ArgumentNullException(nameof(objective));
        if (objective.Bits.Count != 1 || objective.Bits[0] != objective.MasterBits)
            throw new MatqException($"efqat trains one width, the master bits: bits = {string.Join(",", objective.Bits)} of {objective.MasterBits}");
        if (!Enum.IsDefined(start)) throw new MatqException($"efqat {StartKey} {(int)start} is not known: use rtn or athena");
        if (start == EfQatStart.Athena && athena is null)
            throw new MatqException($"efqat {StartKey} = athena needs the Athena solver settings");
        if (athena is { ActOrder: true })
            throw new MatqException("efqat start=athena needs act-order=false: QAT trains contiguous column groups");
        Start = start;
        Athena = start == EfQatStart.Athena ? athena : null;
        TrainNorms = trainNorms;
    }

    public EfQatConfig Selection { get; }

    /// <summary>R = {bits}, λ = {1}, the distill weight and the QAT budget.</summary>
    public MatQuantConfig Objective { get; }

    public QatConfig Qat => Objective.Qat;

    public EfQatStart Start { get; }

    /// <summary>The solver of the athena start (null for rtn).</summary>
    public AthenaConfig? Athena { get; }

    public bool TrainNorms { get; }

    /// <summary>The QAT budget keys shared with MatQuant's qat base, plus distill.</summary>
    public static IReadOnlyList<AlgorithmOption> Options { get; } =
    [
        new(ModeKey, "selection: cwpl (channels per layer), cwpn (channels per network), lwpn (layers per network)", "cwpl"),
        new(FractionKey, "fraction of channels/layers whose weights train, 0..1 (0 = norms only, 1 = full QAT)", "0.25"),
        new(RefreshKey, "steps between importance refreshes", "50"),
        new(StartKey, "PTQ start: rtn (min-max) or athena", "rtn"),
        new(TrainNormsKey, "true: RMSNorm weights train too", "true"),
        .. QatConfig.Options,
        .. MatQuantConfig.Options.Where(o => o.Key == MatQuantConfig.DistillKey),
        .. AthenaConfig.Options(sweeps: true),
    ];

    /// <summary>Reads the keys above at the run's bits (the Athena keys only for start=athena).</summary>
    public static EfQatLmConfig Parse(OptionReader options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int bits = options.Config.Bits;
        // EfQatConfig validates fraction and refresh (activation bits do not apply to the LM: weights only).
        var selection = new EfQatConfig(options.Parse(ModeKey, EfQatConfig.ParseMode), options.Double(FractionKey), weightBits: Math.Max(2, bits),
            actBits: 8, refreshEvery: options.Int(RefreshKey));
        var start = options.Choice(StartKey, ("rtn", EfQatStart.Rtn), ("athena", EfQatStart.Athena));
        bool trainNorms = options.Flag(TrainNormsKey);
        var objective = new MatQuantConfig([bits], [1.0], bits, MatQuantBase.Qat, distill: options.Double(MatQuantConfig.DistillKey), qat: QatConfig.Parse(options));
        return new EfQatLmConfig(selection, objective, start, start == EfQatStart.Athena ? AthenaConfig.Parse(options, AthenaMode.Athena) : null, trainNorms);
    }
}
