// Contract: serves a .matq artifact at r bits (1..master c) as a LlamaForCausalLM whose quantized linears hold
// ŵ_r = α(S(q, r)·2^(c−r) − z) with the perm undone (simulated quantization); per-layer bits via a plan.
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Runtime.Serving;

/// <summary>How one quantized weight was served: bits r, and the measured bits/weight with extra precision: EffectiveBits =
/// r + escapes/N (escape stream), SparseBits = r + list bits/N (SparseOverflowList), PaperBits = r + overflow/N (the paper's
/// metric, not a stored size); all three are r without extra precision.</summary>
public sealed record ServedLayer(string Name, int Bits, double EffectiveBits, long OverflowCount, long Weights, double SparseBits)
{
    public double PaperBits => Weights == 0 ? Bits : Bits + (double)OverflowCount / Weights;
}

/// <summary>A served artifact: the model plus what was sliced; disposing disposes the model.</summary>
public sealed class ServedModel(LlamaForCausalLM model, string path, MatqMetadata metadata, int bits, bool extraPrecision,
    IReadOnlyList<ServedLayer> layers) : IDisposable
{
    public LlamaForCausalLM Model { get; } = model;
    public string Path { get; } = path;
    public MatqMetadata Metadata { get; } = metadata;
    /// <summary>Default bits (layers not in the plan).</summary>
    public int Bits { get; } = bits;
    public bool ExtraPrecision { get; } = extraPrecision;
    public IReadOnlyList<ServedLayer> Layers { get; } = layers;

    /// <summary>Weight-count-weighted mean of the served layers' effective bits.</summary>
    public double MeanEffectiveBits => Mean(l => l.EffectiveBits);

    /// <summary>The paper's r + overflow fraction, weight-count-weighted.</summary>
    public double MeanPaperBits => Mean(l => l.PaperBits);

    /// <summary>True stored bits/weight with sparse overflow lists, weight-count-weighted.</summary>
    public double MeanSparseBits => Mean(l => l.SparseBits);

    /// <summary>"paper r + overflow 2.049; stored: escape 2.213, sparse lists 2.160 bits/weight" (extra precision), else "".</summary>
    public string ExtraBitsText => ExtraPrecision
        ? $"paper r + overflow {MeanPaperBits:F3}; stored: escape bits {MeanEffectiveBits:F3}, sparse lists {MeanSparseBits:F3} bits/weight" : "";

    private double Mean(Func<ServedLayer, double> f) => Layers.Count == 0 ? 0 : Layers.Sum(l => f(l) * l.Weights) / Layers.Sum(l => (double)l.Weights);

    public void Dispose() => Model.Dispose();
}

public static class QuantizedModelLoader
{
    /// <summary>The model of <paramref name="path"/> served at <paramref name="bits"/> (see <see cref="LoadServed(string, int?, Device?, ScalarType, bool, IReadOnlyDictionary{string, int}?)"/>).</summary>
    public static LlamaForCausalLM Load(string path, int bits, Device? device = null, ScalarType dtype = ScalarType.Float32,
        bool extraPrecision = false, IReadOnlyDictionary<string, int>? plan = null) =>
        LoadServed(path, bits, device, dtype, extraPrecision, plan).Model;

