// Contract: trains one Fashion-MNIST net from scratch for the MaQD comparison: float (ReLU) or MaQD-quantized (MaQD
// config), normalized with BN or LBN, then optionally folds the norms and measures the folded net. The sweep plan is
// the issue's table: float+BN, float+LBN (with weight standardization, LBN's default), MaQD+LBN at (weight states,
// activation states) ∈ {(3,15), (15,15), (3,3), (255,255)} with the first conv and the classifier at 255 states (8-bit,
// the usual choice), and (3,15), (15,15) again with every layer at N, each at every (batch, images, epochs) setting.
using Matq.Algorithms.MaQD;
using Matq.Models.Vision;

namespace Matq.Training.Vision;

/// <summary>One row of the comparison: a norm ("bn" | "lbn" | "none"), MaQD settings (null = float net), float
/// weight standardization (null = the norm's default; MaQD always standardizes), and optionally a vision folder whose
/// float weights (same architecture, norm and standardization) the run starts from instead of the seeded init.</summary>
public sealed record MaqdRunSpec(string Label, string Norm, MaqdConfig? Maqd, bool? StandardizeWeights = null, string? Init = null);

/// <summary>Test accuracy in eval mode (running statistics), after folding (null when not folded), training seconds,
/// and the largest number of distinct weight codes seen in one layer: of the inner layers (N states) and of the first
/// conv and classifier (null for float nets).</summary>
public sealed record MaqdRunOutcome(MaqdRunSpec Spec, int Batch, double Accuracy, double? FoldedAccuracy, double Seconds,
    int Steps, int? MaxDistinctCodes, int? EndDistinctCodes = null);

public static class MaqdTraining
{
    /// <summary>Throws the fold error before any training when <paramref name="arch"/> with <paramref name="norm"/> has no norm layers.</summary>
    public static void CheckFoldable(VisionNetConfig arch, string norm)
    {
        var cfg = arch.WithNorm(norm);
        if (cfg.Norm == "none")
            throw new MatqException($"this {cfg.Arch} has no normalization layers to fold (norm none): folding needs a net trained with norm bn or lbn");
    }

    /// <summary>Throws unless <paramref name="dir"/> is a vision folder of exactly <paramref name="cfg"/> (reads config.json only).</summary>
    public static void CheckInit(VisionNetConfig cfg, string dir)
    {
        var have = VisionNetIO.ReadConfig(dir);
        if (have.ToJson() != cfg.ToJson())
            throw new MatqException($"--init {dir} holds a {have.Arch} [{string.Join(", ", have.Widths)}] with norm {have.Norm}{(have.StandardizeWeights ? " and standardized weights" : "")}, "
                + $"but this run trains a {cfg.Arch} [{string.Join(", ", cfg.Widths)}] with norm {cfg.Norm}{(cfg.StandardizeWeights ? " and standardized weights" : "")}: train it with `matq train cnn --norm {cfg.Norm}`");
    }

    /// <summary>Copies the float weights (and norm statistics) of the folder into <paramref name="net"/> (before MaQD is installed).</summary>
    private static void LoadInit(VisionNet net, string dir)
    {
        CheckInit(net.Config, dir);
        using var src = VisionNetIO.Load(dir);
        var from = VisionNetIO.FloatState(src).ToDictionary(t => t.Name, t => t.Value);
        using var noGrad = no_grad();
        foreach (var (name, t) in VisionNetIO.FloatState(net)) t.copy_(from[name]);
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
        if (spec.Init is { } init) LoadInit(net, init);
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
        int? inner = null, ends = null;
        if (alg is not null)
        {
            var (first, last) = net.EndLayers();
            var endNames = net.QuantLayers().Where(l => ReferenceEquals(l.Layer, first) || ReferenceEquals(l.Layer, last)).Select(l => l.Name).ToHashSet();
            inner = 0; ends = 0;
            foreach (var layer in alg.Convert(net))
            {
                int d = DistinctCount(layer.Codes);
                if (endNames.Contains(layer.Name)) ends = Math.Max(ends.Value, d); else inner = Math.Max(inner.Value, d);
                layer.Dispose();
            }
        }
        return new MaqdRunOutcome(spec, o.Batch, r.TestAccuracy, folded, r.Seconds, r.Steps, inner, ends);
    }

    private static int DistinctCount(Tensor codes)
    {
        var seen = new HashSet<sbyte>();
        foreach (var c in codes.data<sbyte>()) seen.Add(c);
        return seen.Count;
    }

    /// <summary>The (weight states, activation states) pairs of the issue's table.</summary>
    public static IReadOnlyList<(int W, int A)> TablePairs { get; } = [(3, 15), (15, 15), (3, 3), (255, 255)];

    /// <summary>The pairs the sweep also trains with every layer at N (the two the issue sets targets for).</summary>
    public static IReadOnlyList<(int W, int A)> AllLayerPairs { get; } = [(3, 15), (15, 15)];

    /// <summary>float+BN, float+LBN, MaQD+LBN at each of <see cref="TablePairs"/> with the first conv and the classifier
    /// at <paramref name="endStates"/> weight states, then <see cref="AllLayerPairs"/> with every layer at N.</summary>
    public static IReadOnlyList<MaqdRunSpec> SweepPlan(Surrogate surrogate, double width, int endStates = 255)
    {
        var plan = new List<MaqdRunSpec> { new("float + BN", "bn", null, false), new("float + LBN", "lbn", null, true) };
        foreach (var (w, a) in TablePairs) plan.Add(Spec(new MaqdConfig(w, a, surrogate, width, endStates)));
        foreach (var (w, a) in AllLayerPairs.Where(p => p.W != endStates)) plan.Add(Spec(new MaqdConfig(w, a, surrogate, width)));
        return plan;

        static MaqdRunSpec Spec(MaqdConfig c) => new($"{c.Label} + LBN, {c.LayersText}", "lbn", c);
    }
}