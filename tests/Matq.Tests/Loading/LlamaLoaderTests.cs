// Loader/saver behaviour on the HF fixtures: round trips (F32 exact, sharded, BF16 within tolerance) and one clear
// MatqException per kind of bad checkpoint, naming the tensor or field at fault.
using System.Text.Json.Nodes;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Models;
using Matq.Tests.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Loading;

public class LlamaLoaderTests(ITestOutputHelper output)
{
    private static Tensor Logits(LlamaForCausalLM model, Tensor ids)
    {
        using var _ = no_grad();
        return model.call(ids);
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void F32SaveLoadRoundTripGivesIdenticalLogits(string fixture)
    {
        using var scope = NewDisposeScope();
        var (ids, _) = HfFixtures.Expected(fixture);
        using var original = LlamaLoader.Load(HfFixtures.Path(fixture));
        var dir = HfFixtures.TempDir();
        LlamaSaver.Save(original, dir);
        using var reloaded = LlamaLoader.Load(dir);
        Assert.Equal(original.Config, reloaded.Config);
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(Logits(original, ids), Logits(reloaded, ids)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(HfFixtures.Path(fixture), "model.safetensors")).Length,
            File.ReadAllBytes(Path.Combine(dir, "model.safetensors")).Length);
    }

    [Fact]
    public void ShardedSaveWritesIndexAndReloadsIdentically()
    {
        using var scope = NewDisposeScope();
        var (ids, _) = HfFixtures.Expected("tiny-llama");
        using var original = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        var dir = HfFixtures.TempDir();
        LlamaSaver.Save(original, dir, SafetensorsDtype.F32, maxShardBytes: 100_000);
        Assert.True(File.Exists(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName)));
        Assert.False(File.Exists(Path.Combine(dir, SafetensorsCheckpoint.SingleFileName)));
        Assert.True(Directory.GetFiles(dir, "model-*-of-*.safetensors").Length > 1);
        using var reloaded = LlamaLoader.Load(dir);
        Assert.Equal(0.0, HfFixtures.MaxAbsDiff(Logits(original, ids), Logits(reloaded, ids)));
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void Bf16SaveReloadsWithinBf16Tolerance(string fixture)
    {
        using var scope = NewDisposeScope();
        var (ids, expected) = HfFixtures.Expected(fixture);
        using var original = LlamaLoader.Load(HfFixtures.Path(fixture));
        var dir = HfFixtures.TempDir();
        LlamaSaver.Save(original, dir, SafetensorsDtype.BF16);
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
            Assert.All(ckpt.TensorNames, n => Assert.Equal(SafetensorsDtype.BF16, ckpt.Get(n).Dtype));
        Assert.Equal("bfloat16", JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!["dtype"]!.GetValue<string>());

        using var asF32 = LlamaLoader.Load(dir, dtype: ScalarType.Float32);
        using var asBf16 = LlamaLoader.Load(dir, dtype: ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, asBf16.Dtype);
        double scale = expected.abs().max().item<float>();
        double d32 = HfFixtures.MaxAbsDiff(Logits(asF32, ids), expected);
        double d16 = HfFixtures.MaxAbsDiff(Logits(asBf16, ids), expected);
        output.WriteLine($"{fixture}: max|logit| {scale:G3}; bf16 weights in fp32 diff {d32:E3}; bf16 compute diff {d16:E3}");
        // bf16 keeps 8 mantissa bits (rel. error <= 2^-9 per weight); measured ~0.3% (weights) and ~0.6% (compute) of max|logit|
        Assert.True(d32 < 0.02 * scale, $"bf16 weights, fp32 compute: max abs diff {d32:E3} (max|logit| {scale:G3})");
        Assert.True(d16 < 0.03 * scale, $"bf16 compute: max abs diff {d16:E3} (max|logit| {scale:G3})");
        Assert.True(d32 > 0, "bf16 rounding should change something");
    }

