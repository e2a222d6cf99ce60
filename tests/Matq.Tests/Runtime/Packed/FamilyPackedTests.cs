// Every family through the quantization pipeline and the serving backends: RTN 8-bit of each family fixture selects the
// seven linears per layer (q/k/v/o, gate/up/down; Phi-3's split), keeps the family's extra norms float in the artifact,
// loads back in the TorchSharp served model, and, in the packed CPU runtime (Llama 3 rope, Mistral sliding window, Gemma 2
// sandwich norms/GeGLU/soft-caps/windows per layer, Gemma 3 q/k norms and rope per layer type, Qwen 3 q/k norms, Phi-3),
// gives logits within 1e-4 of that served model at 8 bits with fp32 activations and head, prefill and decode.
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Packed;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Runtime.Packed;

public sealed class FamilyPackedTests(ITestOutputHelper output)
{
    /// <summary>The 8-bit RTN artifact (group 32) of a family fixture, or of <paramref name="folder"/> when given.</summary>
    internal static (string Path, LlamaConfig Config) Artifact(string name, string? folder = null)
    {
        using var model = LlamaLoader.Load(folder ?? FamilyParityTests.Fixture(name));
        var selected = LinearSelection.Select(model, PipelineFixtures.Rtn(8, 32));
        var expectedNames = Enumerable.Range(0, model.Config.NumLayers)
            .SelectMany(i => LlamaDecoderLayer.LinearNames.Select(n => $"model.layers.{i}.{n}"));
        Assert.Equal(expectedNames, selected.Select(s => s.Name));
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, 32));
        // scales rounded to 11 significant bits, which the packed layout's fp16 scales (times a power of two) hold exactly
        // (zeros are integers, exact too): both engines then compute with the same weights, so the 1e-4 agreement below
        // tests the family's wiring, not the packed layout's fp16 rounding (PackedLlamaTests bound that at 1e-3·max|logit|)
        foreach (var layer in result.Layers)
            for (int i = 0; i < layer.Scales.Length; i++)
                layer.Scales[i] = MathF.ScaleB((float)(Half)MathF.ScaleB(layer.Scales[i], -Math.ILogB(layer.Scales[i])), Math.ILogB(layer.Scales[i]));
        var path = Path.Combine(HfFixtures.TempDir(), name + ".matq");
        ArtifactExport.Write(result, model, path);
        return (path, model.Config);
    }

    [Theory]
    [MemberData(nameof(FamilyParityTests.Families), MemberType = typeof(FamilyParityTests))]
    public void Family_artifacts_keep_extra_norms_float_and_serve_in_torch(string name)
    {
        var (path, config) = Artifact(name);
        var artifact = MatqArtifact.Open(path);
        Assert.Equal(7 * config.NumLayers, artifact.Quantized.Count);
        foreach (var (tensor, _) in LlamaTensors.Expected(config).Where(t => t.Name.Contains("norm")))
            Assert.True(artifact.TryGetFloat(tensor, out var _f), $"{tensor} should be stored float");
        if (config.SandwichNorms) Assert.True(artifact.TryGetFloat("model.layers.0.pre_feedforward_layernorm.weight", out var _p));
        if (config.QkNorm) Assert.True(artifact.TryGetFloat("model.layers.0.self_attn.q_norm.weight", out var _q));
        Assert.Equal(config, ArtifactSource.ModelConfig(artifact));

        // the served 8-bit model stays close to the float model (RTN 8-bit error, not a wiring error)
        using var scope = NewDisposeScope();
        var (ids, expected) = HfFixtures.Expected(Path.Combine("families", name));
        using var served = QuantizedModelLoader.Load(path, 8);
        using var noGrad = no_grad();
        double diff = HfFixtures.MaxAbsDiff(served.call(ids), expected), scale = expected.abs().max().item<float>();
        output.WriteLine($"{name}: 8-bit RTN served (torch) vs HF fp32: max |Δ| {diff:E3} (max |logit| {scale:F2})");
        Assert.True(diff < 0.05 * scale, $"{name}: 8-bit served logits differ by {diff:E3}");
    }

    [Theory]
    [InlineData("tiny-llama3")]
    [InlineData("tiny-mistral-sw")]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    [InlineData("tiny-qwen3")]
    [InlineData("tiny-phi3")]
    public void Family_packed_runtime_equals_the_torch_served_model(string name)
    {
        var (path, config) = Artifact(name);
        var (idsTensor, _) = HfFixtures.Expected(Path.Combine("families", name));
        var packed = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8 });
        using var served = QuantizedModelLoader.Load(path, 8);
        double worst = 0;
        for (int row = 0; row < idsTensor.shape[0]; row++)
        {
            var ids = idsTensor[row].data<long>().Select(v => (int)v).ToArray();
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var want = served.call(idsTensor[row].unsqueeze(0)).contiguous().data<float>().ToArray();
            // prefill in two chunks then token by token: the window and the cache meet at every offset
            var session = new PackedLlamaSession(packed, threads: 1, activations: PackedActivations.Fp32);
            var got = session.Forward(ids.AsSpan(0, 40), allLogits: true).ToList();
            for (int p = 40; p < ids.Length; p++) got.AddRange(session.Forward(ids.AsSpan(p, 1)));
            Assert.Equal(want.Length, got.Count);
            for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - got[i]));
        }
        output.WriteLine($"{name}: packed 8-bit vs torch served 8-bit: max |Δ| {worst:E3}");
        Assert.True(worst <= 1e-4, $"{name}: packed runtime differs from the torch served model by {worst:E3} (limit 1e-4)");
        if (config.SlidingWindow is int w) Assert.True(ids64(idsTensor) > w, "the sequence must outrun the window");
    }

    private static long ids64(Tensor ids) => ids.shape[1];

    // Gemma ties its head: with HeadBits the embeddings are read from the packed head, still × √hidden; with int8
    // activations the decode GEMVs quantize their inputs. Embeddings stay within 8-bit rounding of the fp32 table's;
    // logits within the RTN/int8 error seen on the other families (a few percent of the largest logit).
    [Theory]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    public void Gemma_packed_head_and_int8_activations_stay_close(string name)
    {
        var (path, config) = Artifact(name);
        Assert.True(config.TieWordEmbeddings && config.ScaleEmbeddings);
        var (idsTensor, _) = HfFixtures.Expected(Path.Combine("families", name));
        var ids = idsTensor[0].data<long>().Select(v => (int)v).ToArray();
        var fp32Model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8 });
        var packedHead = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8, HeadBits = 8, HeadGroup = 32 });
        Assert.Null(packedHead.Embedding);
        Assert.Equal((float)Math.Sqrt(config.HiddenSize), packedHead.EmbeddingScale);
        float[] a = new float[config.HiddenSize], b = new float[config.HiddenSize];
        fp32Model.Embed(ids[0], a);
        packedHead.Embed(ids[0], b);
        double embDiff = a.Zip(b, (x, y) => (double)Math.Abs(x - y)).Max(), embMax = a.Max(Math.Abs);
        Assert.True(embDiff < 0.02 * embMax, $"{name}: embedding from the packed head differs by {embDiff:E3} (max {embMax:E3})");

        var fp32 = new PackedLlamaSession(fp32Model, threads: 1).Forward(ids, allLogits: true);
        var session = new PackedLlamaSession(packedHead, threads: 1, activations: PackedActivations.Int8);
        var got = session.Forward(ids.AsSpan(0, 20), allLogits: true).ToList();
        for (int p = 20; p < ids.Length; p++) got.AddRange(session.Forward(ids.AsSpan(p, 1)));
        double worst = fp32.Zip(got, (x, y) => (double)Math.Abs(x - y)).Max(), scale = fp32.Max(Math.Abs);
        output.WriteLine($"{name}: packed head 8-bit + int8 activations vs fp32: max |Δ| {worst:E3} (max |logit| {scale:F2})");
        Assert.True(worst < 0.1 * scale, $"{name}: packed head / int8 activations differ by {worst:E3}");
    }
}
