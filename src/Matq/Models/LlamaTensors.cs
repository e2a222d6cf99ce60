// The HF tensor names and shapes a Llama-family checkpoint holds for a config, in model order. A tied head has no
// lm_head.weight (HF's save_pretrained drops it too).
namespace Matq.Models;

public static class LlamaTensors
{
    public static IReadOnlyList<(string Name, long[] Shape)> Expected(LlamaConfig c)
    {
        long h = c.HiddenSize, q = c.QDim, kv = c.KvDim, m = c.IntermediateSize;
        var list = new List<(string, long[])> { ("model.embed_tokens.weight", new[] { (long)c.VocabSize, h }) };
        for (int i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}.";
            list.Add((p + "input_layernorm.weight", new[] { h }));
            Linear(list, p + "self_attn.q_proj", q, h, c.QkvBias);
            Linear(list, p + "self_attn.k_proj", kv, h, c.QkvBias);
            Linear(list, p + "self_attn.v_proj", kv, h, c.QkvBias);
            Linear(list, p + "self_attn.o_proj", h, q, c.OutputBias);
            list.Add((p + "post_attention_layernorm.weight", new[] { h }));
            Linear(list, p + "mlp.gate_proj", m, h, c.MlpBias);
            Linear(list, p + "mlp.up_proj", m, h, c.MlpBias);
            Linear(list, p + "mlp.down_proj", h, m, c.MlpBias);
        }
        list.Add(("model.norm.weight", new[] { h }));
        if (!c.TieWordEmbeddings) list.Add(("lm_head.weight", new[] { (long)c.VocabSize, h }));
        return list;
    }

    private static void Linear(List<(string, long[])> list, string name, long outF, long inF, bool bias)
    {
        list.Add((name + ".weight", new[] { outF, inF }));
        if (bias) list.Add((name + ".bias", new[] { outF }));
    }

    public static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
