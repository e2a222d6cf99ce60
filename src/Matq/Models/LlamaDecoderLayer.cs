// One pre-norm decoder block: h = x + attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h)).
// [B, T, hidden] -> [B, T, hidden]. Runs alone for sequential calibration: forward(hidden) uses positions 0..T-1.
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

    private readonly RotaryEmbedding _rotary;
    private readonly int? _maxSequence;

    public int Index { get; }
    public LlamaAttention SelfAttn => self_attn;
    public LlamaMlp Mlp => mlp;
    public RmsNorm InputLayerNorm => input_layernorm;
    public RmsNorm PostAttentionLayerNorm => post_attention_layernorm;

    /// <summary>Local names of the seven linears, in execution order ("self_attn.q_proj" ... "mlp.down_proj").</summary>
    public static IReadOnlyList<string> LinearNames { get; } =
        LlamaAttention.LinearNames.Select(n => "self_attn." + n).Concat(LlamaMlp.LinearNames.Select(n => "mlp." + n)).ToArray();

    public LlamaDecoderLayer(LlamaConfig c, int index, RotaryEmbedding rotary, WeightSource? source, Device? device, ScalarType dtype)
        : base("LlamaDecoderLayer")
    {
        Index = index;
        _rotary = rotary;
        _maxSequence = c.MaxSequenceLength;
        var prefix = $"model.layers.{index}";
        self_attn = new LlamaAttention(c, prefix + ".self_attn", source, device, dtype);
        mlp = new LlamaMlp(c, prefix + ".mlp", source, device, dtype);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps,
            source?.Invoke(prefix + ".input_layernorm.weight", new long[] { c.HiddenSize }), device, dtype);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps,
            source?.Invoke(prefix + ".post_attention_layernorm.weight", new long[] { c.HiddenSize }), device, dtype);
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

    internal (Tensor Cos, Tensor Sin) RopeFor(long start, long length, Tensor like)
    {
        if (_maxSequence is int max && start + length > max)
            throw new MatqException($"sequence of {start + length} tokens exceeds the model's sliding_window {max} (sliding-window attention is not supported; use shorter sequences)");
        return _rotary.ForRange(start, length, like.device, like.dtype);
    }

    /// <summary>The block with precomputed cos/sin ([.., 1, T, D]); with a cache, earlier tokens' k/v are reused.</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        var h = hidden + self_attn.Forward(input_layernorm.call(hidden), cos, sin, cache, Index);
        var output = h + mlp.call(post_attention_layernorm.call(h));
        return output.MoveToOuterDisposeScope();
    }
}
