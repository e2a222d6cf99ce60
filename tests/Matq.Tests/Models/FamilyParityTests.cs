// Parity of every described family with HF transformers 5.17 (tests/fixtures/families: Llama 3 rope, Mistral sliding
// window, Gemma 2, Gemma 3, Qwen 3, Phi-3), loaded from both config.json forms (5.x rope_parameters, 4.x hub form), and
// after a save -> load round trip: fp32 logits within 1e-4 (max abs) of HF's.
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Models;

public class FamilyParityTests(ITestOutputHelper output)
{
    public static readonly TheoryData<string> Families = new()
    {
        "tiny-llama3", "tiny-mistral-sw", "tiny-gemma2", "tiny-gemma3", "tiny-qwen3", "tiny-phi3",
    };

    public static TheoryData<string, bool> FamiliesAndForms()
    {
        var data = new TheoryData<string, bool>();
        foreach (string f in Families) { data.Add(f, false); data.Add(f, true); }
        return data;
    }

    internal static string Fixture(string name) => HfFixtures.Path(Path.Combine("families", name));

    /// <summary>The fixture folder, or a temp copy whose config.json is the 4.x-form config.hub.json.</summary>
    internal static string Folder(string name, bool hubForm)
    {
        if (!hubForm) return Fixture(name);
        var dir = HfFixtures.TempDir();
        File.Copy(Path.Combine(Fixture(name), "config.hub.json"), Path.Combine(dir, "config.json"));
        File.Copy(Path.Combine(Fixture(name), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    private double Check(LlamaForCausalLM model, string name, string what)
    {
        var (ids, expected) = HfFixtures.Expected(Path.Combine("families", name));
        using var _ = no_grad();
        var logits = model.call(ids);
        Assert.Equal(expected.shape, logits.shape);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        double diff = HfFixtures.MaxAbsDiff(logits, expected);
        output.WriteLine($"{name} {what}: max |Δ| {diff:E3}");
        Assert.True(diff <= 1e-4, $"{name} {what}: max abs diff {diff:E3} vs HF logits (limit 1e-4)");
        return diff;
    }

    [Theory]
    [MemberData(nameof(FamiliesAndForms))]
    public void FamilyLogitsMatchTransformers(string name, bool hubForm)
    {
        using var scope = NewDisposeScope();
        using var model = LlamaLoader.Load(Folder(name, hubForm));
        Check(model, name, hubForm ? "4.x config" : "5.x config");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void FamilyBothConfigFormsReadToTheSameDescription(string name)
    {
        var modern = HfLlamaConfig.Read(Fixture(name));
        var hub = HfLlamaConfig.Read(Path.Combine(Fixture(name), "config.hub.json"));
        // the forms differ only in rope keys and dtype naming: every modeled field is equal
        Assert.Equal(HfLlamaConfig.ToJson(modern).Replace("\"dtype\"", "x"), HfLlamaConfig.ToJson(hub).Replace("\"dtype\"", "x").Replace("\"torch_dtype\": \"float32\",\n", ""), ignoreLineEndingDifferences: true);
        Assert.Equal(modern, HfLlamaConfig.Parse(HfLlamaConfig.ToJson(modern)));
        Assert.Equal(hub, HfLlamaConfig.Parse(HfLlamaConfig.ToJson(hub)));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void FamilySaveLoadRoundTripReproducesLogits(string name)
    {
        using var scope = NewDisposeScope();
        using var model = LlamaLoader.Load(Fixture(name));
        var dir = HfFixtures.TempDir();
        LlamaSaver.Save(model, dir);
        using var back = LlamaLoader.Load(dir);
        Assert.Equal(model.Config, back.Config);
        // the checkpoint names are the family's own (Phi-3: fused), so the saved folder loads where the fixture does
        using (var saved = Matq.Formats.Safetensors.SafetensorsCheckpoint.Open(dir))
        using (var original = Matq.Formats.Safetensors.SafetensorsCheckpoint.Open(Fixture(name)))
            Assert.Equal(original.TensorNames.OrderBy(n => n, StringComparer.Ordinal), saved.TensorNames.OrderBy(n => n, StringComparer.Ordinal));
        Check(back, name, "after save/load");
    }

    [Fact]
    public void FamilyDescriptionsCarryTheirFeatures()
    {
        var llama3 = HfLlamaConfig.Read(Fixture("tiny-llama3"));
        Assert.Equal(new RopeSpec(500000.0, RopeScaling.Llama3, 8.0, 1.0, 4.0, 64), llama3.Rope);
        var mistral = HfLlamaConfig.Read(Fixture("tiny-mistral-sw"));
        Assert.Equal(16, mistral.SlidingWindow);
        Assert.All(mistral.SlidingLayers, Assert.True);
        var gemma2 = HfLlamaConfig.Read(Fixture("tiny-gemma2"));
        Assert.True(gemma2.NormOffset && gemma2.SandwichNorms && gemma2.ScaleEmbeddings && !gemma2.QkNorm);
        Assert.Equal((1.0, 2.0, 32.0), (gemma2.AttnLogitSoftcap, gemma2.FinalLogitSoftcap, gemma2.QueryPreAttnScalar));
        Assert.Equal(new[] { true, false }, gemma2.SlidingLayers);
        Assert.Equal(Activation.GeluTanh, gemma2.Activation);
        var gemma3 = HfLlamaConfig.Read(Fixture("tiny-gemma3"));
        Assert.True(gemma3.QkNorm && gemma3.NormOffset && gemma3.AttnLogitSoftcap is null && gemma3.FinalLogitSoftcap is null);
        Assert.Equal((1e6, 1e4), (gemma3.Rope.Theta, gemma3.LocalRope.Theta));
        Assert.Equal(gemma3.LocalRope, gemma3.RopeOf(0));
        Assert.Equal(gemma3.Rope, gemma3.RopeOf(2));
        var qwen3 = HfLlamaConfig.Read(Fixture("tiny-qwen3"));
        Assert.True(qwen3.QkNorm && !qwen3.QkvBias && !qwen3.NormOffset);
        var phi3 = HfLlamaConfig.Read(Fixture("tiny-phi3"));
        Assert.True(phi3.FusedProjections);
        Assert.Contains(LlamaTensors.Checkpoint(phi3), t => t.Name == "model.layers.0.self_attn.qkv_proj.weight");
        Assert.Contains(LlamaTensors.Expected(phi3), t => t.Name == "model.layers.0.mlp.up_proj.weight");
    }

    private static string Llama(string extra) => $$"""
        {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "vocab_size": 100{{extra}}}
        """;

    [Theory]
    [InlineData(""", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}""", "rope type 'yarn' in config.json is not supported (supported: default, linear, llama3)")]
    [InlineData(""", "rope_scaling": {"type": "longrope", "factor": 4.0}""", "rope type 'longrope' in config.json is not supported (supported: default, linear, llama3)")]
    [InlineData(""", "rope_parameters": {"rope_theta": 1e4, "rope_type": "dynamic", "factor": 2.0}""", "rope type 'dynamic' in config.json is not supported (supported: default, linear, llama3)")]
    [InlineData(""", "rope_parameters": {"rope_theta": 1e4, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}""",
        "config.json rope_parameters.original_max_position_embeddings is missing (rope type 'llama3' needs it)")]
    [InlineData(""", "num_local_experts": 8""", "config.json num_local_experts 8 is not supported: mixture-of-experts layers are not modeled (supported: dense decoders, llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3)")]
    [InlineData(""", "text_config": {}""", "config.json model_type 'llama' is a multimodal config (text_config/vision_config), which is not supported (supported: the text decoders llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3; give the text model's config)")]
    [InlineData(""", "layer_types": ["full_attention", "chunked_attention"]""", "config.json layer_types[1] 'chunked_attention' is not supported (supported: full_attention, sliding_attention)")]
    [InlineData(""", "rope_parameters": {"rope_theta": 1e4, "rope_type": "default", "partial_rotary_factor": 0.75}""", "config.json rope_parameters.partial_rotary_factor 0.75 is not supported (only full rotary embeddings)")]
    public void FamilyUnsupportedFeaturesFailInOneLine(string extra, string message)
    {
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(Llama(extra)));
        Assert.Equal(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("gemma3", "config.json model_type 'gemma3' is a multimodal config (text_config/vision_config), which is not supported (supported: the text decoders llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3; give the text model's config)")]
    [InlineData("mixtral", "config.json model_type 'mixtral' is not a Llama-family decoder (supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3)")]
    [InlineData("qwen3_moe", "config.json model_type 'qwen3_moe' is not a Llama-family decoder (supported: llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3)")]
    public void FamilyUnsupportedModelTypesFailInOneLine(string modelType, string message)
    {
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(Llama("").Replace("\"llama\"", $"\"{modelType}\"")));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void FamilyGemmaActivationAndBidirectionalAreChecked()
    {
        var gemma = File.ReadAllText(Path.Combine(Fixture("tiny-gemma2"), "config.json"));
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(gemma.Replace("\"gelu_pytorch_tanh\"", "\"relu\"")));
        Assert.Equal("config.json hidden_activation 'relu' is not supported (supported: silu, gelu_pytorch_tanh)", e.Message);
        e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(gemma.Replace("\"use_bidirectional_attention\": null", "\"use_bidirectional_attention\": true")));
        Assert.Equal("config.json use_bidirectional_attention true is not supported (supported: false, causal decoders)", e.Message);
    }
}

public class FamilyWindowConventionTests
{
    // HF's convention (key j visible to query i iff i - W < j <= i) is what the fixture's logits confirm: a window one
    // shorter or longer than config.json's gives different logits, so the parity tests above can tell them apart
    [Theory]
    [InlineData("tiny-mistral-sw")]
    [InlineData("tiny-gemma2")]
    public void FamilyWindowOffByOneChangesLogits(string name)
    {
        using var scope = NewDisposeScope();
        var (ids, expected) = HfFixtures.Expected(Path.Combine("families", name));
        foreach (var w in new[] { 15, 17 })
        {
            var dir = FamilyParityTests.Folder(name, hubForm: true);
            var path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"sliding_window\": 16", $"\"sliding_window\": {w}"));
            using var model = LlamaLoader.Load(dir);
            Assert.Equal(w, model.Config.SlidingWindow);
            using var _ = no_grad();
            Assert.True(HfFixtures.MaxAbsDiff(model.call(ids), expected) > 1e-3, $"{name}: window {w} should not match HF's window 16");
        }
    }
}
