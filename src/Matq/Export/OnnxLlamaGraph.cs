// Contract: the Llama-family decoder (Llama, Mistral, Qwen2, SmolLM) as an ONNX graph of standard opset-17 ops, computing
// what LlamaForCausalLM.forward computes without a KV cache: input_ids int64 [batch, sequence] → logits float
// [batch, sequence, vocab] for every position (each call recomputes the whole sequence; sequence ≤ max_position_embeddings).
//   embed      Gather(embed_tokens [V, H], ids) → h [B, T, H]; a bf16/f16 source embedding stays 16-bit in the file (+ Cast)
//   RMSNorm    x · 1/√(mean(x²) + eps) · w  (ReduceMean over the last axis)
//   RoPE       cos/sin tables [P, D] precomputed like RotaryEmbedding (fp32, rotate-half), sliced to [T, D];
//              x·cos + concat(−x[D/2:], x[:D/2])·sin on q, k [B, heads, T, D]
//   attention  q·kᵀ/√D + causal mask (−∞ above the diagonal, built from Range(T)), Softmax, ·v; GQA repeats each kv head
//              H/Hkv times (Unsqueeze → Expand → Reshape), then o_proj
//   MLP        down(silu(gate(x)) · up(x)),  silu(g) = g · Sigmoid(g)
//   head       lm_head, or MatMul with the transposed embedding when tied
// Linears are emitted by a callback (plain MatMul, or MatMulNBits for quantized weights); biases are Add nodes.
using Matq.Formats.Onnx;
using Matq.Models;
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
        // rope tables come from RotaryEmbedding (llama3 included); norms, MLP and attention are the classic Llama layout
        c.RequireClassicLlama("the ONNX export", llama3Rope: true);
        if (c.SlidingWindow is int w)
            throw new MatqException($"sliding_window = {w} (shorter than the context): the ONNX export builds full causal attention only; export a model without a sliding window");
        var graph = new OnnxGraph(name);
        var g = new OnnxGraphBuilder(graph);
        g.Reserve(InputName);
        graph.Inputs.Add(new OnnxValueInfo(InputName, OnnxDataType.Int64, ["batch", "sequence"]));

        int h = c.HiddenSize, heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim, p = c.MaxPositionEmbeddings;
        var embed = g.FloatWeight("model.embed_tokens.weight", [c.VocabSize, h], floats("model.embed_tokens.weight"), embeddingStoredAs);
        var x = g.Op("Gather", "model.embed_tokens/out", [embed, InputName], OnnxAttribute.Of("axis", 0L));

        // positions 0..T−1: T as [1] from the input's shape; cos/sin [T, D]; mask [T, T]
        var t1 = g.Op("Shape", "seq_len", [InputName], OnnxAttribute.Of("start", 1L), OnnxAttribute.Of("end", 2L));
        var (cosTable, sinTable) = RopeTables(c);
        var zero1 = g.Int64s(0);
        var axis0 = g.Int64s(0);
        var cos = g.Op("Slice", "rope/cos", [g.Initializer(OnnxTensor.FromFloats("rope.cos_table", [p, d], cosTable)), zero1, t1, axis0]);
        var sin = g.Op("Slice", "rope/sin", [g.Initializer(OnnxTensor.FromFloats("rope.sin_table", [p, d], sinTable)), zero1, t1, axis0]);
        var mask = CausalMask(g, t1);

        for (int i = 0; i < c.NumLayers; i++)
        {
            var pre = $"model.layers.{i}";
            var a = RmsNorm(g, c, floats, $"{pre}.input_layernorm", x);
            var q = Heads(g, Linear(g, c, floats, linear, $"{pre}.self_attn.q_proj", a, c.QkvBias), heads, d, $"{pre}.self_attn.q");
            var k = Heads(g, Linear(g, c, floats, linear, $"{pre}.self_attn.k_proj", a, c.QkvBias), kvHeads, d, $"{pre}.self_attn.k");
            var v = Heads(g, Linear(g, c, floats, linear, $"{pre}.self_attn.v_proj", a, c.QkvBias), kvHeads, d, $"{pre}.self_attn.v");
            q = Rope(g, q, cos, sin, d, $"{pre}.self_attn.q_rope");
            k = Rope(g, k, cos, sin, d, $"{pre}.self_attn.k_rope");
            if (heads != kvHeads)
            {
                k = RepeatKv(g, k, heads, kvHeads, d, $"{pre}.self_attn.k_rep");
                v = RepeatKv(g, v, heads, kvHeads, d, $"{pre}.self_attn.v_rep");
            }
            var kt = g.Op("Transpose", $"{pre}.self_attn.k_t", [k], OnnxAttribute.Of("perm", new long[] { 0, 1, 3, 2 }));
            var scores = g.Op("MatMul", $"{pre}.self_attn.scores", [q, kt]);
            scores = g.Op("Mul", $"{pre}.self_attn.scaled", [scores, g.Scalar((float)(1.0 / Math.Sqrt(d)))]);
            scores = g.Op("Add", $"{pre}.self_attn.masked", [scores, mask]);
            var probs = g.Op("Softmax", $"{pre}.self_attn.probs", [scores], OnnxAttribute.Of("axis", -1L));
            var ctx = g.Op("MatMul", $"{pre}.self_attn.context", [probs, v]);
            ctx = g.Op("Transpose", $"{pre}.self_attn.context_t", [ctx], OnnxAttribute.Of("perm", new long[] { 0, 2, 1, 3 }));
            ctx = g.Op("Reshape", $"{pre}.self_attn.merged", [ctx, g.Int64s(0, 0, heads * d)]);
            var o = Linear(g, c, floats, linear, $"{pre}.self_attn.o_proj", ctx, c.OutputBias);
            x = g.Op("Add", $"{pre}.attn_residual", [x, o]);

            var m = RmsNorm(g, c, floats, $"{pre}.post_attention_layernorm", x);
            var gate = Linear(g, c, floats, linear, $"{pre}.mlp.gate_proj", m, c.MlpBias);
            var up = Linear(g, c, floats, linear, $"{pre}.mlp.up_proj", m, c.MlpBias);
            var silu = g.Op("Mul", $"{pre}.mlp.silu", [gate, g.Op("Sigmoid", $"{pre}.mlp.gate_sigmoid", [gate])]);
            var down = Linear(g, c, floats, linear, $"{pre}.mlp.down_proj", g.Op("Mul", $"{pre}.mlp.gated", [silu, up]), c.MlpBias);
            x = g.Op("Add", $"{pre}.mlp_residual", [x, down]);
        }

        var final = RmsNorm(g, c, floats, "model.norm", x);
        string logits = c.TieWordEmbeddings
            ? g.Op("MatMul", "lm_head/tied", [final, g.Op("Transpose", "model.embed_tokens.weight_t", [embed], OnnxAttribute.Of("perm", new long[] { 1, 0 }))])
            : linear(g, "lm_head", final);
        graph.Nodes.Add(new OnnxNode("Identity", [logits], [OutputName], "logits/Identity", []));
        graph.Outputs.Add(new OnnxValueInfo(OutputName, OnnxDataType.Float, ["batch", "sequence", (long)c.VocabSize]));
        return graph;
    }

    /// <summary>cos and sin [P, D] as RotaryEmbedding computes them (fp32), P = max_position_embeddings.</summary>
    public static (float[] Cos, float[] Sin) RopeTables(LlamaConfig c)
    {
        using var rope = RotaryEmbedding.For(c);
        using var scope = NewDisposeScope();
        var (cos, sin) = rope.ForRange(0, c.MaxPositionEmbeddings, CPU, ScalarType.Float32);
        return (cos.contiguous().data<float>().ToArray(), sin.contiguous().data<float>().ToArray());
    }

    // [T, T] float: 0 where key j ≤ query i, −∞ above the diagonal
    private static string CausalMask(OnnxGraphBuilder g, string t1)
    {
        var t = g.Op("Squeeze", "seq_len_scalar", [t1, g.Int64s(0)]);
        var range = g.Op("Range", "positions", [g.Int64s(true, 0), t, g.Int64s(true, 1)]);
        var rows = g.Op("Unsqueeze", "positions_rows", [range, g.Int64s(1)]);
        var cols = g.Op("Unsqueeze", "positions_cols", [range, g.Int64s(0)]);
        var future = g.Op("Greater", "causal_future", [cols, rows]);
        return g.Op("Where", "causal_mask", [future, g.Scalar(float.NegativeInfinity), g.Scalar(0f)]);
    }

    private static string RmsNorm(OnnxGraphBuilder g, LlamaConfig c, Func<string, float[]> floats, string module, string x)
    {
        var w = g.Initializer(OnnxTensor.FromFloats(module + ".weight", [c.HiddenSize], floats(module + ".weight")));
        var sq = g.Op("Mul", module + "/square", [x, x]);
        var mean = g.Op("ReduceMean", module + "/mean_square", [sq], OnnxAttribute.Of("axes", new long[] { -1 }), OnnxAttribute.Of("keepdims", 1L));
        var rms = g.Op("Sqrt", module + "/rms", [g.Op("Add", module + "/mean_square_eps", [mean, g.Scalar((float)c.RmsNormEps)])]);
        var normed = g.Op("Mul", module + "/normed", [x, g.Op("Reciprocal", module + "/inv_rms", [rms])]);
        return g.Op("Mul", module + "/out", [normed, w]);
    }

    private static string Linear(OnnxGraphBuilder g, LlamaConfig c, Func<string, float[]> floats, LinearEmitter linear, string module, string x, bool bias)
    {
        var y = linear(g, module, x);
        if (!bias) return y;
        var b = floats(module + ".bias");
        return g.Op("Add", module + "/biased", [y, g.Initializer(OnnxTensor.FromFloats(module + ".bias", [b.Length], b))]);
    }

    // [B, T, n·D] → [B, n, T, D]
    private static string Heads(OnnxGraphBuilder g, string x, int n, int d, string hint) =>
        g.Op("Transpose", hint + "_heads", [g.Op("Reshape", hint + "_split", [x, g.Int64s(0, 0, n, d)])],
            OnnxAttribute.Of("perm", new long[] { 0, 2, 1, 3 }));

    // x·cos + rotate_half(x)·sin, rotate_half(x) = concat(−x[.., D/2:], x[.., :D/2])
    private static string Rope(OnnxGraphBuilder g, string x, string cos, string sin, int d, string hint)
    {
        var last = g.Int64s(-1);
        var x1 = g.Op("Slice", hint + "_x1", [x, g.Int64s(0), g.Int64s(d / 2), last]);
        var x2 = g.Op("Slice", hint + "_x2", [x, g.Int64s(d / 2), g.Int64s(d), last]);
        var rotated = g.Op("Concat", hint + "_rotated", [g.Op("Neg", hint + "_neg_x2", [x2]), x1], OnnxAttribute.Of("axis", -1L));
        return g.Op("Add", hint, [g.Op("Mul", hint + "_cos", [x, cos]), g.Op("Mul", hint + "_sin", [rotated, sin])]);
    }

    // [B, Hkv, T, D] → [B, Hkv, 1, T, D] → Expand [B, Hkv, H/Hkv, T, D] → [B, H, T, D] (kv head j serves query heads j·g ..)
    private static string RepeatKv(OnnxGraphBuilder g, string x, int heads, int kvHeads, int d, string hint)
    {
        var u = g.Op("Unsqueeze", hint + "_unsqueezed", [x, g.Int64s(2)]);
        var e = g.Op("Expand", hint + "_expanded", [u, g.Int64s(1, 1, heads / kvHeads, 1, 1)]);
        return g.Op("Reshape", hint, [e, g.Int64s(0, heads, -1, d)]);
    }
}
