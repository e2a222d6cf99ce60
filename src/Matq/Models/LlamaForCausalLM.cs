// The decoder causal LM of every family the description covers: ids [B, T] int64 -> logits [B, T, vocab] fp32, via
// embed (× √hidden for Gemma) -> layers -> norm -> lm_head (-> final soft-cap). Parameter names equal HF's
// (model.layers.N.self_attn.q_proj.weight ...; Phi-3's fused projections are split, see LlamaTensors); a tied head
// reuses model.embed_tokens.weight.
using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using Matq.Runtime.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Models;

/// <summary>The "model." part: embed_tokens, layers, norm.</summary>
public sealed class LlamaModel : nn.Module
{
    [ComponentName(Name = "embed_tokens")] internal readonly TokenEmbedding embed_tokens;
    [ComponentName(Name = "layers")] internal readonly ModuleList<LlamaDecoderLayer> layers;
    [ComponentName(Name = "norm")] internal readonly RmsNorm norm;

    internal LlamaModel(LlamaConfig c, RotaryEmbedding rotary, RotaryEmbedding localRotary, WeightSource? source, Device? device, ScalarType dtype) : base("LlamaModel")
    {
        var emb = source?.Invoke("model.embed_tokens.weight", new long[] { c.VocabSize, c.HiddenSize })
            ?? ModelInit.Normal(new long[] { c.VocabSize, c.HiddenSize }, device, dtype);
        embed_tokens = new TokenEmbedding(emb);
        layers = nn.ModuleList(Enumerable.Range(0, c.NumLayers)
            .Select(i => new LlamaDecoderLayer(c, i, c.SlidingLayers[i] ? localRotary : rotary, source, device, dtype)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, source?.Invoke("model.norm.weight", new long[] { c.HiddenSize }), device, dtype, c.NormOffset);
        RegisterComponents();
    }
}

public sealed class LlamaForCausalLM : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "model")] private readonly LlamaModel model;
    // null when the config ties the head to the embedding
    [ComponentName(Name = "lm_head")] private nn.Module<Tensor, Tensor>? lm_head;

    private readonly RotaryEmbedding _rotary;
    // the sliding layers' rope: the same object as _rotary unless the config has a rope per layer type
    private readonly RotaryEmbedding _localRotary;

    public LlamaConfig Config { get; }
    public IReadOnlyList<LlamaDecoderLayer> Layers { get; }
    public RmsNorm Norm => model.norm;
    public TokenEmbedding Embedding => model.embed_tokens;
    /// <summary>The separate head, or null when tied to <see cref="Embedding"/>.</summary>
    public nn.Module<Tensor, Tensor>? LmHead => lm_head;
    public RotaryEmbedding Rotary => _rotary;

    /// <summary>
    /// Builds the model; every parameter comes from <paramref name="source"/> by HF name (see LlamaLoader), or, when it
    /// returns null / is null, from HF-style init (normal 0.02, norms one, biases zero).
    /// </summary>
    public LlamaForCausalLM(LlamaConfig config, WeightSource? source = null, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base("LlamaForCausalLM")
    {
        Config = config;
        _finalCap = config.FinalLogitSoftcap?.ToScalar();
        _rotary = RotaryEmbedding.For(config);
        _localRotary = config.LocalRope == config.Rope ? _rotary : new RotaryEmbedding(config.HeadDim, config.LocalRope, Math.Min(config.MaxPositionEmbeddings, 4096));
        model = new LlamaModel(config, _rotary, _localRotary, source, device, dtype);
        Layers = model.layers.ToArray();
        if (!config.TieWordEmbeddings)
            lm_head = ModelInit.Linear(source, "lm_head", config.HiddenSize, config.VocabSize, bias: false, device, dtype);
        RegisterComponents();
    }

    // held, not an implicit temporary: TorchSharp 0.107's finalizer thread can free a temporary Scalar mid-call
    private readonly Scalar? _finalCap;

    public ScalarType Dtype => model.norm.Weight.dtype;
    public Device Device => model.norm.Weight.device;

    /// <summary>ids [B, T] int64 -> hidden [B, T, hidden] in the model dtype (× √hidden, rounded to that dtype as HF does, for Gemma).</summary>
    public Tensor EmbedTokens(Tensor ids)
    {
        if (!Config.ScaleEmbeddings) return model.embed_tokens.call(ids);
        using var scope = NewDisposeScope();
        var h = model.embed_tokens.call(ids);
        var normalizer = tensor(Math.Sqrt(Config.HiddenSize), dtype: h.dtype, device: h.device);
        return (h * normalizer).MoveToOuterDisposeScope();
    }

    /// <summary>hidden [B, T, hidden] -> logits [B, T, vocab] fp32.</summary>
    public Tensor FinalNormAndHead(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var h = model.norm.call(hidden);
        var logits = lm_head is null ? F.linear(h, model.embed_tokens.Weight) : lm_head.call(h);
        if (_finalCap is not null) logits = logits.div(_finalCap).tanh().mul(_finalCap);
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor ids) => forward(ids, null, 0);

    /// <summary>
    /// ids [B, T] at positions startPos..startPos+T-1. With a cache (which must hold exactly startPos tokens), keys and
    /// values of earlier tokens are reused and the new ones appended; returns logits for the T new tokens.
    /// </summary>
    public Tensor forward(Tensor ids, KvCache? cache, long startPos)
    {
        if (ids.ndim != 2) throw new ArgumentException($"ids must be [batch, seq], got [{string.Join(", ", ids.shape)}]");
        if (cache is not null && cache.Length != startPos)
            throw new ArgumentException($"the cache holds {cache.Length} tokens but startPos is {startPos}");
        if (cache is null && startPos != 0)
            throw new ArgumentException("startPos > 0 needs a KvCache holding the earlier tokens");
        using var scope = NewDisposeScope();
        var h = EmbedTokens(ids);
        // cos/sin once per forward and rope, shared by the layers of that rope: [1, 1, T, D] in the model dtype
        var tables = new Dictionary<RotaryEmbedding, (Tensor Cos, Tensor Sin)>(ReferenceEqualityComparer.Instance);
        foreach (var layer in Layers)
        {
            if (!tables.TryGetValue(layer.Rotary, out var cs)) tables[layer.Rotary] = cs = layer.RopeFor(startPos, ids.shape[1], h);
            h = layer.Forward(h, cs.Cos, cs.Sin, cache);
        }
        return FinalNormAndHead(h).MoveToOuterDisposeScope();
    }

    /// <summary>The quantizable linears with their HF module names, in execution order; lm_head last when asked and untied.</summary>
    public IReadOnlyList<(string Name, nn.Module<Tensor, Tensor> Module)> Linears(bool includeHead = false)
    {
        var list = new List<(string, nn.Module<Tensor, Tensor>)>();
        foreach (var layer in Layers)
            foreach (var local in LlamaDecoderLayer.LinearNames)
                list.Add(($"model.layers.{layer.Index}.{local}", layer.GetLinear(local)));
        if (includeHead && lm_head is not null) list.Add(("lm_head", lm_head));
        return list;
    }

    /// <summary>Swaps the linear named <paramref name="name"/> (HF module name, e.g. "model.layers.3.mlp.up_proj" or "lm_head").</summary>
    public void ReplaceLinear(string name, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (name == "lm_head")
        {
            if (lm_head is null) throw new ArgumentException("lm_head is tied to model.embed_tokens in this model and cannot be replaced alone");
            lm_head = module;
            register_module("lm_head", null!);
            register_module("lm_head", module);
            return;
        }
        const string prefix = "model.layers.";
        int dot = name.IndexOf('.', prefix.Length);
        if (!name.StartsWith(prefix, StringComparison.Ordinal) || dot < 0
            || !int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), out var i) || i < 0 || i >= Layers.Count)
            throw new ArgumentException($"'{name}' is not a linear of this model (expected model.layers.<0..{Layers.Count - 1}>.<self_attn|mlp>.<proj> or lm_head)");
        Layers[i].ReplaceLinear(name[(dot + 1)..], module);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _rotary.Dispose();
            if (!ReferenceEquals(_localRotary, _rotary)) _localRotary.Dispose();
        }
        base.Dispose(disposing);
    }
}
