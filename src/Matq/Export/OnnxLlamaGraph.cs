// Contract: a decoder of any family of the description (Llama 1-3, Mistral, Qwen 2/3, Phi-3 split, Gemma 2/3) as an ONNX
// graph of standard opset-17 ops, computing what LlamaForCausalLM.forward computes without a KV cache: input_ids int64
// [batch, sequence] → logits float [batch, sequence, vocab] for every position (each call recomputes the whole
// sequence; sequence ≤ max_position_embeddings). One function per block feature, each driven by the description:
//   Embed      Gather(embed_tokens [V, H], ids) → h [B, T, H] (bf16/f16 sources stay 16-bit in the file + Cast); × √H (Gemma)
//   RmsNorm    x · 1/√(mean(x²) + eps) · w over the last axis; Gemma's (1 + w) is folded into the initializer (fp32, exact)
//   Rope       cos/sin tables [P, D] per rope spec as RotaryEmbedding computes them (fp32, rotate-half), sliced to [T, D]
//              once per spec and shared by the layers of that type (Gemma 3: local and global)
//   Mask       [T, T] 0 / −∞ per window: causal (key j ≤ query i), and i − W < j on sliding layers; built once per window
//   Attention  q, k, v [B, heads, T, D]; q/k RMSNorm over D (Qwen 3, Gemma 3); rope; GQA repeats each kv head
//              (Unsqueeze → Expand → Reshape); q·kᵀ·scale (head_dim^−½ or query_pre_attn_scalar^−½), soft-cap
//              cap·tanh(s / cap) (Gemma 2), + mask, Softmax, ·v, o_proj
//   Mlp        down(act(gate(x)) · up(x)), act = silu(g) = g·Sigmoid(g), or tanh GELU ½g(1 + tanh(√(2/π)(g + 0.044715g³)))
//   Block      pre-norm x += attn(norm(x)); x += mlp(norm(x)), or Gemma's sandwich x += norm(attn(norm(x))), x += norm(mlp(norm(x)))
//   Head       final norm, lm_head (or MatMul with the transposed embedding when tied), final soft-cap (Gemma 2)
// Linears are emitted by a callback (plain MatMul, or MatMulNBits for quantized weights); biases are Add nodes.
using Matq.Formats.Onnx;
using Matq.Models;
using Matq.Runtime.Models;
using static TorchSharp.torch;

namespace Matq.Export;

/// <summary>Emits y = x·Wᵀ for the linear whose HF module name is given (no bias); returns y's value name.</summary>
internal delegate string LinearEmitter(OnnxGraphBuilder g, string module, string input);

internal static class OnnxLlamaGraph
{
    public const string InputName = "input_ids";
    public const string OutputName = "logits";

    /// <param name="floats">Float tensor by HF name (embedding, norms, biases, and float linears' weights).</param>
    /// <param name="embeddingStoredAs">How the source stores the embedding (F32/F16/BF16): the file keeps that width.</param>
    public static OnnxGraph Build(LlamaConfig c, string name, Func<string, float[]> floats, LinearEmitter linear,
        OnnxDataType embeddingStoredAs = OnnxDataType.Float)
    {
        var graph = new OnnxGraph(name);
        var g = new OnnxGraphBuilder(graph);
        g.Reserve(InputName);
        graph.Inputs.Add(new OnnxValueInfo(InputName, OnnxDataType.Int64, ["batch", "sequence"]));

        var d = new Decoder(g, c, floats, linear);
        var (x, embed) = d.Embed(embeddingStoredAs);
        for (int i = 0; i < c.NumLayers; i++) x = d.Block(i, x);
        var logits = d.Head(x, embed);

        graph.Nodes.Add(new OnnxNode("Identity", [logits], [OutputName], "logits/Identity", []));
        graph.Outputs.Add(new OnnxValueInfo(OutputName, OnnxDataType.Float, ["batch", "sequence", (long)c.VocabSize]));
        return graph;
    }

    /// <summary>cos and sin [P, D] of <paramref name="rope"/> as RotaryEmbedding computes them (fp32), P = max_position_embeddings.</summary>
    public static (float[] Cos, float[] Sin) RopeTables(LlamaConfig c, RopeSpec rope)
    {
        using var rotary = new RotaryEmbedding(c.HeadDim, rope, Math.Min(c.MaxPositionEmbeddings, 4096));
        using var scope = NewDisposeScope();
        var (cos, sin) = rotary.ForRange(0, c.MaxPositionEmbeddings, CPU, ScalarType.Float32);
        return (cos.contiguous().data<float>().ToArray(), sin.contiguous().data<float>().ToArray());
    }

