// Contract: the validated, immutable settings of MatQuant (Nair et al. 2025): nested bit-widths R ⊆ 1..c with weights
// λ_r, the base algorithm, co-distillation pairs, extra precision, and the QAT base's training budget; every invalid
// value throws one MatqException naming the option and its allowed values.
using System.Globalization;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.MatQuant;

/// <summary>The base whose loss MatQuant sums over nested bit-widths.</summary>
public enum MatQuantBase
{
    /// <summary>End-to-end next-token training of the quantized weights and their scales/zeros (STE).</summary>
    Qat,

    /// <summary>Second-order column-by-column rounding on the calibration Hessian (GPTQ/Athena error feedback).</summary>
    Athena,

    /// <summary>Block-wise learnable weight clipping trained on block-output reconstruction (OmniQuant LWC).</summary>
    OmniQuant,
}

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

    // QAT budget: AdamW steps, windows per batch, peak lr (weights; scales/zeros use ScaleLr), warm-up, clipping.
    public int Steps { get; }
    public int Batch { get; }
    public double Lr { get; }
    public double ScaleLr { get; }
    public int Warmup { get; }
    public double ClipNorm { get; }
    /// <summary>Optional training checkpoint path (atomic writes every CheckpointEvery steps; an unfinished one resumes).</summary>
    public string? Checkpoint { get; }
    public int CheckpointEvery { get; }
    /// <summary>QAT base: learned grid (default) or frozen min-max of the current W.</summary>
    public QatGrid Grid { get; }

    public MatQuantConfig(IReadOnlyList<int> bits, IReadOnlyList<double>? lambda, int masterBits, MatQuantBase baseAlgorithm = MatQuantBase.Qat,
        IReadOnlyList<CodistillPair>? codistill = null, double codistillWeight = 1.0, double distill = 0.0, bool extraPrecision = false,
        int steps = 300, int batch = 8, double lr = 5e-4, double scaleLr = 2e-3, int warmup = 20, double clipNorm = 1.0,
        string? checkpoint = null, int checkpointEvery = 100, QatGrid grid = QatGrid.Learned)
    {
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
        if (!Enum.IsDefined(baseAlgorithm)) throw new MatqException($"matquant base {(int)baseAlgorithm} is not known: use qat, athena or omniquant");
        codistill ??= [];
        foreach (var p in codistill)
        {
            if (!bits.Contains(p.Teacher) || !bits.Contains(p.Student) || p.Teacher == p.Student)
                throw new MatqException($"matquant codistill {p}: teacher and student must be two different widths of bits = {string.Join(",", bits)}");
        }
        if (codistill.Count > 0 && baseAlgorithm == MatQuantBase.Athena)
            throw new MatqException("matquant codistill applies to the qat and omniquant bases (it compares slice outputs during training), not athena");
        if (!(codistillWeight >= 0) || !(distill >= 0) || double.IsInfinity(codistillWeight) || double.IsInfinity(distill))
            throw new MatqException("matquant codistill-weight and distill must be finite and ≥ 0");
        if (steps < 1 || steps > 1_000_000) throw new MatqException($"matquant steps = {steps} is out of range: allowed 1..1000000");
        if (batch < 1 || batch > 4096) throw new MatqException($"matquant batch = {batch} is out of range: allowed 1..4096 windows");
        if (!(lr > 0 && lr < 1) || !(scaleLr > 0 && scaleLr < 1)) throw new MatqException($"matquant lr = {lr}, scale-lr = {scaleLr}: each must be in (0, 1)");
        if (warmup < 0 || warmup > steps) throw new MatqException($"matquant warmup = {warmup} is out of range: allowed 0..steps ({steps})");
        if (!(clipNorm > 0)) throw new MatqException($"matquant clip = {clipNorm} is out of range: must be > 0");
        if (!Enum.IsDefined(grid)) throw new MatqException($"matquant grid {(int)grid} is not known: use learned or minmax");
        if (grid == QatGrid.MinMax && baseAlgorithm != MatQuantBase.Qat)
            throw new MatqException($"matquant grid = minmax applies to the qat base (its grid trains); base {baseAlgorithm.ToString().ToLowerInvariant()} has its own");
        if (checkpointEvery < 1) throw new MatqException($"matquant checkpoint-every = {checkpointEvery} is out of range: at least 1");
        Bits = bits.ToArray();
        Lambda = lambda.ToArray();
        MasterBits = masterBits;
        Base = baseAlgorithm;
        Codistill = codistill.ToArray();
        CodistillWeight = codistillWeight;
        Distill = distill;
        ExtraPrecision = extraPrecision;
        Steps = steps; Batch = batch; Lr = lr; ScaleLr = scaleLr; Warmup = warmup; ClipNorm = clipNorm;
        Checkpoint = string.IsNullOrWhiteSpace(checkpoint) ? null : checkpoint;
        CheckpointEvery = checkpointEvery;
        Grid = grid;
    }

    public double LambdaSum => Lambda.Sum();

    /// <summary>Option keys as typed after --option (matq quantize --method matquant --option bits=8,4,2 ...).</summary>
    public const string BitsKey = "bits", LambdaKey = "lambda", BaseKey = "base", CodistillKey = "codistill", CodistillWeightKey = "codistill-weight",
        DistillKey = "distill", ExtraKey = "extra-precision", StepsKey = "steps", BatchKey = "batch", LrKey = "lr", ScaleLrKey = "scale-lr",
        WarmupKey = "warmup", ClipKey = "clip", CheckpointKey = "checkpoint", CheckpointEveryKey = "checkpoint-every", GridKey = "grid";

    /// <summary>The declared options of the registry row (defaults as text).</summary>
    public static IReadOnlyList<AlgorithmOption> Options { get; } =
    [
        new(BaseKey, "base algorithm whose loss is summed over the nested widths: qat, athena or omniquant", "qat"),
        new(BitsKey, "nested bit-widths R, comma-separated, each 1..master bits", "8,4,2"),
        new(LambdaKey, "weights λ_r of the per-width losses, one per bit-width", "1,1,1"),
        new(CodistillKey, "co-distillation pairs teacher->student, e.g. 8->2,8->4 (qat and omniquant bases)", ""),
        new(CodistillWeightKey, "weight of each co-distillation term (KL for qat, block-output mse for omniquant)", "1"),
        new(DistillKey, "weight of KL(float model ‖ slice) per slice (qat base)", "0"),
        new(ExtraKey, "true: keep the overflow bucket 2^r in training (serve with extra precision)", "false"),
        new(StepsKey, "qat: AdamW steps", "300"),
        new(BatchKey, "qat: calibration windows per step", "8"),
        new(LrKey, "qat: peak learning rate of the weights (cosine decay to 10%)", "0.0005"),
        new(ScaleLrKey, "qat: peak learning rate of log-scales and zero points", "0.002"),
        new(WarmupKey, "qat: linear warm-up steps", "20"),
        new(ClipKey, "qat: global gradient-norm clip", "1"),
        new(CheckpointKey, "qat: training checkpoint file (resumes an unfinished run with the same settings)", ""),
        new(CheckpointEveryKey, "qat: steps between checkpoints", "100"),
        new(GridKey, "qat: quantization grid, learned (log-scales and zero points train) or minmax (frozen: min-max of the current weights at every step)", "learned"),
    ];

    /// <summary>Parses the run's options (defaults from <see cref="Options"/>); master bits = the run's --bits.</summary>
    public static MatQuantConfig FromOptions(QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        string O(string key) => config.Option(key);
        var bits = Ints(BitsKey, O(BitsKey));
        // lambda defaults to one 1 per width when bits is given without lambda
        var lambda = config.Options.ContainsKey(LambdaKey) ? Doubles(LambdaKey, O(LambdaKey)) : bits.Select(_ => 1.0).ToArray();
        var b = O(BaseKey).Trim().ToLowerInvariant() switch
        {
            "qat" => MatQuantBase.Qat,
            "athena" => MatQuantBase.Athena,
            "omniquant" => MatQuantBase.OmniQuant,
            var other => throw new MatqException($"matquant base = '{other}' is not known: use qat, athena or omniquant"),
        };
        int steps = Int(StepsKey, O(StepsKey));
        // the default warm-up (20 steps) is cut to a shorter run; a warm-up given explicitly is checked as given
        int warmup = config.Options.ContainsKey(WarmupKey) ? Int(WarmupKey, O(WarmupKey)) : Math.Min(Int(WarmupKey, O(WarmupKey)), Math.Max(0, steps));
        return new MatQuantConfig(bits, lambda, config.Bits, b, ParsePairs(O(CodistillKey)), Double(CodistillWeightKey, O(CodistillWeightKey)),
            Double(DistillKey, O(DistillKey)), Flag(ExtraKey, O(ExtraKey)), steps, Int(BatchKey, O(BatchKey)),
            Double(LrKey, O(LrKey)), Double(ScaleLrKey, O(ScaleLrKey)), warmup, Double(ClipKey, O(ClipKey)),
            O(CheckpointKey), Int(CheckpointEveryKey, O(CheckpointEveryKey)), ParseGrid(O(GridKey)));
    }

    /// <summary>"learned" | "minmax" (case-insensitive).</summary>
    public static QatGrid ParseGrid(string text) => text.Trim().ToLowerInvariant() switch
    {
        "learned" or "" => QatGrid.Learned,
        "minmax" or "min-max" => QatGrid.MinMax,
        var other => throw new MatqException($"matquant grid = '{other}' is not known: use learned or minmax"),
    };

    /// <summary>"8->2,8->4" → pairs; empty text → none.</summary>
    public static IReadOnlyList<CodistillPair> ParsePairs(string text)
    {
        var pairs = new List<CodistillPair>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var ends = part.Split("->", StringSplitOptions.TrimEntries);
            if (ends.Length != 2 || !int.TryParse(ends[0], out var t) || !int.TryParse(ends[1], out var s))
                throw new MatqException($"matquant codistill '{part}' is not TEACHER->STUDENT (e.g. 8->2)");
            pairs.Add(new CodistillPair(t, s));
        }
        return pairs;
    }

    private static int[] Ints(string key, string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new MatqException($"matquant {key}: '{p}' is not an integer")).ToArray();

    private static double[] Doubles(string key, string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => Double(key, p)).ToArray();

    private static int Int(string key, string text) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : throw new MatqException($"matquant {key} = '{text}' is not an integer");

    private static double Double(string key, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new MatqException($"matquant {key} = '{text}' is not a number");

    private static bool Flag(string key, string text) => text.Trim().ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" or "" => false,
        var other => throw new MatqException($"matquant {key} = '{other}' is not true or false"),
    };
}
