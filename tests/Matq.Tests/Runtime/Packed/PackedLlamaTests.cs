// The packed CPU runtime against the TorchSharp served model (QuantizedModelLoader) for the same artifact and bits:
// logits agree within max|Δ| ≤ 1e-3·max|logit| at r = 8, 4, 3, 2 (and 6, 1 through the container fallback), per-channel and grouped, with a plan, a stored
// permutation, Qwen2 biases + tied head, and linear RoPE + GQA on a random model; prefill then token-by-token decode
// equals the full-sequence logits; sequences longer than the context and unsupported layouts are one MatqException.
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Generation;
using Matq.Runtime.Models;
using Matq.Runtime.Packed;
using Matq.Runtime.Plans;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Runtime.Packed;

public sealed class PackedLlamaTests
{
    private const double Tolerance = 1e-3;

    private static int[] Ids(int n, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    /// <summary>The TorchSharp served model's logits [T, V] for ids.</summary>
    private static float[] TorchLogits(string path, int bits, int[] ids, BitPlan? plan = null)
    {
        using var model = QuantizedModelLoader.Load(path, bits, plan: plan);
        using var _ = no_grad();
        using var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], ScalarType.Int64);
        using var logits = model.forward(input);
        return logits.contiguous().data<float>().ToArray();
    }

    private static void AssertClose(float[] want, float[] got, double relative, string what)
    {
        Assert.Equal(want.Length, got.Length);
        double max = want.Max(Math.Abs), worst = 0;
        for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - got[i]));
        Assert.True(worst <= relative * max, $"{what}: max |Δ| = {worst:G4} > {relative}·max|logit| = {relative * max:G4}");
    }

    [Theory]
    [InlineData(8, 32)]
    [InlineData(4, 32)]
    [InlineData(3, 32)]
    [InlineData(2, 32)]
    [InlineData(4, 0)]
    [InlineData(2, 64)]
    [InlineData(6, 32)]   // no 6-bit layout: held in the 8-bit container (documented fallback)
    [InlineData(1, 32)]   // 1-bit codes in the 2-bit container
    public void Logits_equal_the_torch_served_model(int bits, int group)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group));
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits });
        var ids = Ids(45, model.Config.VocabSize, bits);       // 45 > MaxBatch: two prefill chunks
        var session = new PackedLlamaSession(model, threads: bits % 2 == 0 ? 1 : -1);
        AssertClose(TorchLogits(path, bits, ids), session.Forward(ids, allLogits: true), Tolerance, $"r = {bits}, group {group}");
        Assert.All(model.Layers.SelectMany(l => l.Linears), l => Assert.Equal(bits, l.Bits));
    }

    // The fp16 group layout (Kernels/Packed/PackedGroupParams): a symmetric artifact (every zero 2^(c−1)) is held with
    // one fp16 scale per group and no zero array, an asymmetric one with fp16 scale and offset; both serve logits within
    // the tolerance of the torch served model (fp32 scales and zeros), at 8, 4 and 2 bits.
    [Theory]
    [InlineData(8, true)]
    [InlineData(4, true)]
    [InlineData(2, true)]
    [InlineData(8, false)]
    [InlineData(4, false)]
    [InlineData(2, false)]
    public void Symmetric_and_asymmetric_layouts_serve_the_torch_logits(int bits, bool symmetric)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32, symmetric: symmetric));
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits });
        var linears = model.Layers.SelectMany(l => l.Linears).ToArray();
        Assert.All(linears, l => Assert.Equal(symmetric, l.Packed!.Params.Symmetric));
        if (symmetric) Assert.All(linears, l => Assert.Equal(MathF.ScaleB(1f, bits - 1), l.Packed!.Params.ZeroCode));
        // codes r bits, 2 bytes of scale per 32 weights, and 2 more of offset when asymmetric (padding aside)
        Assert.All(linears, l => Assert.Equal((long)l.Packed!.Data.Length + (symmetric ? 2L : 4L) * l.Packed.Params.Scales.LongLength, l.Packed.WeightBytes));
        var ids = Ids(20, model.Config.VocabSize, bits + 7);
        AssertClose(TorchLogits(path, bits, ids), new PackedLlamaSession(model, threads: 2).Forward(ids, allLogits: true), Tolerance,
            $"r = {bits}, {(symmetric ? "symmetric" : "asymmetric")}");
    }

    [Fact]
    public void Prefill_then_decode_step_by_step_equals_the_full_sequence()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 });
        var ids = Ids(40, model.Config.VocabSize, 3);
        var full = new PackedLlamaSession(model).Forward(ids, allLogits: true);
        var session = new PackedLlamaSession(model, threads: 1);
        int v = model.Config.VocabSize, prefill = 7;
        var stepwise = new List<float>(session.Forward(ids.AsSpan(0, prefill), allLogits: true));
        for (int i = prefill; i < ids.Length; i++)
        {
            var last = session.Forward(ids.AsSpan(i, 1));
            Assert.Equal(v, last.Length);
            stepwise.AddRange(last);
        }
        Assert.Equal(ids.Length, session.Length);
        AssertClose(full, stepwise.ToArray(), 1e-5, "step-by-step vs full");
        // the last-token-only result equals the last row of the full logits
        session.Reset();
        AssertClose(full[^v..], session.Forward(ids), 1e-5, "last row");
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(2)]
    public void Int8_activation_decode_stays_within_its_quantization_error(int bits)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits });
        var ids = Ids(24, model.Config.VocabSize, 9);
        var full = new PackedLlamaSession(model).Forward(ids, allLogits: true);
        var session = new PackedLlamaSession(model, activations: PackedActivations.Int8);
        int v = model.Config.VocabSize;
        var stepwise = new List<float>(session.Forward(ids.AsSpan(0, 1), allLogits: true));
        for (int i = 1; i < ids.Length; i++) stepwise.AddRange(session.Forward(ids.AsSpan(i, 1)));
        var got = stepwise.ToArray();
        double max = full.Max(Math.Abs), worst = full.Zip(got, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 2e-2 * max, $"int8 activations: max |Δ| = {worst:G4} vs max|logit| {max:G4}");
        Assert.True(worst > 1e-6 * max, "the int8 path ran (its logits differ from fp32)");
    }

    [Fact]
    public void A_plan_serves_the_named_layers_at_their_bits()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var plan = new BitPlan(new Dictionary<string, int> { ["model.layers.0.self_attn.q_proj"] = 2, ["model.layers.1.mlp.down_proj.weight"] = 3 });
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4, Plan = plan });
        Assert.Equal(2, model.Layers[0].Q.Bits);
        Assert.Equal(3, model.Layers[1].Down.Bits);
        Assert.Equal(4, model.Layers[1].Q.Bits);
        var ids = Ids(20, model.Config.VocabSize, 5);
        AssertClose(TorchLogits(path, 4, ids, plan), new PackedLlamaSession(model).Forward(ids, allLogits: true), Tolerance, "plan");
    }

    [Fact]
    public void A_stored_permutation_is_applied_to_the_activations()
    {
        var (path, _, _) = PipelineFixtures.WriteReversedPermutationArtifact(PipelineFixtures.Rtn(8, 32));
        using var tiny = PipelineFixtures.LoadTiny();
        var ids = Ids(12, tiny.Config.VocabSize, 8);
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 3 });
        Assert.NotNull(model.Layers[0].Q.Packed!.Perm);
        AssertClose(TorchLogits(path, 3, ids), new PackedLlamaSession(model).Forward(ids, allLogits: true), Tolerance, "perm");
    }

    [Fact]
    public void Qwen2_biases_and_a_tied_head_match()
    {
        using var qwen = LlamaLoader.Load(HfFixtures.Path("tiny-qwen2"), CPU);
        Assert.True(qwen.Config.TieWordEmbeddings && qwen.Config.QkvBias);
        var path = WriteArtifact(qwen, PipelineFixtures.Rtn(8, 32));
        var ids = Ids(33, qwen.Config.VocabSize, 2);
        foreach (int bits in new[] { 8, 3 })
        {
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits });
            Assert.NotNull(model.Embedding);
            Assert.Same(model.Embedding, model.Head.Dense);   // tied: one fp32 table, counted once
            Assert.Equal(4L * qwen.Config.VocabSize * qwen.Config.HiddenSize, model.HeadBytes);
            Assert.True(model.OtherBytes < model.HeadBytes);
            AssertClose(TorchLogits(path, bits, ids), new PackedLlamaSession(model).Forward(ids, allLogits: true), Tolerance, $"qwen2 r = {bits}");
        }
        // an int8 head quantized at load: one packed vocabulary table serves the head and the (tied) embedding lookups
        var q8 = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8, HeadBits = 8 });
        Assert.Null(q8.Embedding);
        Assert.Equal(8, q8.Head.Bits);
        AssertClose(TorchLogits(path, 8, ids), new PackedLlamaSession(q8).Forward(ids, allLogits: true), 3e-2, "int8 head");
    }

    [Fact]
    public void Linear_rope_and_one_kv_head_match()
    {
        var config = new LlamaConfig(hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, vocabSize: 100, numKvHeads: 1,
            maxPositionEmbeddings: 64, ropeScaling: RopeScaling.Linear, ropeFactor: 2.0, ropeTheta: 500.0);
        manual_seed(11);
        using var model = new LlamaForCausalLM(config);
        var path = WriteArtifact(model, PipelineFixtures.Rtn(8, 0));
        var packed = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 });
        var ids = Ids(50, 100, 6);
        AssertClose(TorchLogits(path, 4, ids), new PackedLlamaSession(packed, threads: 2).Forward(ids, allLogits: true), Tolerance, "linear rope");
    }

    [Fact]
    public void Greedy_generation_equals_the_torch_generator_including_the_sliding_window()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var ids = Ids(10, 384, 4);
        var options = new GenerationOptions { MaxNewTokens = 14, ContextLength = 16, Sampling = new SamplingOptions { Temperature = 0 } };
        using var torchModel = QuantizedModelLoader.Load(path, 4);
        var want = TextGenerator.Generate(torchModel, ids, options, CPU);
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 });
        var seen = new List<int>();
        var (got, stats) = PackedTextGenerator.Generate(new PackedLlamaSession(model), ids, options, seen.Add);
        Assert.Equal(want, got);
        Assert.Equal(got, seen);
        Assert.Equal(14, got.Count);
        Assert.Equal(10, stats.PromptTokens);
        Assert.Equal(13, stats.DecodedTokens);
        var tooLong = Assert.Throws<MatqException>(() => PackedTextGenerator.Generate(new PackedLlamaSession(model), Ids(17, 384, 1), options));
        Assert.Contains("longer than the model's context of 16 tokens", tooLong.Message);
    }

    [Fact]
    public void A_sequence_longer_than_the_context_is_refused()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 });
        var session = new PackedLlamaSession(model, contextLength: 16);
        var e = Assert.Throws<MatqException>(() => session.Forward(Ids(17, model.Config.VocabSize, 1)));
        Assert.Contains("exceeds the context of 16 tokens", e.Message);
        session.Forward(Ids(16, model.Config.VocabSize, 1));
        Assert.Throws<MatqException>(() => session.Forward([3]));
        Assert.Throws<MatqException>(() => new PackedLlamaSession(model).Forward([model.Config.VocabSize]));   // id outside the vocabulary
        Assert.Equal(256, new PackedLlamaSession(model, contextLength: 100_000).ContextLength); // capped at max_position_embeddings
    }

    [Fact]
    public void Unsupported_layouts_and_bits_are_refused_with_the_fix()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, 16));
        var e = Assert.Throws<MatqException>(() => PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 4 }));
        Assert.Contains("groups of 16 columns", e.Message);
        Assert.Contains("--engine torch", e.Message);
        var (p8, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, 32));
        Assert.Contains("master bits", Assert.Throws<MatqException>(() => PackedLlamaModel.Load(p8, new PackedModelOptions { Bits = 8 })).Message);
        Assert.Contains("--head", Assert.Throws<MatqException>(() => PackedLlamaModel.Load(p8, new PackedModelOptions { HeadBits = 9 })).Message);
        Assert.Throws<MatqException>(() => new PackedLlamaSession(PackedLlamaModel.Load(p8), threads: 0));
    }

    [Fact]
    public void Resident_bytes_fall_with_the_bits()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var bytes = new[] { 8, 4, 3, 2 }.Select(b => PackedLlamaModel.Load(path, new PackedModelOptions { Bits = b }).LayerWeightBytes).ToArray();
        for (int i = 1; i < bytes.Length; i++) Assert.True(bytes[i] < bytes[i - 1], string.Join(", ", bytes));
    }

    private static string WriteArtifact(LlamaForCausalLM model, QuantizationConfig config)
    {
        var result = PipelineFixtures.Quantize(model, config);
        var path = Path.Combine(HfFixtures.TempDir(), "model.matq");
        ArtifactExport.Write(result, model, path);
        return path;
    }
}