    /// <summary>The block features; values shared by layers (sequence length, rope slices, masks) are built once.</summary>
    private sealed class Decoder(OnnxGraphBuilder g, LlamaConfig c, Func<string, float[]> floats, LinearEmitter linear)
    {
        private readonly Dictionary<RopeSpec, (string Cos, string Sin)> _ropes = new();
        private readonly Dictionary<int, string> _masks = new();   // window (0 = full causal) → [T, T] mask
        private string? _seqLen;
        private (string Rows, string Cols)? _positions;

        // T as [1], from the input's shape
        private string SeqLen => _seqLen ??= g.Op("Shape", "seq_len", [InputName], OnnxAttribute.Of("start", 1L), OnnxAttribute.Of("end", 2L));

        public (string X, string Embedding) Embed(OnnxDataType storedAs)
        {
            var embed = g.FloatWeight("model.embed_tokens.weight", [c.VocabSize, c.HiddenSize], floats("model.embed_tokens.weight"), storedAs);
            var x = g.Op("Gather", "model.embed_tokens/out", [embed, InputName], OnnxAttribute.Of("axis", 0L));
            // √hidden rounded to fp32, the model dtype, as HF's normalizer tensor is
            if (c.ScaleEmbeddings) x = g.Op("Mul", "model.embed_tokens/scaled", [x, g.Scalar((float)Math.Sqrt(c.HiddenSize))]);
            return (x, embed);
        }

        public string Block(int i, string x)
        {
            var pre = $"model.layers.{i}";
            var attn = Attention(i, RmsNorm($"{pre}.input_layernorm", x, c.HiddenSize));
            if (c.SandwichNorms) attn = RmsNorm($"{pre}.post_attention_layernorm", attn, c.HiddenSize);
            x = g.Op("Add", $"{pre}.attn_residual", [x, attn]);
            var m = RmsNorm(c.SandwichNorms ? $"{pre}.pre_feedforward_layernorm" : $"{pre}.post_attention_layernorm", x, c.HiddenSize);
            var mlp = Mlp(pre + ".mlp", m);
            if (c.SandwichNorms) mlp = RmsNorm($"{pre}.post_feedforward_layernorm", mlp, c.HiddenSize);
            return g.Op("Add", $"{pre}.mlp_residual", [x, mlp]);
        }

        public string Head(string x, string embed)
        {
            var final = RmsNorm("model.norm", x, c.HiddenSize);
            string logits = c.TieWordEmbeddings
                ? g.Op("MatMul", "lm_head/tied", [final, g.Op("Transpose", "model.embed_tokens.weight_t", [embed], OnnxAttribute.Of("perm", new long[] { 1, 0 }))])
                : linear(g, "lm_head", final);
            return c.FinalLogitSoftcap is double cap ? SoftCap(logits, cap, "lm_head/softcapped") : logits;
        }

        private string Attention(int layer, string a)
        {
            var pre = $"model.layers.{layer}.self_attn";
            int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim;
            var q = Heads(Linear($"{pre}.q_proj", a, c.QkvBias), heads, $"{pre}.q");
            var k = Heads(Linear($"{pre}.k_proj", a, c.QkvBias), kvHeads, $"{pre}.k");
            var v = Heads(Linear($"{pre}.v_proj", a, c.QkvBias), kvHeads, $"{pre}.v");
            if (c.QkNorm)
            {
                q = RmsNorm($"{pre}.q_norm", q, d);
                k = RmsNorm($"{pre}.k_norm", k, d);
            }
            var (cos, sin) = RopeSlices(c.RopeOf(layer));
            q = Rope(q, cos, sin, $"{pre}.q_rope");
            k = Rope(k, cos, sin, $"{pre}.k_rope");
            if (heads != kvHeads)
            {
                k = RepeatKv(k, $"{pre}.k_rep");
                v = RepeatKv(v, $"{pre}.v_rep");
            }
            var kt = g.Op("Transpose", $"{pre}.k_t", [k], OnnxAttribute.Of("perm", new long[] { 0, 1, 3, 2 }));
            var scores = g.Op("MatMul", $"{pre}.scores", [q, kt]);
            scores = g.Op("Mul", $"{pre}.scaled", [scores, g.Scalar((float)c.AttentionScale)]);
            if (c.AttnLogitSoftcap is double cap) scores = SoftCap(scores, cap, $"{pre}.softcapped");
            scores = g.Op("Add", $"{pre}.masked", [scores, Mask(c.WindowOf(layer))]);
            var probs = g.Op("Softmax", $"{pre}.probs", [scores], OnnxAttribute.Of("axis", -1L));
            var ctx = g.Op("MatMul", $"{pre}.context", [probs, v]);
            ctx = g.Op("Transpose", $"{pre}.context_t", [ctx], OnnxAttribute.Of("perm", new long[] { 0, 2, 1, 3 }));
            ctx = g.Op("Reshape", $"{pre}.merged", [ctx, g.Int64s(0, 0, heads * d)]);
            return Linear($"{pre}.o_proj", ctx, c.OutputBias);
        }

