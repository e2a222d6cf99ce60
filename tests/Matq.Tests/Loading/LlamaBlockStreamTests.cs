// LlamaBlockStream: a streamed PTQ run equals the resident one bit for bit, holds at most one decoder block at a time,
// and a bf16 checkpoint (sharded) keeps its float tensors in bf16 in the artifact.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit;
using static TorchSharp.torch;

namespace Matq.Tests.Loading;

public class LlamaBlockStreamTests
{
    private static QuantizationResult Run(QuantizationConfig config, Func<QuantizationContext> context) =>
        QuantizationRunner.Run(config, context());

    private static CalibrationTokens Calibration() =>
        new(Enumerable.Range(0, 4).Select(i => Enumerable.Range(0, 16).Select(t => (i * 37 + t * 11) % 200).ToArray()).ToList());

    // a placeholder parameter is one element broadcast to its shape (every stride 0)
    private static bool Resident(Tensor t) => t.stride().Any(s => s != 0);

    [Theory]
    [InlineData("rtn", false)]
    [InlineData("gptq", false)]
    [InlineData("omniquant", false)]
    [InlineData("gptq", true)]
    public void A_streamed_run_equals_the_resident_run_and_holds_one_block_at_a_time(string method, bool head)
    {
        var options = method == "omniquant" ? new Dictionary<string, string> { ["epochs"] = "1" } : new Dictionary<string, string>();
        var config = new QuantizationConfig(method, 4, 32, false, head, options);
        var folder = PipelineFixtures.TinyPath;   // untied head: --include-head makes it the last block
        using var resident = LlamaLoader.Load(folder, CPU);
        var expected = Run(config, () => new QuantizationContext(resident, CPU, Calibration, seed: 7));

        using var stream = LlamaBlockStream.Open(folder, CPU);
        int maxHeld = 0;
        void Observe(QuantizationEvent e)
        {
            int held = stream.Model.Layers.Count(l => Resident(stream.Model.get_parameter($"model.layers.{l.Index}.input_layernorm.weight")!));
            maxHeld = Math.Max(maxHeld, held);
        }
        var actual = Run(config, () => new QuantizationContext(stream.Model, CPU, Calibration, seed: 7, progress: Observe) { Blocks = stream });

        Assert.Equal(expected.Layers.Select(l => l.Name), actual.Layers.Select(l => l.Name));
        for (int i = 0; i < expected.Layers.Count; i++)
        {
            Assert.Equal(expected.Layers[i].Codes, actual.Layers[i].Codes);
            Assert.Equal(expected.Layers[i].Scales, actual.Layers[i].Scales);
            Assert.Equal(expected.Layers[i].Zeros, actual.Layers[i].Zeros);
        }
        Assert.Equal(1, maxHeld);
        Assert.All(stream.Model.Layers, l => Assert.False(Resident(((TorchSharp.Modules.Linear)l.GetLinear("self_attn.q_proj")).weight!)));
        Assert.False(Resident(stream.Model.Embedding.Weight));
    }

    [Fact]
    public void A_streamed_let_run_equals_the_resident_one_and_keeps_the_folded_tensors_for_later_holds_and_the_artifact()
    {
        var options = new Dictionary<string, string> { ["epochs"] = "1", ["let"] = "true" };
        var config = new QuantizationConfig("omniquant", 4, 32, false, false, options);
        var folder = PipelineFixtures.TinyPath;
        using var resident = LlamaLoader.Load(folder, CPU);
        var expected = Run(config, () => new QuantizationContext(resident, CPU, Calibration, seed: 7));
        using var stream = LlamaBlockStream.Open(folder, CPU);
        var actual = Run(config, () => new QuantizationContext(stream.Model, CPU, Calibration, seed: 7) { Blocks = stream });

        for (int i = 0; i < expected.Layers.Count; i++)
            Assert.Equal(expected.Layers[i].Codes, actual.Layers[i].Codes);
        // the artifact's float tensors: the folded ones, as the resident export writes them
        var quantized = expected.Layers.Select(l => l.WeightName).ToHashSet();
        var residentFloats = ArtifactExport.InSourceDtypes(resident, LlamaLoader.SourceDtypes(folder));
        foreach (var (name, shape) in Matq.Runtime.Models.LlamaTensors.Expected(resident.Config).Where(e => !quantized.Contains(e.Name)))
        {
            var (wantDtype, want) = residentFloats(name, shape);
            var (gotDtype, got) = stream.ReadSource(name, shape);
            Assert.Equal(wantDtype, gotDtype);
            Assert.Equal(want, got);
        }
        const string norm = "model.layers.0.input_layernorm.weight";
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        Assert.NotEqual(ckpt.ReadFloat32(norm), resident.get_parameter(norm)!.data<float>().ToArray());   // LET did fold
        using (stream.Hold(0))
            Assert.Equal(resident.get_parameter(norm)!.data<float>().ToArray(), stream.Model.get_parameter(norm)!.data<float>().ToArray());
    }

