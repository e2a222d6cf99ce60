// Contract: the validated, immutable settings of MatQuant (Nair et al. 2025): nested bit-widths R ⊆ 1..c with weights
// λ_r, the base algorithm (a row of MatQuantBase.All), co-distillation pairs, extra precision, and the QAT base's
// training budget (QatConfig); every invalid value throws one MatqException naming the option and its allowed values.
using Matq.Algorithms.Qat;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.MatQuant;

/// <summary>Where the QAT base's quantization grid (α, z per group) comes from.</summary>
public enum QatGrid
{
    /// <summary>log α and z are parameters trained with the scale learning rate (LSQ-style, through the STE).</summary>
    Learned,

    /// <summary>Frozen min-max: α and z are recomputed from the current latent W at every forward (asymmetric min-max at the
    /// master bits, as RTN), no gradient; only W trains.</summary>
    MinMax,
}

/// <summary>A co-distillation term: the slice at <see cref="Teacher"/> bits (detached) is the target of the slice at
/// <see cref="Student"/> bits: KL(p_teacher ‖ p_student) over the next-token distributions (qat), or the mse between the
/// two slices' block outputs (omniquant).</summary>
public sealed record CodistillPair(int Teacher, int Student)
{
    public override string ToString() => $"{Teacher}->{Student}";
}

public sealed record MatQuantConfig
{
    /// <summary>Nested bit-widths R (each 1..c, distinct, in the given order) and their weights λ_r ≥ 0 (Σλ > 0).</summary>
    public IReadOnlyList<int> Bits { get; }
    public IReadOnlyList<double> Lambda { get; }
    /// <summary>Master bits c of the stored codes (the artifact's bits); max(R) ≤ c.</summary>
    public int MasterBits { get; }
    public MatQuantBase Base { get; }
    public IReadOnlyList<CodistillPair> Codistill { get; }
    /// <summary>Weight of each co-distillation KL term.</summary>
    public double CodistillWeight { get; }
    /// <summary>Weight of KL(p_float ‖ p_r) added per slice (QAT base; 0 = plain CE).</summary>
    public double Distill { get; }
    /// <summary>Train with the overflow bucket 2^r kept (serve with extra precision too).</summary>
    public bool ExtraPrecision { get; }

    /// <summary>The QAT base's training budget (its defaults for the other bases).</summary>
    public QatConfig Qat { get; }
    /// <summary>QAT base: learned grid (default) or frozen min-max of the current W.</summary>
    public QatGrid Grid => Qat.Grid;

    public MatQuantConfig(IReadOnlyList<int> bits, IReadOnlyList<double>? lambda, int masterBits, MatQuantBase? baseAlgorithm = null,
        IReadOnlyList<CodistillPair>? codistill = null, double codistillWeight = 1.0, double distill = 0.0, bool extraPrecision = false,
        QatConfig? qat = null)
    {
        baseAlgorithm ??= MatQuantBase.Qat;
        qat ??= new QatConfig();
        ArgumentNullException.ThrowIfNull(bits);
        if (bits.Count == 0) throw new MatqException("matquant bits is empty: give one or more nested bit-widths, e.g. bits=8,4,2");
        foreach (var b in bits)
            if (b < 1 || b > 8) throw new MatqException($"matquant bits: {b} is out of range: each nested bit-width must be in 1..8");
        if (bits.Distinct().Count() != bits.Count) throw new MatqException($"matquant bits = {string.Join(",", bits)} repeats a bit-width: give each once");
        if (masterBits < 1 || masterBits > 8) throw new MatqException($"matquant master bits = {masterBits} is out of range: allowed 1..8");
        if (masterBits < bits.Max())
            throw new MatqException($"master bits {masterBits} < max(bits) = {bits.Max()}: the nested widths must fit in the master codes (use --bits {bits.Max()} or more)");
        lambda ??= bits.Select(_ => 1.0).ToArray();
        if (lambda.Count != bits.Count)
            throw new MatqException($"matquant lambda has {lambda.Count} value(s) but bits has {bits.Count}: give one weight per bit-width (e.g. bits=8,4,2 lambda=1,1,1)");
        if (lambda.Any(l => !(l >= 0) || double.IsInfinity(l)) || !(lambda.Sum() > 0))
            throw new MatqException($"matquant lambda = {string.Join(",", lambda)} is invalid: weights must be finite, ≥ 0, and not all 0");
        codistill ??= [];
        foreach (var p in codistill)
        {
            if (!bits.Contains(p.Teacher) || !bits.Contains(p.Student) || p.Teacher == p.Student)
                throw new MatqException($"matquant codistill {p}: teacher and student must be two different widths of bits = {string.Join(",", bits)}");
        }
        if (codistill.Count > 0 && !baseAlgorithm.TrainsSlices)
            throw new MatqException($"matquant codistill applies to the {string.Join(" and ", MatQuantBase.All.Where(b => b.TrainsSlices).Select(b => b.Name))} bases (it compares slice outputs during training), not {baseAlgorithm.Name}");
        if (!(codistillWeight >= 0) || !(distill >= 0) || double.IsInfinity(codistillWeight) || double.IsInfinity(distill))
            throw new MatqException("matquant codistill-weight and distill must be finite and ≥ 0");
        if (qat.Grid == QatGrid.MinMax && baseAlgorithm != MatQuantBase.Qat)
            throw new MatqException($"matquant grid = minmax applies to the qat base (its grid trains); base {baseAlgorithm.Name} has its own");
        Bits = bits.ToArray();
        Lambda = lambda.ToArray();
        MasterBits = masterBits;
        Base = baseAlgorithm;
        Codistill = codistill.ToArray();
        CodistillWeight = codistillWeight;
        Distill = distill;
        ExtraPrecision = extraPrecision;
        Qat = qat;
    }

