// Contract: RoundClip(x, lo, hi) = min(max(round(x), lo), hi) on tensors (round half to even, like the scalar
// Rounding.RoundClip), plus an STE variant whose gradient is 1 inside [lo, hi] and 0 outside.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>Round-clip on tensors (MaQD).</summary>
public static class TensorRoundClip
{
    /// <summary>clamp(round(x), lo, hi), any shape; no useful gradient (round's derivative is 0).</summary>
    public static Tensor RoundClip(Tensor x, double lo, double hi)
    {
        CheckRange(lo, hi);
        using var scope = NewDisposeScope();
        return x.round().clamp(lo, hi).MoveToOuterDisposeScope();
    }

    /// <summary>Same forward; the gradient passes straight through where lo ≤ x ≤ hi and is 0 elsewhere.</summary>
    public static Tensor RoundClipSte(Tensor x, double lo, double hi)
    {
        CheckRange(lo, hi);
        return StraightThrough.Apply(x, v => v.round().clamp(lo, hi), v => v.ge(lo).logical_and(v.le(hi)));
    }

    private static void CheckRange(double lo, double hi)
    {
        if (!(lo <= hi)) throw new ArgumentOutOfRangeException(nameof(hi), $"RoundClip needs lo <= hi (lo = {lo}, hi = {hi})");
    }
}
