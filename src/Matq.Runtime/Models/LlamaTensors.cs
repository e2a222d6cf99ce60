// The tensor names and shapes of a decoder for a config, in model order, in two views. Expected/Enumerate: the model's
// own names (HF names with q/k/v and gate/up split), which artifacts, exporters and runtimes use. Checkpoint: the names an
// HF checkpoint of the family holds: the same, except Phi-3 stores self_attn.qkv_proj ([q; k; v] rows) and
// mlp.gate_up_proj ([gate; up] rows), which the loader splits and the saver fuses (FusedParts). A tied head has no
// lm_head.weight (HF's save_pretrained drops it too).
namespace Matq.Runtime.Models;

public static class LlamaTensors
{
    public static IReadOnlyList<(string Name, long[] Shape)> Expected(LlamaConfig c) => Enumerate(c).ToList();

    /// <summary>
    /// The tensors of <see cref="Expected"/> one at a time, so a checker can stop at the first missing one: a config read
    /// from a file may claim 10^9 layers, whose full list would not fit in memory.
    /// </summary>
    public static IEnumerable<(string Name, long[] Shape)> Enumerate(LlamaConfig c) => Walk(c, fused: false);

    /// <summary>The tensors an HF checkpoint of this config holds (Phi-3: fused projections), one at a time.</summary>
    public static IEnumerable<(string Name, long[] Shape)> Checkpoint(LlamaConfig c) => Walk(c, fused: c.FusedProjections);

    /// <summary>
    /// For a checkpoint tensor that fuses model tensors along rows (Phi-3's qkv_proj / gate_up_proj weights), the model
    /// tensors in row order with their row counts; null for a tensor stored as the model holds it.
    /// </summary>
    public static IReadOnlyList<(string Name, long Rows)>? FusedParts(LlamaConfig c, string checkpointName)
    {
        if (!c.FusedProjections) return null;
        if (checkpointName.EndsWith(".self_attn.qkv_proj.weight", StringComparison.Ordinal))
        {
            var p = checkpointName[..^"qkv_proj.weight".Length];
            return [(p + "q_proj.weight", c.QDim), (p + "k_proj.weight", c.KvDim), (p + "v_proj.weight", c.KvDim)];
        }
        if (checkpointName.EndsWith(".mlp.gate_up_proj.weight", StringComparison.Ordinal))
        {
            var p = checkpointName[..^"gate_up_proj.weight".Length];
            return [(p + "gate_proj.weight", c.IntermediateSize), (p + "up_proj.weight", c.IntermediateSize)];
        }
        return null;
    }

    /// <summary>Where a model tensor lives in the checkpoint: the fused tensor and the first row, or its own name at row 0.</summary>
    public static (string Name, long Row) CheckpointSource(LlamaConfig c, string modelName)
    {
        if (!c.FusedProjections) return (modelName, 0);
        string[] attn = ["q_proj", "k_proj", "v_proj"], mlp = ["gate_proj", "up_proj"];
        foreach (var (group, parts) in new[] { ("self_attn.qkv_proj", attn), ("mlp.gate_up_proj", mlp) })
        {
            var block = group[..group.IndexOf('.')];
            foreach (var part in parts)
            {
                var suffix = $".{block}.{part}.weight";
                if (!modelName.EndsWith(suffix, StringComparison.Ordinal)) continue;
                var fused = modelName[..^suffix.Length] + "." + group + ".weight";
                long row = 0;
                foreach (var (name, rows) in FusedParts(c, fused)!)
                {
                    if (name == modelName) return (fused, row);
                    row += rows;
                }
            }
        }
        return (modelName, 0);
    }

    private static IEnumerable<(string Name, long[] Shape)> Walk(LlamaConfig c, bool fused)
    {
        long h = c.HiddenSize, q = c.QDim, kv = c.KvDim, m = c.IntermediateSize, d = c.HeadDim;
        yield return ("model.embed_tokens.weight", new[] { (long)c.VocabSize, h });
        var list = new List<(string, long[])>();
        for (int i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}.";
            list.Clear();
            list.Add((p + "input_layernorm.weight", new[] { h }));
            if (fused)
            {
                list.Add((p + "self_attn.qkv_proj.weight", new[] { q + 2 * kv, h }));
            }
            else
            {
                Linear(list, p + "self_attn.q_proj", q, h, c.QkvBias);
                Linear(list, p + "self_attn.k_proj", kv, h, c.QkvBias);
                Linear(list, p + "self_attn.v_proj", kv, h, c.QkvBias);
            }
            Linear(list, p + "self_attn.o_proj", h, q, c.OutputBias);
            if (c.QkNorm)
            {
                list.Add((p + "self_attn.q_norm.weight", new[] { d }));
                list.Add((p + "self_attn.k_norm.weight", new[] { d }));
            }
            list.Add((p + "post_attention_layernorm.weight", new[] { h }));
            if (c.SandwichNorms) list.Add((p + "pre_feedforward_layernorm.weight", new[] { h }));
            if (fused)
            {
                list.Add((p + "mlp.gate_up_proj.weight", new[] { 2 * m, h }));
            }
            else
            {
                Linear(list, p + "mlp.gate_proj", m, h, c.MlpBias);
                Linear(list, p + "mlp.up_proj", m, h, c.MlpBias);
            }
            Linear(list, p + "mlp.down_proj", h, m, c.MlpBias);
            if (c.SandwichNorms) list.Add((p + "post_feedforward_layernorm.weight", new[] { h }));
            foreach (var t in list) yield return t;
        }
        yield return ("model.norm.weight", new[] { h });
        if (!c.TieWordEmbeddings) yield return ("lm_head.weight", new[] { (long)c.VocabSize, h });
    }

    private static void Linear(List<(string, long[])> list, string name, long outF, long inF, bool bias)
    {
        list.Add((name + ".weight", new[] { outF, inF }));
        if (bias) list.Add((name + ".bias", new[] { outF }));
    }

    public static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
