// Every family fixture (tests/fixtures/families, tiny-qwen2) exported to GGUF runs in llama.cpp itself (LLamaSharp 0.30.0's
// CPU build) under its own architecture (llama + rope_freqs for Llama 3, qwen2, qwen3, gemma2, gemma3, phi3), with matq's
// logits: f32 from an 8-bit RTN artifact against matq's served 8-bit model, f32 from the HF folder against HF
// transformers' reference logits, and lossless q8_0 (symmetric 8-bit codes) by NLL ratio. Families llama.cpp would run
// differently (a sliding window on an architecture that has none, ...) are refused in one line, and no file is written.
using System.Text.Json.Nodes;
using Matq.Export;
using Matq.Formats.Gguf;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Models;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class GgufLlamaCppFamilyTests(ITestOutputHelper output)
{
    public static readonly TheoryData<string, string> Runnable = new()
    {
        { "families/tiny-llama3", "llama" }, { "families/tiny-gemma2", "gemma2" }, { "families/tiny-gemma3", "gemma3" },
        { "families/tiny-qwen3", "qwen3" }, { "families/tiny-phi3", "phi3" }, { "tiny-qwen2", "qwen2" },
    };

    // Max |Δlogit| for f32. The llama, qwen2, qwen3 and phi3 graphs agree with matq to float rounding (measured ≤ 5.3e-6).
    // Gemma's GeGLU legitimately differs: ggml-cpu's vec.h defines GGML_GELU_FP16 unconditionally, so its f32 GELU rounds
    // the input to fp16 and reads an fp16 table (relative error up to ~4e-3 per activation, vs the exact tanh formula that
    // matq and HF evaluate in fp32). Measured: gemma2 9.7e-4 (1.4e-3 vs transformers), gemma3 1.7e-3, with the NLL ratio
    // within 1e-5 of 1; 3e-3 leaves room for summation order, and a wiring error (a missing +1 on a norm, a wrong window,
    // a swapped gate/up) moves logits by 1e-1 or more.
    private static double F32Tolerance(string arch) => arch is "gemma2" or "gemma3" ? 3e-3 : 1e-3;

    internal static string Artifact(string fixture, bool symmetric)
    {
        using var model = LlamaLoader.Load(HfFixtures.Path(fixture), CPU);
        // group 32 where every linear's input size allows it (all fixtures here: 64, 96, 128, 160), else per channel
        bool g32 = model.Config.HiddenSize % 32 == 0 && model.Config.IntermediateSize % 32 == 0 && model.Config.QDim % 32 == 0;
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, g32 ? 32 : -1, symmetric));
        var path = Path.Combine(HfFixtures.TempDir(), Path.GetFileName(fixture) + ".matq");
        ArtifactExport.Write(result, model, path);
        return path;
    }

    private static int[] Ids(string fixture)
    {
        var (ids, _) = HfFixtures.Expected(fixture);
        return ids[0].data<long>().Select(v => (int)v).ToArray();
    }

    [Theory]
    [MemberData(nameof(Runnable))]
    public void An_8_bit_artifact_exported_as_f32_runs_in_llama_cpp_with_matqs_served_logits(string fixture, string arch)
    {
        var artifact = Artifact(fixture, symmetric: false);
        var gguf = Path.Combine(HfFixtures.TempDir(), "m.gguf");
        GgufExporter.Export(artifact, GgmlType.F32, gguf);
        var f = GgufFile.Open(gguf);
        Assert.Equal(arch, Assert.IsType<string>(f.Get("general.architecture")));

        var ids = Ids(fixture);
        using var served = QuantizedModelLoader.Load(artifact, 8);
        if (served.Config.SlidingWindow is int w) Assert.True(ids.Length > 2 * w, "the sequence must outrun the window");
        var (diff, ratio) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(gguf, ids), GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine($"| {Path.GetFileName(fixture)} rtn8 ({arch}) | f32 | 8 | - | {diff:E2} | {ratio:F6} |");
        Assert.InRange(diff, 0, F32Tolerance(arch));
        Assert.InRange(ratio, 1 - 1e-4, 1 + 1e-4);
    }

    [Theory]
    [MemberData(nameof(Runnable))]
    public void The_hf_folder_exported_as_f32_runs_in_llama_cpp_with_hf_transformers_logits(string fixture, string arch)
    {
        var gguf = Path.Combine(HfFixtures.TempDir(), "hf.gguf");
        var report = GgufExporter.ExportFloat(HfFixtures.Path(fixture), GgmlType.F32, gguf);
        Assert.Equal(0, report.Requantized);
        var (idsT, expected) = HfFixtures.Expected(fixture);
        var ids = idsT[0].data<long>().Select(v => (int)v).ToArray();
        int v = (int)expected.shape[^1];
        var hf = expected[0].contiguous().data<float>().ToArray();
        var want = Enumerable.Range(0, ids.Length).Select(t => hf.AsSpan(t * v, v).ToArray()).ToArray();
        var (diff, ratio) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(gguf, ids), want, ids);
        output.WriteLine($"| {Path.GetFileName(fixture)} HF folder ({arch}) vs transformers | f32 | float | - | {diff:E2} | {ratio:F6} |");
        Assert.InRange(diff, 0, F32Tolerance(arch));
        Assert.InRange(ratio, 1 - 1e-4, 1 + 1e-4);
    }

    [Theory]
    [MemberData(nameof(Runnable))]
    public void Symmetric_8_bit_codes_exported_losslessly_as_q8_0_keep_matqs_nll(string fixture, string arch)
    {
        var artifact = Artifact(fixture, symmetric: true);
        var gguf = Path.Combine(HfFixtures.TempDir(), "q8.gguf");
        var report = GgufExporter.Export(artifact, GgmlType.Q8_0, gguf, embedType: GgmlType.F32);
        using var served = QuantizedModelLoader.Load(artifact, 8);
        Assert.Equal(7 * served.Config.NumLayers, report.Lossless);   // Phi-3's fused attn_qkv/ffn_up count their parts
        var ids = Ids(fixture);
        var (diff, ratio) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(gguf, ids), GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine($"| {Path.GetFileName(fixture)} rtn8 sym ({arch}) | q8_0 | 8 | {report.Lossless} | {diff:E2} | {ratio:F6} |");
        // ggml quantizes the activations to q8 blocks inside q8_0 dot products (see GgufLlamaCppTests)
        Assert.InRange(diff, 0, 0.3);
        Assert.InRange(ratio, 1 - 5e-3, 1 + 5e-3);
    }

    [Fact]
    public void Llama3_rope_freqs_are_the_ratio_of_hfs_unscaled_to_scaled_inverse_frequencies()
    {
        var cfg = LlamaLoader.Load(HfFixtures.Path("families/tiny-llama3"), CPU).Config;
        var factors = GgufArchitecture.Llama3RopeFactors(cfg.Rope, cfg.HeadDim);
        var scaled = cfg.Rope.InverseFrequencies(cfg.HeadDim);
        var plain = new RopeSpec(cfg.RopeTheta).InverseFrequencies(cfg.HeadDim);
        Assert.Equal(cfg.HeadDim / 2, factors.Length);
        for (int i = 0; i < factors.Length; i++)
            Assert.True(Math.Abs(plain[i] / factors[i] - scaled[i]) <= 1e-6 * scaled[i], $"i {i}: {plain[i]} / {factors[i]} vs HF {scaled[i]}");
        // the fixture (original context 64, factor 8) has all three bands: kept, smoothed, divided by the factor
        Assert.Contains(1f, factors);
        Assert.Contains(8f, factors);
        Assert.Contains(factors, x => x > 1f && x < 8f);
        var f = GgufFile.Open(ExportF32("families/tiny-llama3"));
        Assert.Equal([cfg.HeadDim / 2L], f.Tensors.Single(t => t.Name == "rope_freqs.weight").Shape);
    }

    [Fact]
    public void Gemma_norms_are_stored_as_one_plus_w_and_phi3_projections_fused_gate_first()
    {
        using var gemma = LlamaLoader.Load(HfFixtures.Path("families/tiny-gemma3"), CPU);
        var g = GgufFile.Open(ExportF32("families/tiny-gemma3"));
        float[] Read(GgufFile file, string name) { var t = file.Tensors.Single(t => t.Name == name); return GgufBlocks.Decode(GgmlType.F32, file.ReadTensorBytes(t), t.Count); }
        foreach (var (hf, gg) in new[] { ("model.layers.1.self_attn.k_norm.weight", "blk.1.attn_k_norm.weight"), ("model.layers.1.post_feedforward_layernorm.weight", "blk.1.post_ffw_norm.weight"), ("model.norm.weight", "output_norm.weight") })
        {
            var w = PipelineFixtures.Floats(gemma.get_parameter(hf)!);
            Assert.Equal(w.Select(x => 1f + x), Read(g, gg));
        }
        Assert.Equal(3u, Assert.IsType<uint>(g.Get("gemma3.attention.sliding_window_pattern")));

        using var phi = LlamaLoader.Load(HfFixtures.Path("families/tiny-phi3"), CPU);
        var p = GgufFile.Open(ExportF32("families/tiny-phi3"));
        var up = Read(p, "blk.0.ffn_up.weight");
        var gate = PipelineFixtures.Floats(phi.get_parameter("model.layers.0.mlp.gate_proj.weight")!);
        var upHf = PipelineFixtures.Floats(phi.get_parameter("model.layers.0.mlp.up_proj.weight")!);
        Assert.Equal(gate.Concat(upHf), up);
        Assert.Equal([3 * 64L, 64L], p.Tensors.Single(t => t.Name == "blk.0.attn_qkv.weight").Shape);
        Assert.DoesNotContain(p.Tensors, t => t.Name.Contains("ffn_gate", StringComparison.Ordinal));
    }

    private static string ExportF32(string fixture)
    {
        var gguf = Path.Combine(HfFixtures.TempDir(), "x.gguf");
        GgufExporter.ExportFloat(HfFixtures.Path(fixture), GgmlType.F32, gguf);
        return gguf;
    }

    // config edits that llama.cpp cannot express for the family's architecture: refused in one line, no file written
    [Theory]
    [InlineData("families/tiny-mistral-sw", null, null, "the GGUF export does not support a sliding window of 16 tokens (Mistral model): llama.cpp's llama architecture attends to the whole context")]
    [InlineData("families/tiny-phi3", "sliding_window", "16", "the GGUF export does not support a sliding window of 16 tokens (Phi3 model): llama.cpp's phi3 reads the window and then disables it")]
    [InlineData("tiny-qwen2", "use_sliding_window", "true", "the GGUF export does not support a sliding window of 8 tokens (Qwen2 model)")]
    [InlineData("families/tiny-gemma2", "query_pre_attn_scalar", "64", "the GGUF export does not support query_pre_attn_scalar 64 (Gemma2 model)")]
    [InlineData("families/tiny-gemma3", "final_logit_softcapping", "30.0", "the GGUF export does not support final-logit soft-cap (Gemma3 model)")]
    public void What_llama_cpp_would_run_differently_is_refused_in_one_line(string fixture, string? key, string? value, string start)
    {
        var folder = HfFixtures.CopyToTemp(fixture);
        if (key is not null)
        {
            var cfgPath = Path.Combine(folder, "config.json");
            var json = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
            json[key] = JsonNode.Parse(value!);
            if (key == "use_sliding_window") { json["sliding_window"] = 8; json["max_window_layers"] = 0; json.Remove("layer_types"); }
            File.WriteAllText(cfgPath, json.ToJsonString());
        }
        var gguf = Path.Combine(folder, "out.gguf");
        var e = Assert.Throws<MatqException>(() => GgufExporter.ExportFloat(folder, GgmlType.F32, gguf));
        Assert.StartsWith(start, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(File.Exists(gguf));
        if (key is null)
        {
            // the artifact path refuses with the same line
            var artifact = Artifact(fixture, symmetric: false);
            var e2 = Assert.Throws<MatqException>(() => GgufExporter.Export(artifact, GgmlType.Q8_0, gguf));
            Assert.Equal(e.Message, e2.Message);
        }
    }

    [Fact]
    public void Descriptions_without_a_llama_cpp_equivalent_are_refused_by_the_architecture_map()
    {
        string Refusal(LlamaConfig c) => Assert.Throws<MatqException>(() => GgufArchitecture.For(c)).Message;
        Assert.StartsWith("the GGUF export does not support projection biases (Qwen3 model)",
            Refusal(new LlamaConfig(64, 160, 2, 4, 384, LlamaFamily.Qwen3, headDim: 32, attentionBias: true)));
        Assert.StartsWith("the GGUF export does not support rope type llama3 (Qwen2 model)",
            Refusal(new LlamaConfig(64, 160, 2, 4, 384, LlamaFamily.Qwen2, rope: new RopeSpec(1e4, RopeScaling.Llama3, 8, originalMaxPositions: 64))));
        var linear = new RopeSpec(1e4, RopeScaling.Linear, 8);
        Assert.StartsWith("the GGUF export does not support rope type Linear on sliding layers (Gemma3 model)",
            Refusal(new LlamaConfig(64, 160, 3, 4, 384, LlamaFamily.Gemma3, headDim: 16, slidingWindow: 16, slidingLayers: [true, true, false], rope: linear)));
        Assert.StartsWith("the GGUF export does not support rope per layer type (Qwen3 model)",
            Refusal(new LlamaConfig(64, 160, 2, 4, 384, LlamaFamily.Qwen3, headDim: 32, localRope: linear)));
        // gemma3 slides on layers i % p < p − 1 only: a full layer first has no period
        Assert.StartsWith("the GGUF export does not support this pattern of sliding layers (Gemma3 model)",
            Refusal(new LlamaConfig(64, 160, 3, 4, 384, LlamaFamily.Gemma3, headDim: 16, slidingWindow: 16, slidingLayers: [false, true, true])));
        // gemma2 in llama.cpp has no output.weight: its head is token_embd, so an untied head cannot be exported
        var gemma2 = (bool tied) => new LlamaConfig(64, 160, 2, 4, 384, LlamaFamily.Gemma2, headDim: 16, tieWordEmbeddings: tied, slidingWindow: 16,
            slidingLayers: [true, false], attnLogitSoftcap: 50, finalLogitSoftcap: 30);
        Assert.Equal("the GGUF export does not support an untied lm_head (Gemma2 model): llama.cpp's gemma2 always takes its output head from token_embd; the TorchSharp model (--engine torch) runs every family",
            Refusal(gemma2(false)));
        Assert.Equal("gemma2", GgufArchitecture.For(gemma2(true)).Name);
        Assert.Equal(6, GgufArchitecture.SlidingPeriod([true, true, true, true, true, false, true, true, true, true, true, false]));
        Assert.Equal(2, GgufArchitecture.SlidingPeriod([true, false, true]));
        Assert.Null(GgufArchitecture.SlidingPeriod([true, false, false]));
        Assert.Equal("llama", GgufArchitecture.For(new LlamaConfig(64, 160, 2, 4, 384, LlamaFamily.Mistral)).Name);
    }

    [Theory]
    [InlineData("""{"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"}, "sliding_attention": {"rope_theta": 500.0, "rope_type": "default"}}""")]
    [InlineData("""{"full_attention": {"rope_theta": 1000000.0, "rope_type": "linear", "factor": 8.0}, "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}""")]
    public void Gemma3_local_rope_base_and_global_linear_scaling_run_in_llama_cpp(string rope)
    {
        // the fixture's local base is llama.cpp's default (10000): a different one shows gemma3.rope.freq_base_swa is read;
        // a linear global rope (Gemma 3 4B and larger) is scaled on the full-attention layers only, as HF does
        var folder = HfFixtures.CopyToTemp("families/tiny-gemma3");
        var cfgPath = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        json["rope_parameters"] = JsonNode.Parse(rope);
        File.WriteAllText(cfgPath, json.ToJsonString());
        var gguf = Path.Combine(folder, "g3.gguf");
        GgufExporter.ExportFloat(folder, GgmlType.F32, gguf);
        var ids = Ids("families/tiny-gemma3");
        using var model = LlamaLoader.Load(folder, CPU);
        using var original = LlamaLoader.Load(HfFixtures.Path("families/tiny-gemma3"), CPU);
        var cpp = LlamaCpp.Logits(gguf, ids);
        var (diff, _) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(model, ids), ids);
        var (dOrig, _) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(original, ids), ids);
        output.WriteLine($"gemma3 rope {rope}: llama.cpp vs matq {diff:E2} (vs the fixture's rope {dOrig:E2})");
        Assert.InRange(diff, 0, F32Tolerance("gemma3"));
        Assert.True(dOrig > 10 * F32Tolerance("gemma3"), "the rope change must matter");
    }

    [Fact]
    public void A_llama_with_attention_and_mlp_biases_has_its_q_and_k_biases_permuted_like_the_rows()
    {
        var cfg = new LlamaConfig(64, 96, 2, 4, 128, numKvHeads: 2, maxPositionEmbeddings: 128, attentionBias: true, mlpBias: true);
        manual_seed(5);
        using var model = new LlamaForCausalLM(cfg);
        var folder = HfFixtures.TempDir();
        LlamaSaver.Save(model, folder);
        var gguf = Path.Combine(folder, "bias.gguf");
        GgufExporter.ExportFloat(folder, GgmlType.F32, gguf);
        Assert.Contains(GgufFile.Open(gguf).Tensors, t => t.Name == "blk.1.attn_k.bias");
        int[] ids = Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % 128).ToArray();
        var (diff, _) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(gguf, ids), GgufLlamaCppTests.MatqLogits(model, ids), ids);
        Assert.InRange(diff, 0, 1e-3);
    }

    [Fact]
    public void A_mistral_without_its_window_runs_in_llama_cpp_but_differs_from_the_windowed_model_past_the_window()
    {
        // why the window is refused rather than dropped: llama.cpp's llama graph runs this file as full attention, which
        // matches matq's windowless model and not the windowed one once the sequence outruns the 16-token window
        var folder = HfFixtures.CopyToTemp("families/tiny-mistral-sw");
        var cfgPath = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        json["sliding_window"] = null;
        File.WriteAllText(cfgPath, json.ToJsonString());
        var gguf = Path.Combine(folder, "full.gguf");
        GgufExporter.ExportFloat(folder, GgmlType.F32, gguf);
        var ids = Ids("families/tiny-mistral-sw");
        var cpp = LlamaCpp.Logits(gguf, ids);
        using var full = LlamaLoader.Load(folder, CPU);
        using var windowed = LlamaLoader.Load(HfFixtures.Path("families/tiny-mistral-sw"), CPU);
        var (dFull, _) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(full, ids), ids);
        var (dWin, _) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(windowed, ids), ids);
        output.WriteLine($"tiny-mistral without window: llama.cpp vs matq full attention {dFull:E2}, vs matq windowed {dWin:E2}");
        Assert.InRange(dFull, 0, 1e-3);
        Assert.True(dWin > 0.05, $"windowed and full attention should differ past the window ({dWin:E2})");
    }
}
