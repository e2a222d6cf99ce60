// Contract: the core of `matq bench ptq` — one float model, one calibration set, and for every method × bits × group
// a fresh quantization of the float weights in memory, its perplexity on each eval set, then the weights restored.
using System.Diagnostics;
using System.Text;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Tokenizers;
using static TorchSharp.torch;

namespace Matq.Evaluation;

/// <summary>
/// A method as the sweep names it: "rtn", "gptq", "athena", "rtn-mse" (= rtn with clip=mse), or any of them with
/// registry options after colons, e.g. "gptq:act-order=true:percdamp=0.1" (the whole token is the row's label).
/// </summary>
public sealed record PtqMethod(string Label, string Method, IReadOnlyDictionary<string, string> Options)
{
    public static PtqMethod Parse(string token)
    {
        var parts = token.Trim().Split(':', StringSplitOptions.TrimEntries);
        if (parts[0].Length == 0) throw new MatqException($"--methods '{token}': empty method name");
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        var name = parts[0].ToLowerInvariant();
        if (name == "rtn-mse") { name = "rtn"; options["clip"] = "mse"; }
        foreach (var kv in parts.Skip(1))
        {
            int eq = kv.IndexOf('=');
            if (eq <= 0) throw new MatqException($"--methods '{token}': '{kv}' is not KEY=VALUE (e.g. gptq:act-order=true)");
            options[kv[..eq].Trim()] = kv[(eq + 1)..].Trim();
        }
        var registration = AlgorithmRegistry.Get(name);   // unknown → one line naming the known methods
        return new PtqMethod(token.Trim().ToLowerInvariant(), registration.Name, options);
    }

    public bool NeedsCalibration => AlgorithmRegistry.Get(Method).NeedsCalibration;
}

/// <summary>A tokenized eval text: Name as typed (sotu-test), Label for captions, the tokens and the UTF-8 bytes they cover.</summary>
public sealed record EvalSet(string Name, string Label, int[] Tokens, long Bytes)
{
    /// <summary>Encodes <paramref name="text"/>; with <paramref name="maxTokens"/>, keeps the first N tokens and counts the bytes they decode to.</summary>
    public static EvalSet Tokenize(string name, string label, string text, TextTokenizer tokenizer, int? maxTokens = null)
    {
        if (maxTokens is < 2) throw new MatqException($"--max-tokens {maxTokens} is out of range: at least 2");
        var ids = tokenizer.Encode(text);
        long bytes = Encoding.UTF8.GetByteCount(text);
        if (maxTokens is int m && m < ids.Length)
        {
            ids = ids[..m];
            bytes = Encoding.UTF8.GetByteCount(tokenizer.Decode(ids));   // the bytes these tokens actually cover
        }
        return new EvalSet(name, label, ids, bytes);
    }
}

public sealed record PtqSweepOptions
{
    public required IReadOnlyList<PtqMethod> Methods { get; init; }
    public required IReadOnlyList<int> Bits { get; init; }
    /// <summary>Group sizes along the input dimension; 0 = per output channel.</summary>
    public required IReadOnlyList<int> Groups { get; init; }
    public bool Symmetric { get; init; }
    public bool IncludeHead { get; init; }
    public int Seed { get; init; } = 1234;
    public PerplexityOptions Eval { get; init; } = new();
}

/// <summary>
/// One row: Method "float" (Bits 0) or a method label; Group 0 = per-channel; Scores in eval-set order; HessianRatio
/// = mean over layers of tr(ΔW H ΔWᵀ) after the method ÷ the same for RTN on the same H (second-order methods only);
/// WidthNote says when the group is ≥ some layers' input width (those layers are per-channel).
/// </summary>
public sealed record PtqSweepRow(string Method, int Bits, int Group, IReadOnlyList<PerplexityResult> Scores, double? HessianRatio,
    double QuantizeSeconds, double EvalSeconds, string? WidthNote = null)
{
    public bool IsFloat => Bits == 0;
    public string GroupText => IsFloat ? "-" : Group == 0 ? "per-channel" : $"g{Group}";
}

