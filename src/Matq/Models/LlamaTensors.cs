// The HF tensor names and shapes a Llama-family checkpoint holds for a config, in model order. A tied head has no
// lm_head.weight (HF's save_pretrained drops it too).
namespace Matq.Models;

public static class LlamaTensors
{
    public static IReadOnlyList<(string Name, long[] Shape)> Expected(LlamaConfig c) => Enumerate(c).ToList();

    /// <summary>
    /// The tensors of <see cref="Expected"/> one at a time, so a checker can stop at the first missing one: a config read
    /// from a file may claim 10^9 layers, whose full list would not fit in memory.
    /// </summary>
    public static IEnumerable<(string Name, long[] Shape)> Enumerate(LlamaConfig c)
    {
        long h = c.HiddenSize, q = c.QDim, kv = c.KvDim, m = c.IntermediateSize;
        yield return ("model.embed_tokens.weight", new[] { (long)c.VocabSize, h });
        var list = new List<(string, long[])>();
        for (int i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}.";
            list.Clear();
            list.Add((p + "input_layernorm.weight", new[] { h }));
            Linear(list, p + "self_attn.q_proj", q, h, c.QkvBias);
            Linear(list, p + "self_attn.k_proj", kv, h, c.QkvBias);
            Linear(list, p + "self_attn.v_proj", kv, h, c.QkvBias);
            Linear(list, p + "self_attn.o_proj", h, q, c.OutputBias);
            list.Add((p + "post_attention_layernorm.weight", new[] { h }));
            Linear(list, p + "mlp.gate_proj", m, h, c.MlpBias);
            Linear(list, p + "mlp.up_proj", m, h, c.MlpBias);
            Linear(list, p + "mlp.down_proj", h, m, c.MlpBias);
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