    [Fact]
    public void ModelTypeGpt2IsRefused()
    {
        var dir = CheckpointEdits.EditConfig("tiny-llama", s => s.Replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\""));
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains("model_type 'gpt2' is not a Llama-family decoder (supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3)", e.Message);
    }

    [Fact]
    public void RopeTypeYarnIsRefused()
    {
        var dir = CheckpointEdits.EditConfig("tiny-llama", s => s.Replace("\"rope_type\": \"default\"", "\"rope_type\": \"yarn\", \"factor\": 4.0"));
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains("rope type 'yarn'", e.Message);
        Assert.Contains("(supported: default, linear, llama3)", e.Message);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        const string dropped = "model.layers.1.mlp.up_proj.weight";
        var dir = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) => n == dropped ? null : (i.Dtype, i.Shape, d));
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains($"'{dropped}' is missing", e.Message);
    }

    [Fact]
    public void UntiedModelWithoutHeadIsRefused()
    {
        var dir = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) => n == "lm_head.weight" ? null : (i.Dtype, i.Shape, d));
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains("'lm_head.weight' is missing", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamedWithBothShapes()
    {
        const string name = "model.layers.0.self_attn.k_proj.weight"; // [32, 64]
        var dir = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) => n == name ? (i.Dtype, new long[] { 64, 32 }, d) : (i.Dtype, i.Shape, d));
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains($"'{name}' has shape [64, 32] but config.json implies [32, 64]", e.Message);
    }

    [Fact]
    public void NaNWeightIsNamed()
    {
        const string name = "model.layers.1.self_attn.o_proj.weight";
        var dir = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) =>
        {
            if (n != name) return (i.Dtype, i.Shape, d);
            var copy = (byte[])d.Clone();
            BitConverter.GetBytes(float.NaN).CopyTo(copy, 4 * 17);
            return (i.Dtype, i.Shape, copy);
        });
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains($"'{name}' holds 1 NaN/Inf", e.Message);
    }

    [Fact]
    public void UnexpectedTensorIsRefusedButInvFreqOnlyWarns()
    {
        var extra = ("model.layers.0.self_attn.extra_proj.weight", SafetensorsDtype.F32, new long[] { 2 }, new byte[8]);
        var dir = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) => (i.Dtype, i.Shape, d), [extra]);
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
        Assert.Contains("'model.layers.0.self_attn.extra_proj.weight'", e.Message);

        var invFreq = ("model.layers.0.self_attn.rotary_emb.inv_freq", SafetensorsDtype.F32, new long[] { 8 }, new byte[32]);
        var ok = CheckpointEdits.Rewrite("tiny-llama", (n, i, d) => (i.Dtype, i.Shape, d), [invFreq]);
        var warnings = new List<string>();
        using var model = LlamaLoader.Load(ok, warn: warnings.Add);
        Assert.Single(warnings);
        Assert.Contains("inv_freq", warnings[0]);
    }

    [Fact]
    public void TiedHeadPresentMustEqualEmbedding()
    {
        byte[]? emb = null;
        using (var ckpt = SafetensorsCheckpoint.Open(HfFixtures.Path("tiny-qwen2"))) emb = ckpt.ReadBytes("model.embed_tokens.weight");
        var same = ("lm_head.weight", SafetensorsDtype.F32, new long[] { 320, 96 }, emb);
        var okDir = CheckpointEdits.Rewrite("tiny-qwen2", (n, i, d) => (i.Dtype, i.Shape, d), [same]);
        using (var model = LlamaLoader.Load(okDir)) Assert.Null(model.LmHead);

        var different = (byte[])emb.Clone();
        different[0] ^= 0x01;
        var badDir = CheckpointEdits.Rewrite("tiny-qwen2", (n, i, d) => (i.Dtype, i.Shape, d), [("lm_head.weight", SafetensorsDtype.F32, new long[] { 320, 96 }, different)]);
        var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(badDir));
        Assert.Contains("'lm_head.weight' differs from 'model.embed_tokens.weight'", e.Message);
    }

    [Fact]
    public void F16AndBf16OnDiskLoad()
    {
        using var scope = NewDisposeScope();
        var (ids, expected) = HfFixtures.Expected("tiny-qwen2");
        var dir = CheckpointEdits.Rewrite("tiny-qwen2", (n, i, d) =>
        {
            var floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(d);
            var halves = new Half[floats.Length];
            for (int k = 0; k < floats.Length; k++) halves[k] = (Half)floats[k];
            return (SafetensorsDtype.F16, i.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan()).ToArray());
        });
        using var model = LlamaLoader.Load(dir);
        double diff = HfFixtures.MaxAbsDiff(Logits(model, ids), expected);
        output.WriteLine($"f16 on disk: max abs diff {diff:E3}");
        Assert.True(diff < 0.01 * expected.abs().max().item<float>(), $"f16 weights: max abs diff {diff:E3}");
    }

    [Fact]
    public void LoadedModelOutlivesCallersDisposeScope()
    {
        LlamaForCausalLM model;
        using (var scope = NewDisposeScope()) model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"));
        using (model)
        using (var scope = NewDisposeScope())
        {
            var (ids, expected) = HfFixtures.Expected("tiny-llama");
            Assert.True(HfFixtures.MaxAbsDiff(Logits(model, ids), expected) < 1e-4);
        }
    }
}
