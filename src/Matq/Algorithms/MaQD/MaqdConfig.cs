// Contract: validated MaQD settings (Sawada et al. 2024): the number of weight states N (odd: a symmetric integer grid
// −k..k with k = (N−1)/2, so 3 = ternary {−1, 0, 1}; an even N would have no zero level or an asymmetric grid) and of
// activation states M (unsigned levels 0..M−1, any M ≥ 2), the surrogate gradient of the round-clips, and the weight
// states of the two end layers (the first conv, which reads the pixels, and the classifier): null = N like the others;
// the common choice is 255 (8-bit codes −127..127), since these small layers (fan-in 9 and 64 here) cost most accuracy
// when quantized coarsely and least memory and compute when kept finer.
// Invalid values throw MatqException naming the field and the allowed range.
using Matq.Quantization;

namespace Matq.Algorithms.MaQD;

public sealed record MaqdConfig
{
    public const int MaxStates = 255;

    public MaqdConfig(int weightStates, int actStates, Surrogate surrogate = Surrogate.Ste, double width = 1.0, int? endWeightStates = null)
    {
        if (weightStates < 3 || weightStates > MaxStates || weightStates % 2 == 0)
            throw new MatqException($"weight states = {weightStates} is invalid: allowed odd numbers 3..{MaxStates} (symmetric levels −k..k; 3 = ternary, 5, 7, 15, ..., 255)");
        if (endWeightStates is int e && (e < 3 || e > MaxStates || e % 2 == 0))
            throw new MatqException($"end-layer weight states = {e} is invalid: allowed odd numbers 3..{MaxStates} (e.g. 255 = 8-bit first and last layers)");
        if (actStates < 2 || actStates > MaxStates + 1)
            throw new MatqException($"activation states = {actStates} is out of range: allowed 2..{MaxStates + 1} (levels 0..M−1)");
        if (!Enum.IsDefined(surrogate)) throw new MatqException($"surrogate = {(int)surrogate} is not known: allowed ste, smooth");
        if (!(width > 0 && width <= SurrogateRoundClip.MaxWidth))
            throw new MatqException($"surrogate width = {width} is out of range: allowed 0 < width ≤ {SurrogateRoundClip.MaxWidth} (in quantization steps, e.g. 1)");
        WeightStates = weightStates; ActStates = actStates; Surrogate = surrogate; Width = width;
        EndWeightStates = endWeightStates == weightStates ? null : endWeightStates;
    }

    /// <summary>N: weight codes are −k..k, k = (N − 1)/2.</summary>
    public int WeightStates { get; }
    /// <summary>M: activation codes are 0..M − 1.</summary>
    public int ActStates { get; }
    public Surrogate Surrogate { get; }
    /// <summary>Smooth surrogate: half-width of each stair's transition, in quantization steps.</summary>
    public double Width { get; }

    /// <summary>Weight states of the first layer and the classifier when they differ from N; null = N (every layer alike).</summary>
    public int? EndWeightStates { get; }

    public int WeightLevels => (WeightStates - 1) / 2;

    /// <summary>"ste" | "smooth".</summary>
    public static Surrogate ParseSurrogate(string text) => text.Trim().ToLowerInvariant() switch
    {
        "ste" => Surrogate.Ste,
        "smooth" => Surrogate.Smooth,
        _ => throw new MatqException($"surrogate '{text}' is not supported: allowed ste (straight-through inside the clip range), smooth (derivative of a smooth staircase, see --width)"),
    };

    public string Label => $"MaQD ({WeightStates}, {ActStates})";

    /// <summary>"first/last 255" or "all layers".</summary>
    public string LayersText => EndWeightStates is int e ? $"first/last {e}" : "all layers";
}
