// Contract: OmniQuant's learnable equivalent transformation (LET, Shao et al. 2024) for one decoder block, as per-channel
// scales moved between activations and weights: trained as transforms inside the block's LwcLinears (the float block is
// unchanged by them), then folded into the preceding norm or linear, so the model stays the same float function and
// the quantized linears are those of the transformed weights. Scales only: RMSNorm has no bias to absorb a shift, and
// OmniQuant itself turns shifts off for LLaMA and for weight-only quantization.
//
// Each linear's transformed weight is W' = diag(1/so) · W · diag(si) (b' = b / so); its transform-mode forward is
// y = so ⊙ (Ŵ' (x / si)) + b, exactly W x + b while Ŵ' = W'. Pairs (s = exp(θ), θ trained, starting at 0 = identity):
//   qkv: input_layernorm → q, k, v          si = s_qkv [hidden]; the norm's weight γ ← γ / s_qkv ((1 + γ) / s − 1 with offset)
//   fc:  mlp input norm → gate, up           si = s_fc [hidden]; that norm likewise
//   vo:  v_proj → o_proj                     v: so = s_vo [kvDim]; o: si = s_vo repeated for the query heads of each kv
//                                            head (attention mixes v's rows per channel, so the scale passes through it)
//   qk:  q_proj ↔ k_proj                     q: so = t [qDim], k: so = 1/t [kvDim], t = exp(θ_qk) with θ_qk
//                                            [kvHeads, headDim/2] shared by the two halves RoPE rotates together
//                                            (rotate_half pairs d and d + headDim/2), so q'·k' = q·k after RoPE; not
//                                            used with q/k norms (a per-channel scale does not pass an RMSNorm).
using Matq.Models;
using Matq.Runtime.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.OmniQuant;

public sealed class LetBlock : IDisposable
{
    private readonly LlamaConfig _c;
    private readonly Dictionary<string, Parameter> _theta = new(StringComparer.Ordinal);   // pair → θ

    public const string Qkv = "qkv", Fc = "fc", Vo = "vo", Qk = "qk";

    /// <summary>The pairs of a block of <paramref name="c"/> that touch one of <paramref name="localLinears"/> ("self_attn.q_proj", ...).</summary>
    public LetBlock(LlamaConfig c, IEnumerable<string> localLinears, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        _c = c;
        var selected = localLinears.ToHashSet(StringComparer.Ordinal);
        bool Any(params string[] names) => names.Any(n => selected.Contains(n));
        if (Any("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")) Add(Qkv, [c.HiddenSize], device);
        if (Any("mlp.gate_proj", "mlp.up_proj")) Add(Fc, [c.HiddenSize], device);
        if (Any("self_attn.v_proj", "self_attn.o_proj")) Add(Vo, [c.KvDim], device);
        if (!c.QkNorm && c.HeadDim % 2 == 0 && Any("self_attn.q_proj", "self_attn.k_proj")) Add(Qk, [c.NumKvHeads, c.HeadDim / 2], device);
    }

    private void Add(string pair, long[] shape, Device? device) =>
        _theta[pair] = new Parameter(zeros(shape, dtype: ScalarType.Float32, device: device));

    /// <summary>The log-scales Adam trains.</summary>
    public IReadOnlyList<Parameter> Trainable => _theta.Values.ToList();

    /// <summary>Checkpoint names "&lt;block prefix&gt;.let.&lt;pair&gt;" and their tensors.</summary>
    public IEnumerable<(string Name, Tensor Value)> State(string blockPrefix) => _theta.Select(kv => (blockPrefix + ".let." + kv.Key, (Tensor)kv.Value));

    /// <summary>θ of a pair, or null when this block has no such pair.</summary>
    public Parameter? Theta(string pair) => _theta.GetValueOrDefault(pair);

    /// <summary>(si [in], so [out]) of a block-local linear (null = 1), differentiable in θ.</summary>
    public (Tensor? In, Tensor? Out) Scales(string local)
    {
        Tensor? S(string pair) => _theta.TryGetValue(pair, out var t) ? t.exp() : null;
        return local switch
        {
            "self_attn.q_proj" => (S(Qkv), QkScale(query: true)),
            "self_attn.k_proj" => (S(Qkv), QkScale(query: false) is { } t ? t.reciprocal() : null),
            "self_attn.v_proj" => (S(Qkv), S(Vo)),
            "self_attn.o_proj" => (S(Vo) is { } s ? RepeatKv(s) : null, null),
            "mlp.gate_proj" or "mlp.up_proj" => (S(Fc), null),
            _ => (null, null),
        };
    }

    /// <summary>W' = diag(1/so) · W · diag(si) for W [out, in].</summary>
    public static Tensor Transform(Tensor w, Tensor? si, Tensor? so)
    {
        Tensor r = w;
        if (si is not null) r = r * si.unsqueeze(0);
        if (so is not null) r = r / so.unsqueeze(1);
        return r;
    }

    /// <summary>Folds the scales into <paramref name="layer"/>'s float tensors in place (norms, weights, biases of the
    /// original linears, selected or not), leaving the block the same float function; returns the parameters it changed,
    /// as (module of the layer, parameter name).</summary>
    public IReadOnlyList<(nn.Module Module, string Parameter)> Fold(LlamaDecoderLayer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var changed = new List<(nn.Module, string)>();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (_theta.TryGetValue(Qkv, out var qkv)) changed.Add((FoldNorm(layer.InputLayerNorm, qkv.exp()), "weight"));
        if (_theta.TryGetValue(Fc, out var fc)) changed.Add((FoldNorm(layer.MlpInputNorm, fc.exp()), "weight"));
        foreach (var local in LlamaDecoderLayer.LinearNames)
        {
            var (si, so) = Scales(local);
            if (si is null && so is null) continue;
            var linear = layer.GetLinear(local) as TorchSharp.Modules.Linear
                ?? throw new InvalidOperationException($"LET folds into nn.Linear; {local} is {layer.GetLinear(local).GetType().Name}");
            var w = linear.weight!;
            w.copy_(Transform(w.to(ScalarType.Float32), si, so).to(w.dtype));
            changed.Add((linear, "weight"));
            if (linear.bias is { } b && so is not null)
            {
                b.copy_((b.to(ScalarType.Float32) / so).to(b.dtype));
                changed.Add((linear, "bias"));
            }
        }
        return changed;
    }

    private static RmsNorm FoldNorm(RmsNorm norm, Tensor s)
    {
        var g = norm.Weight;
        var gf = g.to(ScalarType.Float32);
        g.copy_((norm.Offset ? (gf + 1) / s - 1 : gf / s).to(g.dtype));
        return norm;
    }

    // t [qDim] for q (each query head takes its kv head's t) or [kvDim] for k; θ_qk duplicated over the two RoPE halves
    private Tensor? QkScale(bool query)
    {
        if (!_theta.TryGetValue(Qk, out var theta)) return null;
        Tensor t = cat(new[] { theta, theta }, 1).exp().reshape(_c.KvDim);                   // [kvHeads·headDim]
        return query ? RepeatKv(t) : t;
    }

    // [kvHeads·headDim] → [heads·headDim]: query head h reads kv head h / (heads / kvHeads)
    private Tensor RepeatKv(Tensor s) =>
        s.reshape(_c.NumKvHeads, 1, _c.HeadDim).expand(_c.NumKvHeads, _c.NumKvGroups, _c.HeadDim).reshape(_c.QDim);

    public void Dispose()
    {
        foreach (var p in _theta.Values) p.Dispose();
    }
}