        private string Mlp(string pre, string m)
        {
            var gate = Linear($"{pre}.gate_proj", m, c.MlpBias);
            var up = Linear($"{pre}.up_proj", m, c.MlpBias);
            var act = c.Activation == Activation.GeluTanh ? GeluTanh(gate, pre) : g.Op("Mul", $"{pre}.silu", [gate, g.Op("Sigmoid", $"{pre}.gate_sigmoid", [gate])]);
            return Linear($"{pre}.down_proj", g.Op("Mul", $"{pre}.gated", [act, up]), c.MlpBias);
        }

        // ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), torch's gelu(approximate="tanh")
        private string GeluTanh(string x, string pre)
        {
            var cube = g.Op("Mul", $"{pre}.gelu_cube", [g.Op("Mul", $"{pre}.gelu_square", [x, x]), x]);
            var inner = g.Op("Add", $"{pre}.gelu_inner", [x, g.Op("Mul", $"{pre}.gelu_cubic_term", [cube, g.Scalar(0.044715f)])]);
            var t = g.Op("Tanh", $"{pre}.gelu_tanh", [g.Op("Mul", $"{pre}.gelu_arg", [inner, g.Scalar((float)Math.Sqrt(2 / Math.PI))])]);
            return g.Op("Mul", $"{pre}.gelu", [g.Op("Mul", $"{pre}.gelu_half", [x, g.Scalar(0.5f)]), g.Op("Add", $"{pre}.gelu_one_plus", [t, g.Scalar(1f)])]);
        }

        // cap·tanh(x / cap)
        private string SoftCap(string x, double cap, string hint)
        {
            var c32 = g.Scalar((float)cap);
            return g.Op("Mul", hint, [g.Op("Tanh", hint + "_tanh", [g.Op("Div", hint + "_div", [x, c32])]), c32]);
        }

        // over the last axis of size n (hidden, or head_dim for q/k norms)
        private string RmsNorm(string module, string x, int n)
        {
            var w = floats(module + ".weight");
            if (w.Length != n) throw new MatqException($"{module}.weight has {w.Length} values, expected {n}");
            if (c.NormOffset) w = w.Select(v => 1f + v).ToArray();
            var wi = g.Initializer(OnnxTensor.FromFloats(module + ".weight", [n], w));
            var sq = g.Op("Mul", module + "/square", [x, x]);
            var mean = g.Op("ReduceMean", module + "/mean_square", [sq], OnnxAttribute.Of("axes", new long[] { -1 }), OnnxAttribute.Of("keepdims", 1L));
            var rms = g.Op("Sqrt", module + "/rms", [g.Op("Add", module + "/mean_square_eps", [mean, g.Scalar((float)c.RmsNormEps)])]);
            var normed = g.Op("Mul", module + "/normed", [x, g.Op("Reciprocal", module + "/inv_rms", [rms])]);
            return g.Op("Mul", module + "/out", [normed, wi]);
        }

        private string Linear(string module, string x, bool bias)
        {
            var y = linear(g, module, x);
            if (!bias) return y;
            var b = floats(module + ".bias");
            return g.Op("Add", module + "/biased", [y, g.Initializer(OnnxTensor.FromFloats(module + ".bias", [b.Length], b))]);
        }