/// <summary>Where the sweep is: run k of n (the float row is run 0), its label, and the stage.</summary>
public sealed record PtqSweepProgress(int Run, int Runs, string Label, string Stage, int Done, int Total);

/// <summary>The rows (float first, then method × bits × group in the given order) and the group sizes skipped.</summary>
public sealed record PtqSweepResult(IReadOnlyList<PtqSweepRow> Rows, IReadOnlyList<string> Skipped);

public static class PtqSweep
{
    /// <summary>
    /// Runs the sweep on <paramref name="model"/> (float, on <paramref name="device"/>). <paramref name="calibration"/> is
    /// required when a method needs it. Every parameter is snapshotted first and copied back after every run (also
    /// on failure), so each run starts from the float weights and the model is left as it was given.
    /// </summary>
    public static PtqSweepResult Run(LlamaForCausalLM model, PtqSweepOptions options, IReadOnlyList<EvalSet> sets,
        CalibrationTokens? calibration, Device device, Action<PtqSweepProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (sets.Count == 0) throw new MatqException("--data is empty: give at least one eval set");
        options.Eval.Validate();
        var (runs, skipped) = Plan(model, options);
        if (calibration is null && runs.Any(r => r.Method.NeedsCalibration))
            throw new MatqException($"method '{runs.First(r => r.Method.NeedsCalibration).Method.Label}' needs calibration windows");

        using var snapshot = new WeightSnapshot(model);
        var rows = new List<PtqSweepRow>();
        int total = runs.Count + 1;
        rows.Add(Evaluate(model, sets, options.Eval, device, "float", 0, 0, null, 0, null, 0, total, progress, cancel));
        for (int k = 0; k < runs.Count; k++)
        {
            var run = runs[k];
            string label = $"{run.Method.Label} {run.Config.Bits}-bit {(run.Group == 0 ? "per-channel" : $"g{run.Group}")}";
            try
            {
                progress?.Invoke(new PtqSweepProgress(k + 1, total, label, "quantizing", 0, 1));
                var context = new QuantizationContext(model, device, calibration is null ? null : () => calibration, options.Seed,
                    e => progress?.Invoke(new PtqSweepProgress(k + 1, total, label, "quantizing", e.LayersDone, Math.Max(1, e.LayerCount))), cancel);
                var result = QuantizationRunner.Run(run.Config, context);
                Install(model, result, device);
                rows.Add(Evaluate(model, sets, options.Eval, device, run.Method.Label, run.Config.Bits, run.Group, HessianRatio(result),
                    result.Seconds, run.WidthNote, k + 1, total, progress, cancel));
            }
            finally
            {
                snapshot.Restore();
            }
        }
        return new PtqSweepResult(rows, skipped);
    }

    private sealed record PlannedRun(PtqMethod Method, QuantizationConfig Config, int Group, string? WidthNote);

