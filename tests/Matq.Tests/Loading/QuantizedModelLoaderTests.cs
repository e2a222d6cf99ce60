// Serving a .matq at r bits: r = master gives RTN's dequantized weights exactly; r < master equals a scalar
// slice-then-dequantize of the stored codes; plans set bits per layer; logits error grows as bits shrink; bad input
// (bits above master, unknown plan layer, corrupt file, non-Llama model_config) is one clear MatqException.
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Plans;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Loading;

public sealed class QuantizedModelLoaderTests
{
    [Theory]
    [InlineData(4, 32, false)]
    [InlineData(8, 0, true)]
    public void At_master_bits_the_served_weights_equal_rtn_dequantized_exactly(int bits, int group, bool symmetric)
    {
        var (path, result) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(bits, group, symmetric, clip: "mse"));
        using var served = QuantizedModelLoader.Load(path, bits);
        foreach (var layer in result.Layers)
        {
            using var expected = layer.Dequantize();
            Assert.Equal(PipelineFixtures.Floats(expected), PipelineFixtures.Floats(PipelineFixtures.WeightOf(served, layer.Name)));
        }
        // float tensors come back bit-identical
        using var model = PipelineFixtures.LoadTiny();
        Assert.Equal(PipelineFixtures.Floats(model.get_parameter("model.norm.weight")!), PipelineFixtures.Floats(served.get_parameter("model.norm.weight")!));
    }

    [Theory]
    [InlineData(8, 4)]
    [InlineData(8, 3)]
    [InlineData(8, 2)]
    [InlineData(8, 1)]
    [InlineData(4, 2)]
    public void Below_master_bits_the_served_weights_equal_a_scalar_slice_then_dequantize(int master, int r)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(master, group: 32));
        var artifact = MatqArtifact.Open(path);
        using var served = QuantizedModelLoader.Load(path, r);
        foreach (var q in artifact.Quantized)
        {
            var expected = ScalarSliceDequantize(q, master, r);
            Assert.Equal(expected, PipelineFixtures.Floats(PipelineFixtures.WeightOf(served, q.Name[..^7])));
        }
    }

    // S = clamp(⌊q/2^k + ½⌋, 0, 2^r − 1) with k = c − r, ŵ = α(S·2^k − z), written out with plain integers.
    private static float[] ScalarSliceDequantize(MatqQuantizedTensor q, int c, int r)
    {
        int k = c - r, n = q.InFeatures, g = q.GroupWidth;
        var w = new float[q.Codes.Length];
        for (int o = 0; o < q.OutFeatures; o++)
            for (int j = 0; j < n; j++)
            {
                int code = q.Codes[o * n + j];
                int s = k == 0 ? code : Math.Min((code + (1 << (k - 1))) >> k, (1 << r) - 1);
                int gi = o * q.GroupCount + j / g;
                w[o * n + j] = ((float)(s << k) - q.Zeros[gi]) * q.Scales[gi];
            }
        return w;
    }

    [Fact]
    public void A_stored_permutation_is_undone()
    {
        // a hand-made artifact: one layer with codes stored in reversed column order
        var (permPath, layer, permuted) = PipelineFixtures.WriteReversedPermutationArtifact(PipelineFixtures.Rtn(4, group: 0));
        using var served = QuantizedModelLoader.Load(permPath, 4);
        using var expected = layer.Dequantize();
        Assert.Equal(PipelineFixtures.Floats(expected), PipelineFixtures.Floats(PipelineFixtures.WeightOf(served, layer.Name)));
        Assert.NotEqual(permuted, layer.Codes);
    }

    [Fact]
    public void A_plan_applies_its_bits_to_the_named_layers_only()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 32));
        var plan = new BitPlan(new Dictionary<string, int> { ["model.layers.0.self_attn.q_proj"] = 2, ["model.layers.1.mlp.down_proj.weight"] = 3 });
        using var served = QuantizedModelLoader.LoadServed(path, 4, plan: plan);
        using var at2 = QuantizedModelLoader.Load(path, 2);
        using var at3 = QuantizedModelLoader.Load(path, 3);
        using var at4 = QuantizedModelLoader.Load(path, 4);
        foreach (var (name, _) in served.Model.Linears())
        {
            var source = name switch { "model.layers.0.self_attn.q_proj" => at2, "model.layers.1.mlp.down_proj" => at3, _ => at4 };
            Assert.Equal(PipelineFixtures.Floats(PipelineFixtures.WeightOf(source, name)), PipelineFixtures.Floats(PipelineFixtures.WeightOf(served.Model, name)));
        }
        Assert.NotEqual(PipelineFixtures.Floats(PipelineFixtures.WeightOf(at2, "model.layers.0.self_attn.q_proj")),
            PipelineFixtures.Floats(PipelineFixtures.WeightOf(at4, "model.layers.0.self_attn.q_proj")));
        Assert.Equal(2, served.Layers.Single(l => l.Name == "model.layers.0.self_attn.q_proj.weight").Bits);
        Assert.Equal(12, served.Layers.Count(l => l.Bits == 4));
    }

    [Fact]
    public void Extra_precision_keeps_the_overflow_bucket_and_reports_effective_bits()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 32));
        using var plain = QuantizedModelLoader.LoadServed(path, 2);
        using var extra = QuantizedModelLoader.LoadServed(path, 2, extraPrecision: true);
        Assert.All(plain.Layers, l => Assert.Equal(2.0, l.EffectiveBits));
        Assert.True(extra.Layers.Sum(l => l.OverflowCount) > 0);
        Assert.InRange(extra.MeanEffectiveBits, 2.0 + 1e-9, 3.0);
        // only overflowing weights change, and they move one 2-bit step (2^6 master steps) up
        var a = PipelineFixtures.Floats(PipelineFixtures.WeightOf(plain.Model, "model.layers.0.mlp.up_proj"));
        var b = PipelineFixtures.Floats(PipelineFixtures.WeightOf(extra.Model, "model.layers.0.mlp.up_proj"));
        Assert.Contains(a.Zip(b), p => p.First != p.Second);
        Assert.All(a.Zip(b), p => Assert.True(p.Second >= p.First));
    }

    [Fact]
    public void Logits_error_shrinks_as_bits_grow()
    {
        var (ids, _) = HfFixtures.Expected(PipelineFixtures.Tiny);
        using var model = PipelineFixtures.LoadTiny();
        using var reference = model.call(ids);
        double floatVar = reference.var().item<float>();
        var mse = new Dictionary<int, double>();
        foreach (var bits in new[] { 8, 4, 3, 2 })
        {
            var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(bits, group: 32));
            using var served = QuantizedModelLoader.Load(path, bits);
            using var logits = served.call(ids);
            mse[bits] = (logits - reference).square().mean().item<float>();
        }
        Assert.True(mse[8] < 1e-4 * floatVar, $"8-bit logits MSE {mse[8]:G3} vs logits variance {floatVar:G3}");
        Assert.True(mse[8] < mse[4] && mse[4] < mse[3] && mse[3] < mse[2], string.Join(", ", mse.Select(kv => $"{kv.Key}: {kv.Value:G3}")));
        Assert.True(mse[2] > 100 * mse[8]);
    }

    [Theory]
    [InlineData(8, "--bits 8 is more than the artifact's 4 master bits")]
    [InlineData(0, "--bits 0 is out of range")]
    public void Bits_outside_one_to_master_are_refused(int bits, string expected)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4));
        var e = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(path, bits));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_plan_naming_an_unknown_layer_or_too_many_bits_is_refused()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4));
        var unknown = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(path, 4, plan: new BitPlan(new Dictionary<string, int> { ["model.layers.7.mlp.up_proj"] = 2 })));
        Assert.Contains("'model.layers.7.mlp.up_proj'", unknown.Message);
        Assert.Contains("not a quantized layer", unknown.Message);
        var notQuantized = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(path, 4, plan: new BitPlan(new Dictionary<string, int> { ["lm_head"] = 2 })));
        Assert.Contains("'lm_head'", notQuantized.Message);
        var tooMany = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(path, 4, plan: new BitPlan(new Dictionary<string, int> { ["model.layers.0.mlp.up_proj"] = 6 })));
        Assert.Contains("6 is more than the artifact's 4 master bits", tooMany.Message);
    }

    [Fact]
    public void A_corrupt_artifact_is_refused_by_the_reader()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 100)]);
        var e = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(path, 4));
        Assert.Contains(path, e.Message);
        Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(Path.Combine(HfFixtures.TempDir(), "missing.matq"), 4));
    }

    [Fact]
    public void An_artifact_without_a_llama_model_config_is_refused()
    {
        var dir = HfFixtures.TempDir();
        var gpt2 = Path.Combine(dir, "gpt2.matq");
        new MatqArtifactWriter("rtn", 4, -1, false, [4])
        {
            ModelConfig = MatqMetadata.ParseObject("{\"model_type\": \"gpt2\", \"n_layer\": 2}", "model_config"),
        }.AddFloat("wte.weight", [2, 2], [1f, 2f, 3f, 4f]).Write(gpt2);
        Assert.Contains("not a Llama-family decoder", Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(gpt2, 4)).Message);

        var none = Path.Combine(dir, "none.matq");
        new MatqArtifactWriter("rtn", 4, -1, false, [4]).AddFloat("x", [1], [1f]).Write(none);
        Assert.Contains("no model_config", Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(none, 4)).Message);
    }

    [Fact]
    public void An_artifact_missing_a_tensor_is_refused_instead_of_random_init()
    {
        var (path, result) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4));
        var a = MatqArtifact.Open(path);
        var writer = new MatqArtifactWriter("rtn", 4, 32, false, [4]) { ModelConfig = a.Metadata.ModelConfig };
        foreach (var q in a.Quantized) writer.AddQuantized(q);
        foreach (var f in a.Floats.Where(f => f.Name != "model.norm.weight")) writer.AddFloat(f.Name, f.Shape, f.Values);
        var broken = Path.Combine(HfFixtures.TempDir(), "broken.matq");
        writer.Write(broken);
        Assert.Contains("'model.norm.weight' is missing", Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(broken, 4)).Message);
        Assert.Equal(14, result.Layers.Count);
    }
}
