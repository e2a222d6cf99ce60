// Reads the HF fixtures written by Python (transformers save_pretrained) and checks names, dtypes, shapes,
// metadata and that our writer reproduces those files byte for byte.
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Safetensors;

public sealed class SafetensorsFixtureTests
{
    [Fact]
    public void TinyLlama_has_the_expected_tensors()
    {
        using var f = SafetensorsFile.Open(Fixtures.TinyLlama);
        Assert.Equal(21, f.Tensors.Count);
        Assert.Equal("pt", f.Metadata["format"]);
        var embed = f.Get("model.embed_tokens.weight");
        Assert.Equal(SafetensorsDtype.F32, embed.Dtype);
        Assert.Equal([384L, 64], embed.Shape);
        Assert.Equal(384 * 64 * 4, embed.ByteLength);
        Assert.Equal([384L, 64], f.Get("lm_head.weight").Shape);
        Assert.Equal([64L, 176], f.Get("model.layers.0.mlp.down_proj.weight").Shape);
        Assert.Equal([176L, 64], f.Get("model.layers.1.mlp.gate_proj.weight").Shape);
        Assert.Equal([32L, 64], f.Get("model.layers.0.self_attn.k_proj.weight").Shape); // GQA: 2 kv heads x 16
        Assert.Equal([64L], f.Get("model.norm.weight").Shape);
        Assert.All(f.Tensors, t => Assert.Equal(SafetensorsDtype.F32, t.Dtype));
        Assert.Equal(f.FileLength, f.Tensors[^1].End);

        var values = f.ReadFloat32("model.embed_tokens.weight");
        Assert.Equal(384 * 64, values.Length);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(values, v => v != 0);
        // RMSNorm weights are initialised to ones by transformers
        Assert.All(f.ReadFloat32("model.norm.weight"), v => Assert.Equal(1f, v));
    }

    [Fact]
    public void TinyQwen2_has_biases_and_tied_embeddings()
    {
        using var f = SafetensorsFile.Open(Fixtures.TinyQwen2);
        Assert.Equal(38, f.Tensors.Count);
        Assert.False(f.Contains("lm_head.weight")); // tied to embed_tokens
        Assert.Equal([320L, 96], f.Get("model.embed_tokens.weight").Shape);
        Assert.Equal([96L], f.Get("model.layers.2.self_attn.q_proj.bias").Shape);
        Assert.Equal([32L], f.Get("model.layers.0.self_attn.k_proj.bias").Shape);
        Assert.Equal([96L, 128], f.Get("model.layers.1.mlp.down_proj.weight").Shape);
        MatqAssert.Throws(() => f.Get("lm_head.weight"), "model.safetensors", "lm_head.weight");
    }

    [Theory]
    [InlineData("tiny-llama", 384)]
    [InlineData("tiny-qwen2", 320)]
    public void Expected_outputs_hold_ids_and_logits(string model, long vocab)
    {
        using var f = SafetensorsFile.Open(Fixtures.Path(model, "expected.safetensors"));
        Assert.Equal(SafetensorsDtype.I64, f.Get("input_ids").Dtype);
        Assert.Equal([2L, 23], f.Get("input_ids").Shape);
        Assert.Equal([2L, 23, vocab], f.Get("logits").Shape);
        MatqAssert.Throws(() => f.ReadFloat32("input_ids"), "expected.safetensors", "input_ids", "I64");
    }

    [Fact]
    public void Checkpoint_opens_fixture_folder()
    {
        using var c = SafetensorsCheckpoint.Open(Fixtures.Path("tiny-llama"));
        Assert.Single(c.Files);
        Assert.Equal(21, c.TensorNames.Count());
        Assert.Equal([64L], c.Get("model.layers.1.input_layernorm.weight").Shape);
        MatqAssert.Throws(() => c.ReadBytes("nope"), "nope", "missing");
    }

    /// <summary>
    /// Python's safetensors wrote these files; re-writing their tensors in offset order must give the same
    /// bytes (header JSON, space padding and data), which shows the writer emits what that library emits.
    /// </summary>
    [Theory]
    [InlineData("tiny-llama/model.safetensors")]
    [InlineData("tiny-qwen2/model.safetensors")]
    [InlineData("tiny-llama/expected.safetensors")]
    public void Writer_reproduces_python_written_file_byte_for_byte(string rel)
    {
        var src = Fixtures.Path(rel.Split('/'));
        using var tmp = new TempDir();
        var dst = tmp.File("copy.safetensors");
        using (var f = SafetensorsFile.Open(src))
        {
            var w = new SafetensorsWriter();
            foreach (var (k, v) in f.Metadata) w.Metadata[k] = v;
            foreach (var t in f.Tensors) w.Add(t.Name, t.Dtype, t.Shape, f.ReadBytes(t.Name));
            w.Write(dst);
        }
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(dst));
    }
}