    /// <summary>
    /// Builds every method × bits × group config and creates its algorithm (which validates method options and bits),
    /// so bad combinations fail with one line before a model is loaded. Returns them in sweep order.
    /// </summary>
    public static IReadOnlyList<(PtqMethod Method, QuantizationConfig Config, int Group)> Check(PtqSweepOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.Methods.Count == 0 || o.Bits.Count == 0 || o.Groups.Count == 0)
            throw new MatqException("--methods, --bits and --groups each need at least one value");
        foreach (var g in o.Groups)
            if (g < 0) throw new MatqException($"--groups {g} is invalid: 0 = per-channel, or a positive number of input columns");
        var list = new List<(PtqMethod, QuantizationConfig, int)>();
        foreach (var method in o.Methods)
            foreach (var bits in o.Bits)
                foreach (var g in o.Groups)
                {
                    try
                    {
                        var config = new QuantizationConfig(method.Method, bits, g, o.Symmetric, o.IncludeHead, method.Options);
                        AlgorithmRegistry.Create(config);
                        list.Add((method, config, g));
                    }
                    catch (MatqException e)
                    {
                        throw new MatqException($"--methods {method.Label} at {bits} bits: {e.Message}", e);
                    }
                }
        return list;
    }

    // Check's runs minus group sizes ≥ every quantized layer's input width (identical to per-channel), which are reported.
    private static (List<PlannedRun> Runs, List<string> Skipped) Plan(LlamaForCausalLM model, PtqSweepOptions o)
    {
        var all = Check(o);
        var probe = new QuantizationConfig("rtn", 8, 0, includeLmHead: o.IncludeHead);
        var widths = LinearSelection.Select(model, probe).Select(l => l.Weight.shape[1]).ToArray();
        var skipped = o.Groups.Where(g => g > 0 && widths.All(w => g >= w)).Distinct()
            .Select(g => $"g{g}: every quantized layer has at most {widths.Max()} input columns, so it equals per-channel").ToList();
        var runs = new List<PlannedRun>();
        foreach (var (method, config, g) in all)
        {
            if (g > 0 && widths.All(w => g >= w)) continue;
            int covered = g == 0 ? 0 : widths.Count(w => g >= w);
            string? note = covered == 0 ? null : $"g{g} ≥ the input width of {covered} of {widths.Length} layers (per-channel there)";
            runs.Add(new PlannedRun(method, config, g, note));
        }
        return (runs, skipped);
    }

    // Ŵ of every quantized linear (as served: stored-order groups, perm undone) copied into the model's weights.
    private static void Install(LlamaForCausalLM model, QuantizationResult result, Device device)
    {
        var modules = model.Linears(includeHead: true).ToDictionary(l => l.Name, l => l.Module, StringComparer.Ordinal);
        using var noGrad = no_grad();
        foreach (var layer in result.Layers)
        {
            using var scope = NewDisposeScope();
            var weight = LinearSelection.WeightOf(layer.Name, modules[layer.Name]);
            weight.copy_(layer.Dequantize(device).to(weight.dtype));
        }
    }

    /// <summary>Mean over layers of HessianErrorAfter / HessianErrorBefore (before = plain RTN on the same H); null without them.</summary>
    public static double? HessianRatio(QuantizationResult result)
    {
        var ratios = result.Layers.Select(l => l.Report)
            .Where(r => r.HessianErrorBefore is > 0 && r.HessianErrorAfter is not null)
            .Select(r => r.HessianErrorAfter!.Value / r.HessianErrorBefore!.Value).ToArray();
        return ratios.Length == 0 ? null : ratios.Average();
    }

    private static PtqSweepRow Evaluate(LlamaForCausalLM model, IReadOnlyList<EvalSet> sets, PerplexityOptions eval, Device device,
        string method, int bits, int group, double? ratio, double quantizeSeconds, string? note, int run, int runs,
        Action<PtqSweepProgress>? progress, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        string label = bits == 0 ? "float" : $"{method} {bits}-bit {(group == 0 ? "per-channel" : $"g{group}")}";
        var scores = new List<PerplexityResult>();
        foreach (var set in sets)
            scores.Add(Perplexity.Evaluate(model, set.Tokens, set.Bytes, eval, device,
                (done, total) => progress?.Invoke(new PtqSweepProgress(run, runs, label, $"scoring {set.Name}", done, total)), cancel));
        return new PtqSweepRow(method, bits, group, scores, ratio, quantizeSeconds, sw.Elapsed.TotalSeconds, note);
    }

    /// <summary>Copies of every parameter (same device and dtype), copied back by Restore.</summary>
    private sealed class WeightSnapshot : IDisposable
    {
        private readonly List<(Tensor Live, Tensor Saved)> _pairs = [];

        public WeightSnapshot(LlamaForCausalLM model)
        {
            using var noGrad = no_grad();
            foreach (var (_, p) in model.named_parameters())
                _pairs.Add((p, p.detach().clone().DetachFromDisposeScope()));
        }

        public void Restore()
        {
            using var noGrad = no_grad();
            foreach (var (live, saved) in _pairs) live.copy_(saved);
        }

        public void Dispose()
        {
            foreach (var (_, saved) in _pairs) saved.Dispose();
        }
    }
}
