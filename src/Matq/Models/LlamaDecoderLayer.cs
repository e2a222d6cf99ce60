// One decoder block, [B, T, hidden] -> [B, T, hidden]. Pre-norm (Llama): h = x + attn(input_layernorm(x));
// out = h + mlp(post_attention_layernorm(h)). Sandwich (Gemma 2/3): h = x + post_attention_layernorm(attn(input_layernorm(x)));
// out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))). Runs alone for sequential calibration:
// forward(hidden) uses positions 0..T-1 and the layer's own rope (per layer type) and window.
using Matq.Runtime.Models;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Matq.Models;

public sealed class LlamaDecoderLayer : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "self_attn")] private readonly LlamaAttention self_attn;
    [ComponentName(Name = "mlp")] private readonly LlamaMlp mlp;
    [ComponentName(Name = "input_layernorm")] private readonly RmsNorm input_layernorm;
    [ComponentName(Name = "post_attention_layernorm")] private readonly RmsNorm post_attention_layernorm;
    [ComponentName(Name = "pre_feedforward_layernorm")] private readonly RmsNorm? pre_feedforward_layernorm;
    [ComponentName(Name = "post_feedforward_layernorm")] private readonly RmsNorm? post_feedforward_layernorm;

    private readonly RotaryEmbedding _rotary;

    public int Index { get; }
    public LlamaAttention SelfAttn => self_attn;
    public LlamaMlp Mlp => mlp;
    public RmsNorm InputLayerNorm => input_layernorm;
    public RmsNorm PostAttentionLayerNorm => post_attention_layernorm;
    /// <summary>The norm whose output feeds gate/up: pre_feedforward_layernorm with sandwich norms, else post_attention_layernorm.</summary>
    public RmsNorm MlpInputNorm => pre_feedforward_layernorm ?? post_attention_layernorm;
    /// <summary>The rope this layer uses (per layer type: Gemma 3's sliding layers have their own theta).</summary>
    public RotaryEmbedding Rotary => _rotary;

    /// <summary>Local names of the seven linears, in execution order ("self_attn.q_proj" ... "mlp.down_proj").</summary>
    public static IReadOnlyList<string> LinearNames { get; } =
        LlamaAttention.LinearNames.Select(n => "self_attn." + n).Concat(LlamaMlp.LinearNames.Select(n => "mlp." + n)).ToArray();

    public LlamaDecoderLayer(LlamaConfig c, int index, RotaryEmbedding rotary, WeightSource? source, Device? device, ScalarType dtype)
        : base("LlamaDecoderLayer")
    {
        Index = index;
        _rotary = rotary;
        var prefix = $"model.layers.{index}";
        self_attn = new LlamaAttention(c, prefix + ".self_attn", source, device, dtype, index);
        mlp = new LlamaMlp(c, prefix + ".mlp", source, device, dtype);
        RmsNorm Norm(string name) =>
            new(c.HiddenSize, c.RmsNormEps, source?.Invoke(prefix + "." + name + ".weight", new long[] { c.HiddenSize }), device, dtype, c.NormOffset);
        input_layernorm = Norm("input_layernorm");
        post_attention_layernorm = Norm("post_attention_layernorm");
        if (c.SandwichNorms)
        {
            pre_feedforward_layernorm = Norm("pre_feedforward_layernorm");
            post_feedforward_layernorm = Norm("post_feedforward_layernorm");
        }
        RegisterComponents();
    }

    public nn.Module<Tensor, Tensor> GetLinear(string localName) => Split(localName) switch
    {
        ("self_attn", var n) => self_attn.Get(n),
        ("mlp", var n) => mlp.Get(n),
        _ => throw new ArgumentException($"no linear '{localName}' in a decoder layer (have {string.Join(", ", LinearNames)})"),
    };

    public void ReplaceLinear(string localName, nn.Module<Tensor, Tensor> module)
    {
        switch (Split(localName))
        {
            case ("self_attn", var n): self_attn.Replace(n, module); break;
            case ("mlp", var n): mlp.Replace(n, module); break;
            default: throw new ArgumentException($"no linear '{localName}' in a decoder layer (have {string.Join(", ", LinearNames)})");
        }
    }

    private static (string, string) Split(string localName)
    {
        int dot = localName.IndexOf('.');
        return dot < 0 ? ("", localName) : (localName[..dot], localName[(dot + 1)..]);
    }

    /// <summary>hidden [B, T, hidden] at positions 0..T-1.</summary>
    public override Tensor forward(Tensor hidden) => forward(hidden, null);

    /// <summary>hidden [B, T, hidden]; positions [B, T] or [T] int64, null for 0..T-1.</summary>
    public Tensor forward(Tensor hidden, Tensor? positions)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = positions is null
            ? RopeFor(0, hidden.shape[1], hidden)
            : _rotary.ForPositions(positions, hidden.device, hidden.dtype);
        return Forward(hidden, cos, sin).MoveToOuterDisposeScope();
    }

    internal (Tensor Cos, Tensor Sin) RopeFor(long start, long length, Tensor like) => _rotary.ForRange(start, length, like.device, like.dtype);

    /// <summary>The block with precomputed cos/sin ([.., 1, T, D]); with a cache, earlier tokens' k/v are reused.</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        var attn = self_attn.Forward(input_layernorm.call(hidden), cos, sin, cache, Index);
        if (pre_feedforward_layernorm is null || post_feedforward_layernorm is null)
        {
            var h = hidden + attn;
            return (h + mlp.call(post_attention_layernorm.call(h))).MoveToOuterDisposeScope();
        }
        var h2 = hidden + post_attention_layernorm.call(attn);
        return (h2 + post_feedforward_layernorm.call(mlp.call(pre_feedforward_layernorm.call(h2)))).MoveToOuterDisposeScope();
    }
}
