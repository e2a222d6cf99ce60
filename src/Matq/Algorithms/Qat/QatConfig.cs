// Contract: the validated, immutable training budget of the LM QAT trainer (AdamW steps, windows per step, peak learning
// rates of weights and of scales/zeros, warm-up, gradient clipping, checkpointing, grid); shared by every method that
// trains through QatTrainer (matquant base=qat, efqat). Every invalid value throws one MatqException naming the option.
using Matq.Algorithms.MatQuant;
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.Qat;

public sealed record QatConfig
{
    /// <summary>AdamW steps (1..1000000), windows per step (1..4096).</summary>
    public int Steps { get; }
    public int Batch { get; }
    /// <summary>Peak learning rate of the latent weights, in (0, 1); cosine decay to 10%.</summary>
    public double Lr { get; }
    /// <summary>Peak learning rate of log-scales and zero points (and extra trained parameters), in (0, 1).</summary>
    public double ScaleLr { get; }
    /// <summary>Linear warm-up steps, 0..Steps.</summary>
    public int Warmup { get; }
    /// <summary>Global gradient-norm clip, &gt; 0.</summary>
    public double ClipNorm { get; }
    /// <summary>Optional training checkpoint path (atomic writes every CheckpointEvery steps; an unfinished one resumes).</summary>
    public string? Checkpoint { get; }
    public int CheckpointEvery { get; }
    /// <summary>Learned grid (default) or frozen min-max of the current W.</summary>
    public QatGrid Grid { get; }

    public QatConfig(int steps = 300, int batch = 8, double lr = 5e-4, double scaleLr = 2e-3, int warmup = 20, double clipNorm = 1.0,
        string? checkpoint = null, int checkpointEvery = 100, QatGrid grid = QatGrid.Learned)
    {
        if (steps < 1 || steps > 1_000_000) throw new MatqException($"qat {StepsKey} = {steps} is out of range: allowed 1..1000000");
        if (batch < 1 || batch > 4096) throw new MatqException($"qat {BatchKey} = {batch} is out of range: allowed 1..4096 windows");
        if (!(lr > 0 && lr < 1) || !(scaleLr > 0 && scaleLr < 1)) throw new MatqException($"qat {LrKey} = {lr}, {ScaleLrKey} = {scaleLr}: each must be in (0, 1)");
        if (warmup < 0 || warmup > steps) throw new MatqException($"qat {WarmupKey} = {warmup} is out of range: allowed 0..steps ({steps})");
        if (!(clipNorm > 0)) throw new MatqException($"qat {ClipKey} = {clipNorm} is out of range: must be > 0");
        if (!Enum.IsDefined(grid)) throw new MatqException($"qat {GridKey} {(int)grid} is not known: use learned or minmax");
        if (checkpointEvery < 1) throw new MatqException($"qat {CheckpointEveryKey} = {checkpointEvery} is out of range: at least 1");
        Steps = steps; Batch = batch; Lr = lr; ScaleLr = scaleLr; Warmup = warmup; ClipNorm = clipNorm;
        Checkpoint = string.IsNullOrWhiteSpace(checkpoint) ? null : checkpoint;
        CheckpointEvery = checkpointEvery;
        Grid = grid;
    }

    /// <summary>Option keys as typed after --option.</summary>
    public const string StepsKey = "steps", BatchKey = "batch", LrKey = "lr", ScaleLrKey = "scale-lr", WarmupKey = "warmup", ClipKey = "clip",
        CheckpointKey = "checkpoint", CheckpointEveryKey = "checkpoint-every", GridKey = "grid";

    /// <summary>The declared options of a registry row that trains through QatTrainer (defaults as text).</summary>
    public static IReadOnlyList<AlgorithmOption> Options { get; } =
    [
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

    /// <summary>Reads the keys above (defaults where absent); the default warm-up (20) is cut to a shorter run, a warm-up
    /// given explicitly is checked as given.</summary>
    public static QatConfig Parse(OptionReader options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int steps = options.Int(StepsKey);
        int warmup = options.IsGiven(WarmupKey) ? options.Int(WarmupKey) : Math.Min(options.Int(WarmupKey), Math.Max(0, steps));
        return new QatConfig(steps, options.Int(BatchKey), options.Double(LrKey), options.Double(ScaleLrKey), warmup, options.Double(ClipKey),
            options.Text(CheckpointKey), options.Int(CheckpointEveryKey), options.Parse(GridKey, ParseGrid));
    }

    /// <summary>"learned" | "minmax" (case-insensitive; empty = learned).</summary>
    public static QatGrid ParseGrid(string text) => text.Trim().ToLowerInvariant() switch
    {
        "learned" or "" => QatGrid.Learned,
        "minmax" or "min-max" => QatGrid.MinMax,
        var other => throw new MatqException($"qat grid = '{SafeText.Escape(other)}' is not known: use learned or minmax"),
    };
}
