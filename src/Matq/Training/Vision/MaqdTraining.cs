// Contract: trains one Fashion-MNIST net from scratch for the MaQD comparison: float (ReLU) or MaQD-quantized (MaQD
// config), normalized with BN or LBN, then optionally folds the norms and measures the folded net. The sweep plan is
// the table: float+BN, float+LBN (with weight standardization, LBN's default, and without it for contrast),
// MaQD+LBN at (weight states, activation states) ∈ {(3,15), (15,15), (3,3), (255,255)}, each at every (batch, images,
// epochs) setting.
using Matq.Algorithms.MaQD;
using Matq.Data;
using Matq.Models.Vision;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Training.Vision;

/// <summary>One row of the comparison: a norm ("bn" | "lbn" | "none"), MaQD settings (null = float net) and float
/// weight standardization (null = the norm's default; MaQD always standardizes).</summary>
public sealed record MaqdRunSpec(string Label, string Norm, MaqdConfig? Maqd, bool? StandardizeWeights = null);

/// <summary>Test accuracy in eval mode (running statistics), after folding (null when not folded), training seconds,
/// and the largest number of distinct weight codes seen in one layer (null for float nets).</summary>
public sealed record MaqdRunOutcome(MaqdRunSpec Spec, int Batch, double Accuracy, double? FoldedAccuracy, double Seconds,
    int Steps, int? MaxDistinctCodes);

public static class MaqdTraining
{
    /// <summary>Throws the fold error before any training when <paramref name="arch"/> with <paramref name="norm"/> has no norm layers.</summary>
    public static void CheckFoldable(VisionNetConfig arch, string norm)
    {
        var cfg = arch.WithNorm(norm);
        if (cfg.Norm == "none")
            throw new MatqException($"this {cfg.Arch} has no normalization layers to fold (norm none): folding needs a net trained with norm bn or lbn");
    }

    /// <summary>Builds arch with spec.Norm (seeded), installs MaQD when requested, trains with <paramref name="o"/>, and folds when asked.</summary>
    public static MaqdRunOutcome Run(VisionNetConfig arch, MaqdRunSpec spec, ImageSet train, ImageSet test, CnnTrainOptions o,
        Device device, bool fold, Action<int, int, double>? stepProgress = null, CancellationToken cancel = default)
    {
        var cfg = arch.WithNorm(spec.Norm, spec.StandardizeWeights);
        if (fold) CheckFoldable(arch, spec.Norm);
        o.Validate();
        manual_seed(o.Seed);
        using var net = VisionNet.Create(cfg);
        net.to(device);
        MaqdAlgorithm? alg = spec.Maqd is null ? null : new MaqdAlgorithm(spec.Maqd);
        alg?.Prepare(net);
        var r = CnnTrainer.Train(net, train, test, o, device, stepProgress: stepProgress, cancel: cancel);
        double? folded = null;
        if (fold)
        {
            net.FoldNorms();
            folded = CnnTrainer.Accuracy(net, test, device, o.LimitTest);
        }
        int? distinct = null;
        if (alg is not null)
        {
            distinct = 0;
            foreach (var layer in alg.Convert(net))
            {
                distinct = Math.Max(distinct.Value, DistinctCount(layer.Codes));
                layer.Dispose();
            }
        }
        return new MaqdRunOutcome(spec, o.Batch, r.TestAccuracy, folded, r.Seconds, r.Steps, distinct);
    }

    private static int DistinctCount(Tensor codes)
    {
        var seen = new HashSet<sbyte>();
        foreach (var c in codes.data<sbyte>()) seen.Add(c);
        return seen.Count;
    }

    /// <summary>The (weight states, activation states) pairs of the table.</summary>
    public static IReadOnlyList<(int W, int A)> TablePairs { get; } = [(3, 15), (15, 15), (3, 3), (255, 255)];

    /// <summary>float+BN, float+LBN (WS), float+LBN without WS, then MaQD+LBN at each of <see cref="TablePairs"/>.</summary>
    public static IReadOnlyList<MaqdRunSpec> SweepPlan(Surrogate surrogate, double width) =>
    [
        new("float + BN", "bn", null, false),
        new("float + LBN", "lbn", null, true),
        new("float + LBN, no WS", "lbn", null, false),
        .. TablePairs.Select(p => new MaqdRunSpec(new MaqdConfig(p.W, p.A, surrogate, width).Label + " + LBN", "lbn", new MaqdConfig(p.W, p.A, surrogate, width))),
    ];
}
