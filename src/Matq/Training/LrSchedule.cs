// Learning rate for a 0-based optimizer step: linear warm-up from Peak/Warmup to Peak over Warmup steps,
// then cosine decay from Peak to Min at the last step (Total − 1). Pure function of the step, so resume is exact.
namespace Matq.Training;

public sealed record LrSchedule
{
    public LrSchedule(double peak, int warmupSteps, int totalSteps, double min = 0)
    {
        if (!(peak > 0) || double.IsInfinity(peak)) throw new ArgumentOutOfRangeException(nameof(peak), peak, "peak learning rate must be a positive finite number");
        if (totalSteps < 1) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "total steps must be at least 1");
        if (warmupSteps < 0 || warmupSteps > totalSteps) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, $"warm-up steps must be in 0..{totalSteps}");
        if (min < 0 || min > peak) throw new ArgumentOutOfRangeException(nameof(min), min, $"minimum learning rate must be in 0..{peak}");
        Peak = peak; WarmupSteps = warmupSteps; TotalSteps = totalSteps; Min = min;
    }

    public double Peak { get; }
    public int WarmupSteps { get; }
    public int TotalSteps { get; }
    public double Min { get; }

    /// <summary>The rate used by update number <paramref name="step"/>+1; steps past the end stay at Min.</summary>
    public double At(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be >= 0");
        // (step+1)/W so the very first update already moves, and step W−1 reaches the peak.
        if (step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        int decaySteps = TotalSteps - WarmupSteps - 1;
        if (decaySteps <= 0) return step < TotalSteps ? Peak : Min;
        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        return Min + 0.5 * (Peak - Min) * (1 + Math.Cos(Math.PI * progress));
    }

    /// <summary>The same curve ending earlier (a time budget shortened the run); warm-up is kept when it fits.</summary>
    public LrSchedule WithTotal(int totalSteps) => new(Peak, Math.Min(WarmupSteps, totalSteps), totalSteps, Min);
}