    /// <summary>
    /// Opens and validates the artifact, then builds the model. <paramref name="bits"/> null = master bits. Plan keys are
    /// HF module or weight names ("model.layers.0.mlp.down_proj[.weight]") of quantized tensors; values override bits.
    /// Extra precision keeps the overflow bucket 2^r instead of clamping it (measured effective bits in Layers).
    /// </summary>
    public static ServedModel LoadServed(string path, int? bits = null, Device? device = null, ScalarType dtype = ScalarType.Float32,
        bool extraPrecision = false, IReadOnlyDictionary<string, int>? plan = null)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new MatqException($"dtype {dtype} is not a float type (use float32, bfloat16 or float16)");
        var artifact = MatqArtifact.Open(path);   // validates layout, shapes, code range, finite values
        return LoadServed(artifact, bits, device, dtype, extraPrecision, plan);
    }

    public static ServedModel LoadServed(MatqArtifact artifact, int? bits, Device? device, ScalarType dtype, bool extraPrecision,
        IReadOnlyDictionary<string, int>? plan)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        device ??= CPU;
        var md = artifact.Metadata;
        int c = md.MasterBits;
        int r = bits ?? c;
        CheckBits(r, c, "--bits");
        var perLayer = ResolvePlan(artifact, plan, r);
        var config = ModelConfig(artifact);

        var served = new List<ServedLayer>();
        var model = new LlamaForCausalLM(config, (name, shape) =>
        {
            using var scope = NewDisposeScope();
            Tensor t;
            if (artifact.TryGetQuantized(name, out var q))
            {
                int rb = perLayer[name];
                (t, var layer) = ServedWeight(q, c, rb, extraPrecision, device);
                served.Add(layer);
            }
            else
            {
                var f = artifact.GetFloat(name);
                t = tensor(f.Values, f.Shape, device: device);
            }
            if (!t.shape.SequenceEqual(shape))
                throw new MatqException($"{artifact.Path}: tensor '{name}' is {LlamaTensors.ShapeText(t.shape)}, the model_config needs {LlamaTensors.ShapeText(shape)}");
            return t.to(dtype).MoveToOuterDisposeScope();
        }, device, dtype);
        model.eval();
        return new ServedModel(model, artifact.Path, md, r, extraPrecision, served);
    }

    /// <summary>
    /// ŵ_r float32 [out, in] in the original column order: codes sliced to r bits (extra precision: overflow bucket
    /// kept), shifted back by 2^(c−r), dequantized with the master α and z over stored-order groups, perm undone.
    /// </summary>
    public static (Tensor Weight, ServedLayer Layer) ServedWeight(MatqQuantizedTensor q, int masterBits, int bits, bool extraPrecision, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(q);
        CheckBits(bits, masterBits, $"bits for '{q.Name}'");
        using var scope = NewDisposeScope();
        long o = q.OutFeatures, n = q.InFeatures;
        var codes = tensor(q.Codes, new long[] { o, n }, device: device);
        var scales = tensor(q.Scales, new long[] { o, q.GroupCount }, device: device);
        var zeros = tensor(q.Zeros, new long[] { o, q.GroupCount }, device: device);
        Tensor sliced;
        ServedLayer layer;
        if (extraPrecision)
        {
            var extra = TensorNestedSlice.SliceExtra(codes, masterBits, bits);
            sliced = extra.Codes;
            layer = new ServedLayer(q.Name, bits, extra.EffectiveBits, extra.OverflowCount, extra.Count, extra.SparseBits);
        }
        else
        {
            sliced = TensorNestedSlice.Slice(codes, masterBits, bits);
            layer = new ServedLayer(q.Name, bits, bits, 0, o * n, bits);
        }
        var w = TensorNestedSlice.Dequantize(sliced, scales, zeros, q.GroupWidth, masterBits, bits);
        return (QuantizedLinearResult.UndoPerm(w, q.Perm).MoveToOuterDisposeScope(), layer);
    }

    internal static void CheckBits(int r, int c, string what)
    {
        if (r > c)
            throw new MatqException($"{what} {r} is more than the artifact's {c} master bits (serve at 1..{c})");
        if (r < 1)
            throw new MatqException($"{what} {r} is out of range: serve at 1..{c} bits");
    }

    // weight name → bits for every quantized tensor; a plan naming anything else is refused.
    internal static Dictionary<string, int> ResolvePlan(MatqArtifact artifact, IReadOnlyDictionary<string, int>? plan, int defaultBits)
    {
        var bits = artifact.Quantized.ToDictionary(q => q.Name, _ => defaultBits, StringComparer.Ordinal);
        if (plan is null) return bits;
        foreach (var (key, value) in plan)
        {
            var name = key.EndsWith(".weight", StringComparison.Ordinal) ? key : key + ".weight";
            if (!bits.ContainsKey(name))
            {
                var example = artifact.Quantized.Count > 0 ? $" (quantized layers look like '{artifact.Quantized[0].Name[..^7]}')" : " (it has no quantized layers)";
                throw new MatqException($"plan names '{key}', which is not a quantized layer of {artifact.Path}{example}");
            }
            CheckBits(value, artifact.Metadata.MasterBits, $"plan bits for '{key}':");
            bits[name] = value;
        }
        return bits;
    }

    /// <summary>The artifact's model_config parsed as a Llama config, after checking that its tensors are exactly the ones it implies.</summary>
    public static LlamaConfig ModelConfig(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var json = artifact.Metadata.ModelConfig;
        if (json.ValueKind != System.Text.Json.JsonValueKind.Object || !json.EnumerateObject().Any())
            throw new MatqException($"{artifact.Path}: the artifact has no model_config (the HF config.json); it cannot be served as a model");
        var config = HfLlamaConfig.Parse(json.GetRawText(), $"{artifact.Path} model_config");
        CheckTensors(artifact, config);
        return config;
    }

    // Every tensor the config implies must be present (quantized or float) with its shape; nothing else may be.
    internal static void CheckTensors(MatqArtifact artifact, LlamaConfig config)
    {
        // one at a time: the first missing tensor stops a model_config that claims more layers than the artifact holds
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in LlamaTensors.Enumerate(config))
        {
            known.Add(name);
            long[]? actual = artifact.TryGetQuantized(name, out var q) ? [q.OutFeatures, q.InFeatures]
                : artifact.TryGetFloat(name, out var f) ? f.Shape : null;
            if (actual is null)
                throw new MatqException($"{artifact.Path}: tensor '{name}' is missing (its model_config expects it; is the artifact complete?)");
            if (!actual.SequenceEqual(shape))
                throw new MatqException($"{artifact.Path}: tensor '{name}' has shape {LlamaTensors.ShapeText(actual)} but the model_config implies {LlamaTensors.ShapeText(shape)}");
        }
        var extra = artifact.Quantized.Select(q => q.Name).Concat(artifact.Floats.Select(f => f.Name)).Where(n => !known.Contains(n)).ToList();
        if (extra.Count > 0)
            throw new MatqException($"{artifact.Path}: {extra.Count} tensor(s) not used by a {config.Family} model with this model_config: "
                + string.Join(", ", extra.Take(5).Select(n => $"'{n}'")) + (extra.Count > 5 ? ", ..." : ""));
    }
}