        // cos/sin [T, D] of one rope spec
        private (string Cos, string Sin) RopeSlices(RopeSpec rope)
        {
            if (_ropes.TryGetValue(rope, out var slices)) return slices;
            int p = c.MaxPositionEmbeddings, d = c.HeadDim;
            var tag = _ropes.Count == 0 ? "rope" : $"rope{_ropes.Count}";
            var (cosTable, sinTable) = RopeTables(c, rope);
            var zero = g.Int64s(0);
            var cos = g.Op("Slice", tag + "/cos", [g.Initializer(OnnxTensor.FromFloats(tag + ".cos_table", [p, d], cosTable)), zero, SeqLen, zero]);
            var sin = g.Op("Slice", tag + "/sin", [g.Initializer(OnnxTensor.FromFloats(tag + ".sin_table", [p, d], sinTable)), zero, SeqLen, zero]);
            return _ropes[rope] = (cos, sin);
        }

        // [T, T] float: 0 where query i sees key j (j ≤ i, and i − j < W with a window W), −∞ elsewhere
        private string Mask(int? window)
        {
            int key = window ?? 0;
            if (_masks.TryGetValue(key, out var mask)) return mask;
            var (rows, cols) = Positions();
            var blocked = g.Op("Greater", "causal_future", [cols, rows]);
            if (window is int w)
            {
                // i − j ≥ W: further back than the window
                var behind = g.Op("Sub", $"window{w}_distance", [rows, cols]);
                var old = g.Op("GreaterOrEqual", $"window{w}_past", [behind, g.Int64s(true, w)]);
                blocked = g.Op("Or", $"window{w}_blocked", [blocked, old]);
            }
            return _masks[key] = g.Op("Where", window is int ww ? $"window{ww}_mask" : "causal_mask", [blocked, g.Scalar(float.NegativeInfinity), g.Scalar(0f)]);
        }

        // positions 0..T−1 as a column [T, 1] (queries) and a row [1, T] (keys)
        private (string Rows, string Cols) Positions()
        {
            if (_positions is { } p) return p;
            var t = g.Op("Squeeze", "seq_len_scalar", [SeqLen, g.Int64s(0)]);
            var range = g.Op("Range", "positions", [g.Int64s(true, 0), t, g.Int64s(true, 1)]);
            _positions = p = (g.Op("Unsqueeze", "positions_rows", [range, g.Int64s(1)]), g.Op("Unsqueeze", "positions_cols", [range, g.Int64s(0)]));
            return p;
        }

        // [B, T, n·D] → [B, n, T, D]
        private string Heads(string x, int n, string hint) =>
            g.Op("Transpose", hint + "_heads", [g.Op("Reshape", hint + "_split", [x, g.Int64s(0, 0, n, c.HeadDim)])],
                OnnxAttribute.Of("perm", new long[] { 0, 2, 1, 3 }));

        // x·cos + rotate_half(x)·sin, rotate_half(x) = concat(−x[.., D/2:], x[.., :D/2])
        private string Rope(string x, string cos, string sin, string hint)
        {
            int d = c.HeadDim;
            var last = g.Int64s(-1);
            var x1 = g.Op("Slice", hint + "_x1", [x, g.Int64s(0), g.Int64s(d / 2), last]);
            var x2 = g.Op("Slice", hint + "_x2", [x, g.Int64s(d / 2), g.Int64s(d), last]);
            var rotated = g.Op("Concat", hint + "_rotated", [g.Op("Neg", hint + "_neg_x2", [x2]), x1], OnnxAttribute.Of("axis", -1L));
            return g.Op("Add", hint, [g.Op("Mul", hint + "_cos", [x, cos]), g.Op("Mul", hint + "_sin", [rotated, sin])]);
        }

        // [B, Hkv, T, D] → [B, Hkv, 1, T, D] → Expand [B, Hkv, H/Hkv, T, D] → [B, H, T, D] (kv head j serves query heads j·g ..)
        private string RepeatKv(string x, string hint)
        {
            var u = g.Op("Unsqueeze", hint + "_unsqueezed", [x, g.Int64s(2)]);
            var e = g.Op("Expand", hint + "_expanded", [u, g.Int64s(1, 1, c.NumHeads / c.NumKvHeads, 1, 1)]);
            return g.Op("Reshape", hint, [e, g.Int64s(0, c.NumHeads, -1, c.HeadDim)]);
        }
    }
}
