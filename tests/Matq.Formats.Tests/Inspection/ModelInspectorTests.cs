// Inspection of each kind: a plain .safetensors file, an HF folder (single and sharded), a .matq artifact
// (recognised by metadata, whatever its extension), GGUF refusal, and corrupt input.
using Matq.Formats.Inspection;
using Matq.Formats.Safetensors;
using Matq.Formats.Tests.Artifact;

namespace Matq.Formats.Tests.Inspection;

public sealed class ModelInspectorTests
{
    [Fact]
    public void Safetensors_file_summary_matches_the_fixture()
    {
        var r = ModelInspector.Inspect(Fixtures.TinyLlama);
        Assert.Equal(ModelFormatKind.Safetensors, r.Kind);
        Assert.Equal(568672, r.TotalBytes);
        Assert.Equal(Fixtures.TinyLlama, Assert.Single(r.Files).Path);
        Assert.Equal(21, r.Tensors.Count);
        var embed = r.Tensors.Single(t => t.Name == "model.embed_tokens.weight");
        Assert.Equal(("F32", "[384, 64]", 98304L), (embed.Dtype, embed.ShapeText, embed.Bytes));
        var f32 = Assert.Single(r.Dtypes);
        Assert.Equal(("F32", 21, 566528L), (f32.Dtype, f32.Count, f32.Bytes));
        Assert.Equal(566528 / 4, r.TotalElements);
        Assert.Equal("pt", r.MetadataValue("format"));
        Assert.Null(r.Matq);
    }

    [Fact]
    public void HF_folder_single_and_sharded()
    {
        var single = ModelInspector.Inspect(Fixtures.Path("tiny-qwen2"));
        Assert.Equal(ModelFormatKind.HfCheckpoint, single.Kind);
        Assert.Equal(38, single.Tensors.Count);
        Assert.Equal(868656, single.TotalBytes);

        using var tmp = new TempDir();
        var tensors = new List<(string, SafetensorsDtype, long[], byte[])>
        {
            ("a", SafetensorsDtype.F32, [4, 4], new byte[64]),
            ("b", SafetensorsDtype.BF16, [8], new byte[16]),
            ("c", SafetensorsDtype.F32, [16], new byte[64]),
        };
        SafetensorsCheckpoint.WriteSharded(tmp.Path, tensors, 90, new Dictionary<string, string> { ["format"] = "pt" });
        var r = ModelInspector.Inspect(tmp.Path);
        Assert.Equal(ModelFormatKind.HfCheckpoint, r.Kind);
        Assert.Equal(3, r.Files.Count); // two shards + index
        Assert.EndsWith("model.safetensors.index.json", r.Files[^1].Path);
        Assert.Equal(r.Files.Sum(f => new FileInfo(f.Path).Length), r.TotalBytes);
        Assert.Equal(["a", "b", "c"], r.Tensors.Select(t => t.Name));
        Assert.Equal([("F32", 2, 128L), ("BF16", 1, 16L)], r.Dtypes.Select(d => (d.Dtype, d.Count, d.Bytes)));
        Assert.Equal("144", r.MetadataValue("index.total_size"));
        Assert.Equal("pt", r.MetadataValue("format"));
    }

    [Fact]
    public void Matq_artifact_is_detected_by_metadata_and_summarised()
    {
        using var tmp = new TempDir();
        var path = tmp.File("model.safetensors"); // the extension does not matter
        ArtifactTestData.SmallWriter().Write(path);
        var r = ModelInspector.Inspect(path);
        Assert.Equal(ModelFormatKind.MatqArtifact, r.Kind);
        Assert.NotNull(r.Matq);
        Assert.Equal("rtn", r.MetadataValue("algorithm"));
        Assert.Equal("4", r.MetadataValue("master_bits"));
        Assert.Equal("4", r.MetadataValue("group_size"));
        Assert.Equal("4,2", r.MetadataValue("trained_bits"));
        Assert.Equal("2", r.MetadataValue("quantized_tensors"));
        Assert.Equal("llama", r.MetadataValue("model_type"));
        Assert.Equal("hf-tokenizer-json: tokenizer.json", r.MetadataValue("tokenizer"));
        Assert.Equal("""{"clip":1.0}""", r.MetadataValue("algorithm_config"));
        Assert.Equal(10, r.Tensors.Count);
        var u8 = r.Dtypes.Single(d => d.Dtype == "U8");
        Assert.Equal((2, 48L), (u8.Count, u8.Bytes)); // codes 5x6 + 3x6
        Assert.Equal(new FileInfo(path).Length, r.TotalBytes);
    }

    [Fact]
    public void Per_channel_group_size_is_spelled_out()
    {
        using var tmp = new TempDir();
        var path = tmp.File("pc.matq");
        var w = new Matq.Formats.Artifact.MatqArtifactWriter("gptq", 8, -1, true, [8]);
        w.AddQuantized("w", 2, 2, [1, 2, 3, 4], [1, 1], [128, 128]);
        w.Write(path);
        Assert.Equal("-1 (per-channel)", ModelInspector.Inspect(path).MetadataValue("group_size"));
        Assert.Equal("none", ModelInspector.Inspect(path).MetadataValue("tokenizer"));
    }

    [Fact]
    public void Gguf_missing_and_corrupt_inputs_are_MatqExceptions()
    {
        using var tmp = new TempDir();
        File.WriteAllBytes(tmp.File("m.gguf"), [.. "GGUF"u8, 3, 0, 0, 0]);
        MatqAssert.Throws(() => ModelInspector.Inspect(tmp.File("m.gguf")), "m.gguf", "GGUF");
        MatqAssert.Throws(() => ModelInspector.Inspect(tmp.File("nope")), "nope", "no such file");
        File.WriteAllBytes(tmp.File("x.safetensors"), [1, 2, 3]);
        MatqAssert.Throws(() => ModelInspector.Inspect(tmp.File("x.safetensors")), "x.safetensors", "truncated");
        // a .matq whose metadata lies about a shape is refused, though inspection reads no tensor data
        ArtifactTestData.SmallWriter().Write(tmp.File("ok.matq"));
        ArtifactTestData.Rewrite(tmp.File("ok.matq"), tmp.File("bad.matq"), p =>
            p.Replace("layers.1.proj.weight.scales", SafetensorsDtype.F32, [3, 2], new byte[24]));
        MatqAssert.Throws(() => ModelInspector.Inspect(tmp.File("bad.matq")), "bad.matq", "layers.1.proj.weight.scales", "[3, 2]");
    }
}
