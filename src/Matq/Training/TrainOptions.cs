// Hyper-parameters of one language-model training run; validated on construction (field name + allowed range).

namespace Matq.Training;

public sealed record TrainOptions
{
    public int Steps { get; init; } = 1000;
    public int BatchSize { get; init; } = 16;
    public int ContextLength { get; init; } = 256;
    public double Lr { get; init; } = 3e-3;
    /// <summary>Final rate of the cosine decay, as a fraction of <see cref="Lr"/>.</summary>
    public double MinLrFraction { get; init; } = 0.1;
    public int WarmupSteps { get; init; } = 50;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>Validation every this many steps (and at the start and end); 0 = only at the end.</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Windows of ContextLength+1 tokens, evenly spaced over the validation stream, used by periodic validation.</summary>
    public int EvalWindows { get; init; } = 64;
    public int CheckpointEvery { get; init; } = 250;
    /// <summary>The train loss is read back (a device sync) every this many steps, averaged over them.</summary>
    public int LogEvery { get; init; } = 10;
    /// <summary>Steps of each run segment excluded from the throughput figures (allocator and kernel warm-up).</summary>
    public int ThroughputWarmup { get; init; } = 10;
    public long Seed { get; init; } = 1234;
    /// <summary>Time budget for the training loop; null = none. The schedule is shortened once to fit it.</summary>
    public double? MaxMinutes { get; init; }
    public ScalarType ComputeDtype { get; init; } = ScalarType.Float32;

    public void Validate()
    {
        static void Check(bool ok, string field, object value, string range)
        {
            if (!ok) throw new MatqException($"{field} = {value} is out of range: {range}");
        }
        Check(Steps >= 1, "--steps", Steps, "at least 1");
        Check(BatchSize >= 1, "--batch", BatchSize, "at least 1");
        Check(ContextLength >= 2, "context length", ContextLength, "at least 2");
        Check(Lr > 0 && Lr < 1, "--lr", Lr, "0 < lr < 1");
        Check(MinLrFraction >= 0 && MinLrFraction <= 1, "min lr fraction", MinLrFraction, "0..1");
        Check(WarmupSteps >= 0, "warm-up steps", WarmupSteps, "at least 0");
        Check(WeightDecay >= 0, "weight decay", WeightDecay, "at least 0");
        Check(ClipNorm > 0, "clip norm", ClipNorm, "positive");
        Check(EvalEvery >= 0, "--eval-every", EvalEvery, "0 (only at the end) or more");
        Check(EvalWindows >= 1, "eval windows", EvalWindows, "at least 1");
        Check(CheckpointEvery >= 1, "checkpoint interval", CheckpointEvery, "at least 1");
        Check(LogEvery >= 1, "log interval", LogEvery, "at least 1");
        Check(MaxMinutes is null || MaxMinutes > 0, "--max-minutes", MaxMinutes ?? 0, "positive");
        Check(ComputeDtype is ScalarType.Float32 or ScalarType.BFloat16, "compute dtype", ComputeDtype, "float32 or bfloat16");
    }

    /// <summary>Settings a resumed run must share with the checkpoint, "key=value;..." (compared field by field).</summary>
    public string RunKey(string modelKey) =>
        $"model={modelKey};steps={Steps};batch={BatchSize};ctx={ContextLength};lr={Lr:R};minlr={MinLrFraction:R};warmup={WarmupSteps};" +
        $"wd={WeightDecay:R};betas={Beta1:R},{Beta2:R};clip={ClipNorm:R};seed={Seed};dtype={ComputeDtype}";

    public LrSchedule Schedule(int totalSteps) =>
        new(Lr, Math.Min(WarmupSteps, totalSteps), totalSteps, Lr * MinLrFraction);
}
