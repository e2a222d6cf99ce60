// HF folder export of a .matq at r bits: loading the folder as a plain HF model gives exactly matq's served logits at r
// bits (f32), bf16 stores the same weights rounded, the tokenizer files come along, and a file as --out is refused.
using Matq.Export;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Runtime.Serving;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class HfExporterTests
{
    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    public void The_folder_loads_as_an_hf_model_with_matqs_served_logits(int bits)
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32), PipelineFixtures.TinyWithTokenizer());
        var folder = Path.Combine(HfFixtures.TempDir(), "tiny-hf");
        var report = HfExporter.Export(artifact, bits, folder);
        Assert.Equal(bits, report.Bits);
        Assert.Null(report.TokenizerNote);
        Assert.True(File.Exists(Path.Combine(folder, "matq_tokenizer.json")));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(folder)!, "tiny-hf.tmp-*"));

        using var loaded = LlamaLoader.Load(folder);
        using var served = QuantizedModelLoader.Load(artifact, bits);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(new long[] { 1, 5, 9, 200, 7, 3 }, [1, 6]);
        Assert.Equal(PipelineFixtures.Floats(served.call(ids)), PipelineFixtures.Floats(loaded.call(ids)));
    }

    [Fact]
    public void Bf16_rounds_the_served_weights()
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var folder = Path.Combine(HfFixtures.TempDir(), "bf16");
        var report = HfExporter.Export(artifact, 4, folder, HfExporter.ParseType("bf16"));
        Assert.NotNull(report.TokenizerNote); // this artifact records no tokenizer
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(folder, "model.safetensors"));
        Assert.Equal(SafetensorsDtype.BF16, ckpt.Get("model.layers.0.mlp.up_proj.weight").Dtype);
        using var served = QuantizedModelLoader.Load(artifact, 4);
        var want = PipelineFixtures.Floats(PipelineFixtures.WeightOf(served, "model.layers.0.mlp.up_proj"));
        var got = ckpt.ReadFloat32("model.layers.0.mlp.up_proj.weight");
        Assert.All(want.Zip(got), p => Assert.True(Math.Abs(p.First - p.Second) <= Math.Abs(p.First) / 128, $"{p.First} vs {p.Second}"));
    }

    [Fact]
    public void A_file_as_out_and_an_unknown_type_are_refused()
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var file = Path.Combine(HfFixtures.TempDir(), "x.bin");
        File.WriteAllText(file, "keep");
        Assert.Contains("is a file", Assert.Throws<MatqException>(() => HfExporter.Export(artifact, 4, file)).Message);
        Assert.Equal("keep", File.ReadAllText(file));
        Assert.Contains("f32, bf16, f16", Assert.Throws<MatqException>(() => HfExporter.ParseType("int4")).Message);
    }
}
