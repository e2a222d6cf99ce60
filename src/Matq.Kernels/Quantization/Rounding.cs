// Contract: the one rounding rule of matq's integer math — round half to even — and RoundClip built on it.
// The tensor path uses torch.round, which is also half-to-even, so codes agree bit for bit.
namespace Matq.Kernels.Quantization;

/// <summary>Scalar rounding helpers shared by every quantizer.</summary>
public static class Rounding
{
    /// <summary>Round to nearest, ties to even (MathF.Round's default; torch.round does the same). Chosen over
    /// half-away-from-zero because it is unbiased and both float paths compute it exactly.</summary>
    public static float RoundHalfEven(float x) => MathF.Round(x, MidpointRounding.ToEven);

    /// <summary>RoundClip(x, lo, hi) = min(max(round(x), lo), hi): round first, then clip (MaQD).</summary>
    public static float RoundClip(float x, float lo, float hi)
    {
        if (!(lo <= hi)) throw new ArgumentOutOfRangeException(nameof(hi), $"RoundClip needs lo <= hi (lo = {lo}, hi = {hi})");
        return MathF.Min(MathF.Max(RoundHalfEven(x), lo), hi);
    }
}
