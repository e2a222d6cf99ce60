// Contract: serves a .matq artifact at r bits (1..master c) as a LlamaForCausalLM whose quantized linears hold
// ŵ_r = α(S(q, r)·2^(c−r) − z) with the perm undone (simulated quantization); per-layer bits via a plan.
using Matq.Formats.Artifact;
using Matq.Models;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Plans;
using static TorchSharp.torch;

namespace Matq.Loading;

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
    /// <summary>The model of <paramref name="path"/> served at <paramref name="bits"/> (see <see cref="LoadServed(string, int?, Device?, ScalarType, bool, BitPlan?)"/>).</summary>
    public static LlamaForCausalLM Load(string path, int bits, Device? device = null, ScalarType dtype = ScalarType.Float32,
        bool extraPrecision = false, BitPlan? plan = null) =>
        LoadServed(path, bits, device, dtype, extraPrecision, plan).Model;

    /// <summary>
    /// Opens and validates the artifact, then builds the model. <paramref name="bits"/> null = master bits. Plan keys are
    /// HF module or weight names ("model.layers.0.mlp.down_proj[.weight]") of quantized tensors; values override bits.
    /// Extra precision keeps the overflow bucket 2^r instead of clamping it (measured effective bits in Layers).
    /// </summary>
    public static ServedModel LoadServed(string path, int? bits = null, Device? device = null, ScalarType dtype = ScalarType.Float32,
        bool extraPrecision = false, BitPlan? plan = null)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new MatqException($"dtype {dtype} is not a float type (use float32, bfloat16 or float16)");
        var artifact = MatqArtifact.Open(path);   // validates layout, shapes, code range, finite values
        return LoadServed(artifact, bits, device, dtype, extraPrecision, plan);
    }

    public static ServedModel LoadServed(MatqArtifact artifact, int? bits, Device? device, ScalarType dtype, bool extraPrecision,
        BitPlan? plan)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        device ??= CPU;
        var md = artifact.Metadata;
        int c = md.MasterBits;
        int r = bits ?? c;
        ArtifactSource.CheckBits(r, c, "--bits");
        var perLayer = BitPlan.PerLayerBits(artifact, plan, r);
        var config = ArtifactSource.ModelConfig(artifact);

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
        ArtifactSource.CheckBits(bits, masterBits, $"bits for '{q.Name}'");
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
}
