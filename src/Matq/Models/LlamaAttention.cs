// Grouped-query self-attention of a decoder layer: x [B, T, hidden] -> [B, T, hidden]. q/k/v/o are swappable [out, in]
// linears registered under their HF names; optional q/k RMSNorm over head_dim (Qwen 3, Gemma 3) before rotary on q and k;
// causal attention, limited to a sliding window when the layer has one, scaled by the config's attention scale, with
// an optional tanh soft-cap on the scores (Gemma 2).
using Matq.Runtime.Models;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Models;

public sealed class LlamaAttention : nn.Module
{
    [ComponentName(Name = "q_proj")] private nn.Module<Tensor, Tensor> q_proj;
    [ComponentName(Name = "k_proj")] private nn.Module<Tensor, Tensor> k_proj;
    [ComponentName(Name = "v_proj")] private nn.Module<Tensor, Tensor> v_proj;
    [ComponentName(Name = "o_proj")] private nn.Module<Tensor, Tensor> o_proj;
    [ComponentName(Name = "q_norm")] private readonly RmsNorm? q_norm;
    [ComponentName(Name = "k_norm")] private readonly RmsNorm? k_norm;

    private readonly int _heads, _kvHeads, _headDim;
    private readonly int? _window;
    private readonly double _scale;
    // Scalars the module holds (TorchSharp 0.107 frees an implicit temporary's handle from the finalizer thread mid-call)
    private readonly Scalar _scaleScalar;
    private readonly Scalar? _capScalar, _windowScalar;
    private readonly double? _softcap;
    private readonly bool _defaultScale;

    /// <summary>The sliding window of this layer (null = full causal attention).</summary>
    public int? Window => _window;

    public static readonly string[] LinearNames = { "q_proj", "k_proj", "v_proj", "o_proj" };

    public LlamaAttention(LlamaConfig c, string prefix, WeightSource? source, Device? device, ScalarType dtype, int layer = 0) : base("LlamaAttention")
    {
        _heads = c.NumHeads;
        _kvHeads = c.NumKvHeads;
        _headDim = c.HeadDim;
        _window = c.WindowOf(layer);
        _windowScalar = _window is int win ? ((long)win).ToScalar() : null;
        _scale = c.AttentionScale;
        _defaultScale = c.QueryPreAttnScalar is null || c.QueryPreAttnScalar == c.HeadDim;
        _softcap = c.AttnLogitSoftcap;
        _scaleScalar = _scale.ToScalar();
        _capScalar = _softcap?.ToScalar();
        if (c.QkNorm)
        {
            q_norm = new RmsNorm(c.HeadDim, c.RmsNormEps, source?.Invoke(prefix + ".q_norm.weight", new long[] { c.HeadDim }), device, dtype, c.NormOffset);
            k_norm = new RmsNorm(c.HeadDim, c.RmsNormEps, source?.Invoke(prefix + ".k_norm.weight", new long[] { c.HeadDim }), device, dtype, c.NormOffset);
        }
        q_proj = ModelInit.Linear(source, prefix + ".q_proj", c.HiddenSize, c.QDim, c.QkvBias, device, dtype);
        k_proj = ModelInit.Linear(source, prefix + ".k_proj", c.HiddenSize, c.KvDim, c.QkvBias, device, dtype);
        v_proj = ModelInit.Linear(source, prefix + ".v_proj", c.HiddenSize, c.KvDim, c.QkvBias, device, dtype);
        o_proj = ModelInit.Linear(source, prefix + ".o_proj", c.QDim, c.HiddenSize, c.OutputBias, device, dtype);
        RegisterComponents();
    }

    public nn.Module<Tensor, Tensor> Get(string name) => name switch
    {
        "q_proj" => q_proj, "k_proj" => k_proj, "v_proj" => v_proj, "o_proj" => o_proj,
        _ => throw new ArgumentException($"no linear '{name}' in self_attn (have {string.Join(", ", LinearNames)})"),
    };

    /// <summary>Swaps a projection (e.g. for a quantized wrapper) and re-registers it under the same HF name.</summary>
    public void Replace(string name, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        _ = Get(name);
        switch (name)
        {
            case "q_proj": q_proj = module; break;
            case "k_proj": k_proj = module; break;
            case "v_proj": v_proj = module; break;
            default: o_proj = module; break;
        }
        register_module(name, null!);
        register_module(name, module);
    }

    /// <summary>
    /// x [B, T, hidden]; cos/sin broadcastable to [B, H, T, D]. With a cache, k/v of earlier tokens are prepended and
    /// the T new queries sit at the end of the key axis.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache = null, int layer = 0)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        // [B, T, H*D] -> [B, T, H, D] (q/k norms over D here) -> [B, H, T, D]
        var q = q_proj.call(x).view(b, t, _heads, _headDim);
        var k = k_proj.call(x).view(b, t, _kvHeads, _headDim);
        if (q_norm is not null) q = q_norm.call(q);
        if (k_norm is not null) k = k_norm.call(k);
        q = q.transpose(1, 2);
        k = k.transpose(1, 2);
        var v = v_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);

        long past = 0;
        if (cache is not null)
        {
            (k, v) = cache.Append(layer, k, v);
            past = k.shape[2] - t;
        }

        // GQA: each kv head serves H/Hkv query heads; [B, Hkv, S, D] -> [B, Hkv, g, S, D] -> [B, H, S, D]
        int groups = _heads / _kvHeads;
        if (groups > 1)
        {
            long s = k.shape[2];
            k = k.unsqueeze(2).expand(b, _kvHeads, groups, s, _headDim).reshape(b, _heads, s, _headDim);
            v = v.unsqueeze(2).expand(b, _kvHeads, groups, s, _headDim).reshape(b, _heads, s, _headDim);
        }

        long total = past + t;
        // the window masks something only once a query can see more than W keys
        bool windowed = _window is int w && total > w;
        Tensor? mask = null;
        if (windowed || (past > 0 && t > 1) || (!_defaultScale || _softcap is not null) && t > 1)
        {
            // query i (absolute position past+i) sees keys j with past+i-W < j <= past+i; bool mask [T, S], true = attend
            var rows = arange(past, total, dtype: ScalarType.Int64, device: x.device).unsqueeze(1);
            var cols = arange(0, total, dtype: ScalarType.Int64, device: x.device).unsqueeze(0);
            mask = cols.le(rows);
            if (windowed) mask = mask.logical_and(cols.gt(rows.sub(_windowScalar!)));
        }

        Tensor attn;
        if (!_defaultScale || _softcap is not null)
        {
            // eager attention as HF's: scores = q·kᵀ·scale [B, H, T, S] -> soft-cap -> mask -> softmax in fp32 -> ·v
            var scores = q.matmul(k.transpose(-2, -1)).mul(_scaleScalar);
            if (_capScalar is not null) scores = scores.div(_capScalar).tanh().mul(_capScalar);
            if (mask is not null) scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity);
            attn = scores.softmax(-1, ScalarType.Float32).to(q.dtype).matmul(v);
        }
        else if (mask is not null)
        {
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        }
        else
        {
            // no cache and no window in reach: plain causal; one new query after a cache sees every key
            attn = F.scaled_dot_product_attention(q, k, v, is_casual: past == 0 && t > 1);
        }
        // [B, H, T, D] -> [B, T, H*D]
        var merged = attn.transpose(1, 2).reshape(b, t, _heads * _headDim);
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }
}