    public double LambdaSum => Lambda.Sum();

    /// <summary>Option keys as typed after --option (matq quantize --method matquant --option bits=8,4,2 ...); the QAT
    /// budget's keys are QatConfig's (GridKey is repeated here for callers that set the grid of a matquant run).</summary>
    public const string BitsKey = "bits", LambdaKey = "lambda", BaseKey = "base", CodistillKey = "codistill", CodistillWeightKey = "codistill-weight",
        DistillKey = "distill", ExtraKey = "extra-precision", GridKey = QatConfig.GridKey;

    /// <summary>The declared options of the objective (defaults as text); the registry row adds the bases' options.</summary>
    public static IReadOnlyList<AlgorithmOption> Options { get; } =
    [
        new(BaseKey, "base algorithm whose loss is summed over the nested widths: " + string.Join(", ", MatQuantBase.All.Select(b => b.Name)), MatQuantBase.Qat.Name),
        new(BitsKey, "nested bit-widths R, comma-separated, each 1..master bits", "8,4,2"),
        new(LambdaKey, "weights λ_r of the per-width losses, one per bit-width", "1,1,1"),
        new(CodistillKey, "co-distillation pairs teacher->student, e.g. 8->2,8->4 (qat and omniquant bases)", ""),
        new(CodistillWeightKey, "weight of each co-distillation term (KL for qat, block-output mse for omniquant)", "1"),
        new(DistillKey, "weight of KL(float model ‖ slice) per slice (qat base)", "0"),
        new(ExtraKey, "true: keep the overflow bucket 2^r in training (serve with extra precision)", "false"),
    ];

    /// <summary>Reads the objective's keys and the QAT budget (defaults where absent); master bits = the run's --bits.</summary>
    public static MatQuantConfig Parse(OptionReader options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var bits = options.Ints(BitsKey);
        // lambda defaults to one 1 per width when bits is given without lambda
        var lambda = options.IsGiven(LambdaKey) ? options.Doubles(LambdaKey) : bits.Select(_ => 1.0).ToArray();
        return new MatQuantConfig(bits, lambda, options.Config.Bits, options.Choice(BaseKey, MatQuantBase.All.Select(b => (b.Name, b)).ToArray()),
            options.Parse(CodistillKey, ParsePairs), options.Double(CodistillWeightKey), options.Double(DistillKey), options.Flag(ExtraKey),
            QatConfig.Parse(options));
    }

    /// <summary>"learned" | "minmax" (see <see cref="QatConfig.ParseGrid"/>).</summary>
    public static QatGrid ParseGrid(string text) => QatConfig.ParseGrid(text);

    /// <summary>"8->2,8->4" → pairs; empty text → none.</summary>
    public static IReadOnlyList<CodistillPair> ParsePairs(string text)
    {
        var pairs = new List<CodistillPair>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var ends = part.Split("->", StringSplitOptions.TrimEntries);
            if (ends.Length != 2 || !int.TryParse(ends[0], out var t) || !int.TryParse(ends[1], out var s))
                throw new MatqException($"matquant codistill '{SafeText.Escape(part)}' is not TEACHER->STUDENT (e.g. 8->2)");
            pairs.Add(new CodistillPair(t, s));
        }
        return pairs;
    }
}
