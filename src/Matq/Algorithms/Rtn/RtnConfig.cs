// Contract: RTN's own immutable settings — how the range of each group is chosen (min-max, or an MSE-optimal
// shrink over a grid of factors) — validated in the constructor; Parse reads it from the pipeline's string options.
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.Rtn;

public enum RtnClip
{
    /// <summary>The group's zero-inclusive min and max (TensorAffineQuantizer.ComputeParams).</summary>
    MinMax,

    /// <summary>Per group, the shrink factor f of the grid (range [f·lo, f·hi]) with the least ‖w − ŵ‖².</summary>
    Mse,
}

public sealed record RtnConfig
{
    public const string ClipKey = "clip", ClipMinKey = "clip-min", ClipStepKey = "clip-step";

    public RtnClip Clip { get; }

    /// <summary>Smallest shrink factor tried by the MSE search, in (0, 1].</summary>
    public double MinShrink { get; }

    /// <summary>Distance between tried factors, in (0, 1].</summary>
    public double Step { get; }

    /// <summary>The factors tried: 1, 1 − step, 1 − 2·step, ... down to MinShrink (1 = min-max itself).</summary>
    public IReadOnlyList<double> Grid { get; }

    public RtnConfig(RtnClip clip = RtnClip.MinMax, double minShrink = 0.5, double step = 0.05)
    {
        if (!Enum.IsDefined(clip)) throw new MatqException($"clip = {(int)clip} is not a clip mode: use minmax or mse");
        if (!(minShrink > 0 && minShrink <= 1))
            throw new MatqException($"{ClipMinKey} = {minShrink} is out of range: allowed (0, 1], the smallest fraction of the range the MSE search tries (e.g. 0.5)");
        if (!(step > 0 && step <= 1))
            throw new MatqException($"{ClipStepKey} = {step} is out of range: allowed (0, 1], the distance between tried shrink factors (e.g. 0.05)");
        Clip = clip;
        MinShrink = minShrink;
        Step = step;
        var grid = new List<double>();
        for (int i = 0; ; i++)
        {
            double f = Math.Round(1.0 - i * step, 9);   // rounding keeps 0.95, 0.9, ... free of accumulated drift
            if (f < minShrink - 1e-9) break;
            grid.Add(f);
        }
        Grid = grid;
    }

    /// <summary>Reads clip (minmax|mse), clip-min and clip-step (defaults where absent).</summary>
    public static RtnConfig Parse(OptionReader options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new RtnConfig(options.Choice(ClipKey, ("minmax|min-max", RtnClip.MinMax), ("mse", RtnClip.Mse)),
            options.Double(ClipMinKey), options.Double(ClipStepKey));
    }
}