    [Fact]
    public void A_bf16_sharded_checkpoint_keeps_bf16_float_tensors_in_the_artifact_and_reads_back()
    {
        var folder = Bf16ShardedCopy();
        using var stream = LlamaBlockStream.Open(folder, CPU);
        Assert.All(stream.SourceDtypes.Values, d => Assert.Equal(SafetensorsDtype.BF16, d));
        var config = PipelineFixtures.Rtn(4);
        var result = QuantizationRunner.Run(config, new QuantizationContext(stream.Model, CPU) { Blocks = stream });
        var path = Path.Combine(HfFixtures.TempDir(), "bf16.matq");
        ArtifactExport.Write(result, stream.Model, path, null, stream.ReadSource);

        var artifact = MatqArtifact.Open(path);
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        Assert.NotEmpty(artifact.Floats);
        foreach (var f in artifact.Floats)
        {
            Assert.Equal(SafetensorsDtype.BF16, f.StoredDtype);
            Assert.Equal(ckpt.ReadFloat32(f.Name), f.Values);
        }
        Assert.Equal("bfloat16", artifact.Metadata.ModelConfig.GetProperty("dtype").GetString());
        // the resident path stores the same bytes (the fp32 model holds bf16 values exactly)
        using var resident = LlamaLoader.Load(folder, CPU);
        var result2 = QuantizationRunner.Run(config, new QuantizationContext(resident, CPU));
        var path2 = Path.Combine(HfFixtures.TempDir(), "bf16-resident.matq");
        ArtifactExport.Write(result2, resident, path2, null, ArtifactExport.InSourceDtypes(resident, LlamaLoader.SourceDtypes(folder)));
        var artifact2 = MatqArtifact.Open(path2);   // (the files differ in the recorded timings only)
        Assert.Equal(artifact.Floats.Select(f => (f.Name, f.StoredDtype)), artifact2.Floats.Select(f => (f.Name, f.StoredDtype)));
        Assert.All(artifact.Floats, f => Assert.Equal(f.Values, artifact2.GetFloat(f.Name).Values));
        Assert.All(artifact.Quantized, q => Assert.Equal(q.Codes, artifact2.GetQuantized(q.Name).Codes));
        // the served model reads the bf16 tensors back
        using var served = Matq.Loading.QuantizedModelLoader.LoadServed(path, 4, CPU, ScalarType.Float32, false, null).Model;
        Assert.Equal(ckpt.ReadFloat32("model.norm.weight"), PipelineFixtures.Floats(served.Norm.Weight));
    }

    /// <summary>The tiny-llama fixture rewritten in bf16 across 3 shards with an index.</summary>
    internal static string Bf16ShardedCopy()
    {
        var src = HfFixtures.Path("tiny-llama");
        var dir = HfFixtures.TempDir();
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        using var ckpt = SafetensorsCheckpoint.Open(src);
        var tensors = ckpt.TensorNames.Order(StringComparer.Ordinal)
            .Select(n => (n, SafetensorsDtype.BF16, ckpt.Get(n).Shape, SafetensorsDtypes.Float32ToBf16(ckpt.ReadFloat32(n)))).ToList();
        long total = tensors.Sum(t => (long)t.Item4.Length);
        SafetensorsCheckpoint.WriteSharded(dir, tensors, total / 3 + 1);
        Assert.True(File.Exists(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName)));
        return dir;
    }
}
