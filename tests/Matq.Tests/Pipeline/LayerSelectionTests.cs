// --layers: selection per family (ffn, attn), suffix lists, globs, the head, typos; the filter is recorded in the
// artifact; an FFN-only artifact keeps attention weights float and byte-equal to the source, for every method family
// (RTN, Athena, MatQuant-QAT), and the packed runtime serves it like the TorchSharp loader does.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Packed;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

public sealed class LayerSelectionTests
{
    private static string[] Names(string layers, bool head = false)
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = new QuantizationConfig("rtn", 4, 32, includeLmHead: head, layers: LayerFilter.Parse(layers));
        return LinearSelection.Select(model, config).Select(l => l.Name).ToArray();
    }

    [Fact]
    public void Families_select_their_linears_only()
    {
        var ffn = Names("ffn");
        Assert.Equal(2 * 3, ffn.Length);
        Assert.All(ffn, n => Assert.Matches(@"^model\.layers\.\d\.mlp\.(gate|up|down)_proj$", n));
        var attn = Names("attn");
        Assert.Equal(2 * 4, attn.Length);
        Assert.All(attn, n => Assert.Matches(@"^model\.layers\.\d\.self_attn\.(q|k|v|o)_proj$", n));
        Assert.Equal(14, Names("all").Length);
        Assert.Equal(Names("all"), Names("ffn,attn").OrderBy(n => Array.IndexOf(Names("all"), n)));   // model order kept
        Assert.Equal(ffn, Names("MLP"));
        Assert.Equal("ffn", LayerFilter.Parse("mlp").Text);
        Assert.True(LayerFilter.Parse(null).IsAll);
    }

    [Fact]
    public void Suffix_lists_and_globs_select_by_name()
    {
        Assert.Equal(["model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"],
            Names("mlp.down_proj,mlp.up_proj"));
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"], Names("q_proj"));
        Assert.Equal(7, Names("model.layers.1.*").Length);
        Assert.Equal(["model.layers.0.mlp.gate_proj", "model.layers.1.mlp.gate_proj"], Names("*.gate_*"));
        Assert.Equal(["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj"],
            Names("model.layers.1.self_attn.?_proj"));
        Assert.Equal(14, Names("*_proj").Length);
        // the head: --include-head keeps it whatever the family says; naming it selects it
        Assert.Equal("lm_head", Names("ffn", head: true)[^1]);
        Assert.Equal(7, Names("ffn", head: true).Length);
        Assert.Equal(["lm_head"], Names("lm_head"));
    }

    [Theory]
    [InlineData("mlp.dwn_proj", "matches no linear")]
    [InlineData("ffn,*.experts.*", "matches no linear")]
    [InlineData("all,ffn", "cannot be combined")]
    [InlineData("ffn,,attn", "empty item")]
    [InlineData("mlp/down", "characters")]
    public void Typos_and_bad_items_are_one_clear_error(string layers, string expected)
    {
        var e = Assert.Throws<MatqException>(() => Names(layers));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("rtn")]
    [InlineData("athena")]
    [InlineData("matquant")]
    public void Ffn_only_artifact_keeps_attention_float_and_byte_equal_to_the_source(string method)
    {
        var options = method switch
        {
            "matquant" => new Dictionary<string, string> { ["bits"] = "8,4,2", ["steps"] = "2", ["batch"] = "2", ["warmup"] = "0" },
            "rtn" => new Dictionary<string, string>(),
            _ => new Dictionary<string, string>(),
        };
        var config = new QuantizationConfig(method, method == "matquant" ? 8 : 4, 32, options: options, layers: LayerFilter.Parse("ffn"));
        string path = System.IO.Path.Combine(HfFixtures.TempDir(), "ffn.matq");
        using (var model = PipelineFixtures.LoadTiny())
        {
            var ctx = new QuantizationContext(model, CPU, () => new CalibrationTokens(AthenaTestData.ZipfWindows(8, 17, seed: 5)), seed: 3);
            var result = QuantizationRunner.Run(config, ctx);
            Assert.Equal(6, result.Layers.Count);
            ArtifactExport.Write(result, model, path);
        }
        var artifact = MatqArtifact.Open(path);
        Assert.Equal("ffn", artifact.Metadata.AlgorithmConfig.GetProperty("layers").GetString());
        using var source = SafetensorsFile.Open(System.IO.Path.Combine(PipelineFixtures.TinyPath, "model.safetensors"));
        using var written = SafetensorsFile.Open(path);
        int attn = 0;
        foreach (var t in source.Tensors.Where(t => t.Name.EndsWith("_proj.weight", StringComparison.Ordinal)))
        {
            if (t.Name.Contains(".mlp.", StringComparison.Ordinal)) { Assert.True(artifact.IsQuantized(t.Name), t.Name); continue; }
            attn++;
            Assert.True(artifact.TryGetFloat(t.Name, out _), $"{t.Name} is float");
            Assert.Equal(t.Dtype, written.Get(t.Name).Dtype);
            Assert.Equal(source.ReadBytes(t.Name), written.ReadBytes(t.Name));
        }
        Assert.Equal(8, attn);
    }

    [Fact]
    public void Packed_runtime_serves_a_partially_quantized_artifact_like_the_torch_loader()
    {
        var config = new QuantizationConfig("rtn", 8, 32, layers: LayerFilter.Parse("attn"));
        string path = System.IO.Path.Combine(HfFixtures.TempDir(), "attn.matq");
        using (var model = PipelineFixtures.LoadTiny())
            ArtifactExport.Write(PipelineFixtures.Quantize(model, config), model, path);
        var packed = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 });
        var ids = Enumerable.Range(0, 9).Select(i => (i * 7 + 3) % packed.Config.VocabSize).ToArray();
        var got = new PackedLlamaSession(packed, threads: 1).Forward(ids, allLogits: true);
        using var served = QuantizedModelLoader.Load(path, 4);
        using var _ = no_grad();
        using var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], ScalarType.Int64);
        var want = served.forward(input).contiguous().data<float>().ToArray();
        Assert.Equal(want.Length, got.Length);
        double max = want.Max(Math.Abs), worst = want.Select((w, i) => Math.Abs(w - got[i])).Max();
        Assert.True(worst <= 1e-3 * max, $"max |Δ| = {worst:G4}");
    }
}
