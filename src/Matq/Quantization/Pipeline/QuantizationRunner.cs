// Contract: the single entry point of post-training quantization: config → registry → Prepare → Convert → a
// checked QuantizationResult (one result per selected linear, shapes equal to the model's, codes within the bits).
using System.Diagnostics;

namespace Matq.Quantization.Pipeline;

public static class QuantizationRunner
{
    /// <summary>Creates the config's algorithm from <see cref="AlgorithmRegistry"/> and runs it.</summary>
    public static QuantizationResult Run(QuantizationConfig config, QuantizationContext context) =>
        Run(AlgorithmRegistry.Create(config), context);

    /// <summary>Runs the method of <paramref name="method"/> with its typed config (no string options involved).</summary>
    public static QuantizationResult Run<TConfig>(AlgorithmRegistration<TConfig> method, QuantizationConfig config, TConfig settings,
        QuantizationContext context) where TConfig : notnull
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(settings);
        if (!string.Equals(config.Method, method.Name, StringComparison.Ordinal))
            throw new ArgumentException($"config is for method '{config.Method}', the typed config for '{method.Name}'", nameof(config));
        return Run(method.Build(config, settings), context);
    }

    /// <summary>Runs an already built algorithm (e.g. one made with a typed config in code).</summary>
    public static QuantizationResult Run(QuantizationAlgorithm algorithm, QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        ArgumentNullException.ThrowIfNull(context);
        if (context.Checkpoint is not null && !algorithm.SupportsResume)
            throw new MatqException($"method '{algorithm.Name}' does not walk the model block by block and cannot resume; methods that resume: {QuantizationCheckpoint.ResumableMethods}");
        var sw = Stopwatch.StartNew();
        var selected = LinearSelection.Select(context.Model, algorithm.Config);
        context.Bind(selected);
        context.Cancellation.ThrowIfCancellationRequested();
        algorithm.Prepare(context);
        context.Cancellation.ThrowIfCancellationRequested();
        var layers = algorithm.Convert(context);
        context.Cancellation.ThrowIfCancellationRequested();
        Check(algorithm, selected, layers);
        return new QuantizationResult(algorithm.Config, algorithm.Name, algorithm.DescribeSettings(), algorithm.TrainedBits.ToArray(),
            layers.ToArray(), sw.Elapsed.TotalSeconds);
    }

    // An algorithm bug must not become a silently wrong artifact: same layers as selected, shapes, code range.
    private static void Check(QuantizationAlgorithm algorithm, IReadOnlyList<SelectedLinear> selected, IReadOnlyList<QuantizedLinearResult> layers)
    {
        var byName = selected.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var layer in layers)
        {
            if (!byName.TryGetValue(layer.Name, out var s))
                throw new InvalidOperationException($"{algorithm.Name} returned '{layer.Name}', which was not selected for quantization");
            if (!seen.Add(layer.Name))
                throw new InvalidOperationException($"{algorithm.Name} returned '{layer.Name}' twice");
            var shape = s.Weight.shape;
            if (shape[0] != layer.OutFeatures || shape[1] != layer.InFeatures)
                throw new InvalidOperationException($"{algorithm.Name} returned '{layer.Name}' as [{layer.OutFeatures}, {layer.InFeatures}], the model's weight is [{shape[0]}, {shape[1]}]");
            if (layer.CodePieces is { } pieces)   // offloaded codes: checked as they stream, not read back whole (7 GB at 8B)
            {
                var entry = new Matq.Formats.Artifact.MatqQuantizedEntry(layer.WeightName, layer.OutFeatures, layer.InFeatures, layer.GroupSize, layer.Perm is not null, []);
                foreach (var _ in Matq.Formats.Artifact.MatqQuantizedTensor.CheckedCodes(entry, algorithm.Config.Bits, pieces())) { }
            }
            else layer.ToArtifactTensor().ValidateCodes(algorithm.Config.Bits);
        }
        var missing = selected.Where(s => !seen.Contains(s.Name)).Select(s => s.Name).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"{algorithm.Name} did not return {missing.Count} selected layer(s), e.g. '{missing[0]}'");
    }
}
