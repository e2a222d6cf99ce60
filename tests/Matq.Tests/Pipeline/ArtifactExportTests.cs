// RTN on tiny-llama → .matq: the metadata (algorithm, bits, group, trained bits, model_config, reports), float tensors
// in the model's dtype, the tokenizer copied beside the artifact, and quantized tensors equal to the run's codes.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Loading;
using Matq.Runtime.Tokenizers;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

public sealed class ArtifactExportTests
{
    [Fact]
    public void Artifact_holds_the_run_the_config_and_every_other_tensor()
    {
        var (path, result) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, group: 32, clip: "mse"));
        var a = MatqArtifact.Open(path);
        var md = a.Metadata;
        Assert.Equal("rtn", md.Algorithm);
        Assert.Equal(4, md.MasterBits);
        Assert.Equal(32, md.GroupSize);
        Assert.False(md.Symmetric);
        Assert.Equal(new[] { 4 }, md.TrainedBits);
        Assert.Equal("mse", md.AlgorithmConfig.GetProperty("settings").GetProperty("clip").GetString());
        Assert.Equal("mse", md.AlgorithmConfig.GetProperty("options").GetProperty("clip").GetString());
        Assert.Equal(14, md.Extra!.Value.GetProperty("layers").GetArrayLength());
        Assert.Equal(HfLlamaConfig.Read(PipelineFixtures.TinyPath), HfLlamaConfig.Parse(md.ModelConfig.GetRawText()));
        Assert.Null(md.Tokenizer);

        Assert.Equal(14, a.Quantized.Count);
        foreach (var layer in result.Layers)
        {
            var q = a.GetQuantized(layer.WeightName);
            Assert.Equal(layer.Codes, q.Codes);
            Assert.Equal(layer.Scales, q.Scales);
            Assert.Equal(layer.Zeros, q.Zeros);
        }
        // down_proj has 176 inputs: groups of 32 leave a short last group of 16
        Assert.Equal(6, a.GetQuantized("model.layers.0.mlp.down_proj.weight").GroupCount);
        // embeddings, norms and the (untied) head stay float, in the source's F32
        Assert.Equal(2 * 2 + 3, a.Floats.Count);
        Assert.All(a.Floats, f => Assert.Equal(SafetensorsDtype.F32, f.StoredDtype));
        using var model = PipelineFixtures.LoadTiny();
        Assert.Equal(PipelineFixtures.Floats(model.get_parameter("lm_head.weight")!), a.GetFloat("lm_head.weight").Values);
    }

    [Fact]
    public void Bf16_model_keeps_bf16_floats_and_lm_head_can_be_quantized()
    {
        using var model = PipelineFixtures.LoadTiny(ScalarType.BFloat16);
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, group: 0, head: true));
        var path = Path.Combine(HfFixtures.TempDir(), "bf16.matq");
        ArtifactExport.Write(result, model, path);
        var a = MatqArtifact.Open(path);
        Assert.Equal(-1, a.Metadata.GroupSize);
        Assert.True(a.IsQuantized("lm_head.weight"));
        Assert.All(a.Floats, f => Assert.Equal(SafetensorsDtype.BF16, f.StoredDtype));
        Assert.Equal("bfloat16", a.Metadata.ModelConfig.GetProperty("dtype").GetString());
    }

    [Fact]
    public void Tokenizer_files_are_copied_beside_the_artifact_and_referenced_relatively()
    {
        var src = PipelineFixtures.TinyWithTokenizer();
        using var model = PipelineFixtures.LoadTiny();
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(4));
        var dir = HfFixtures.TempDir();
        var path = Path.Combine(dir, "tiny-rtn4.matq");
        // a stale folder from an earlier export is replaced, not merged
        Directory.CreateDirectory(Path.Combine(dir, "tiny-rtn4.tokenizer"));
        File.WriteAllText(Path.Combine(dir, "tiny-rtn4.tokenizer", "stale.txt"), "old");

        var written = ArtifactExport.Write(result, model, path, src);
        Assert.Equal(Path.Combine(dir, "tiny-rtn4.tokenizer"), written.TokenizerFolder);
        Assert.Equal("matq-bytes", written.TokenizerKind);
        Assert.Equal(new FileInfo(path).Length, written.Bytes);
        var tok = MatqArtifact.ReadMetadata(path).Tokenizer!;
        Assert.Equal("matq-bytes", tok.Kind);
        Assert.Equal(new[] { "tiny-rtn4.tokenizer/matq_tokenizer.json" }, tok.Files);
        Assert.True(File.Exists(Path.Combine(dir, "tiny-rtn4.tokenizer", "matq_tokenizer.json")));
        Assert.False(File.Exists(Path.Combine(dir, "tiny-rtn4.tokenizer", "stale.txt")));
        Assert.Equal(new[] { "tiny-rtn4.matq", "tiny-rtn4.tokenizer" },
            Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Tokenizer_kinds_are_detected_from_file_names()
    {
        Assert.Equal("hf-tokenizer-json", TokenizerFiles.DetectKind(["tokenizer.json", "tokenizer_config.json"]));
        Assert.Equal("gpt2-bpe", TokenizerFiles.DetectKind(["encoder.json", "vocab.bpe"]));
        Assert.Equal("gpt2-bpe", TokenizerFiles.DetectKind(["vocab.json", "merges.txt"]));
        Assert.Null(TokenizerFiles.DetectKind(["vocab.json"]));
    }

    [Fact]
    public void A_failed_export_leaves_the_previous_artifact_intact()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4));
        var before = File.ReadAllBytes(path);
        using var model = PipelineFixtures.LoadTiny();
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(2));
        // a result whose layer does not belong to the model is refused before anything is written
        var alien = new QuantizedLinearResult("model.layers.9.mlp.up_proj", 1, 1, -1, [0], [1f], [0f], null,
            new LayerReport("x", 1, 1, 2, 0, null, null, 0));
        var bad = result with { Layers = [.. result.Layers, alien] };
        Assert.Throws<MatqException>(() => ArtifactExport.Write(bad, model, path, PipelineFixtures.TinyWithTokenizer()));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.False(Directory.Exists(ArtifactExport.TokenizerFolderFor(path)));
        Assert.Single(Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(path)!));
    }
}
