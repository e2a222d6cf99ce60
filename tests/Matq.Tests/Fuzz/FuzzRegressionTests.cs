// Fuzz seeds that found bugs, kept as regression cases (each failed before its fix), plus the same bugs written directly:
// config/model_config values echoed unbounded or with control characters, a NUL in a tokenizer file name
// (ArgumentException), num_hidden_layers = 1e9 (the expected-tensor list filled memory: a hang), ORT messages quoting
// corrupted node names verbatim.
using Matq.Fuzz;
using Matq.Loading;
using Matq.Runtime.Loading;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;

namespace Matq.Tests.Fuzz;

public sealed class FuzzRegressionTests
{
    [Theory]
    [InlineData(29)]   // head_dim = "yyy…" (3000 chars): 3101-character message
    [InlineData(105)]  // model_type = "\e[2J\n": control characters in the message
    [InlineData(113)]  // tokenizer.files = ["a\0b"]: ArgumentException from Path.GetFullPath
    [InlineData(193)]  // tokenizer.files = ["\e[2J"]: control character in the message
    [InlineData(201)]  // mlp_bias = "yyy…": 3104-character message
    public void Matq_seeds(int seed) => RunMatq(seed);

    [Theory]
    [InlineData(929)]  // config.json num_hidden_layers = 1e9: hang
    public void Hf_seeds(int seed) => RunHf(seed);

    [Theory]
    [InlineData(4)]    // ORT: "com.microsoft:<bytes>ulNBits is not a registered op" with a control character
    [InlineData(256)]  // ORT: node input name with \x02
    [InlineData(345)]  // ORT: node input name with \x1F
    public void Onnx_seeds(int seed) => RunOnnx(seed);

    private static void RunMatq(int seed)
    {
        var (folder, matq) = MatqSeed.Value;
        var path = Path.Combine(folder, $"regress-{seed}.matq");
        var (bytes, what) = ModelFileFuzzTests.CorruptMatq(matq, seed);
        File.WriteAllBytes(path, bytes);
        FuzzRunner.AssertPasses($"matq seed {seed} ({what})", () => ModelFileFuzzTests.ReadMatq(path, path + ".gguf"));
    }

    private static void RunHf(int seed)
    {
        var hf = HfFixtures.Path(PipelineFixtures.Tiny);
        var (config, weights, what) = ModelFileFuzzTests.CorruptHf(File.ReadAllBytes(Path.Combine(hf, "config.json")),
            File.ReadAllBytes(Path.Combine(hf, "model.safetensors")), seed);
        var dir = HfFixtures.TempDir();
        File.WriteAllBytes(Path.Combine(dir, "config.json"), config);
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), weights);
        FuzzRunner.AssertPasses($"hf seed {seed} ({what})", () => ModelFileFuzzTests.ReadHf(dir));
    }

    private static void RunOnnx(int seed)
    {
        var (folder, matq) = MatqSeed.Value;
        var onnx = Path.Combine(folder, "seed.onnx");
        lock (MatqSeed) if (!File.Exists(onnx)) Matq.Export.OnnxExporter.Export(Path.Combine(folder, "tiny.matq"), 4, onnx);
        var path = Path.Combine(folder, $"regress-{seed}.onnx");
        var (bytes, what) = ModelFileFuzzTests.CorruptOnnx(File.ReadAllBytes(onnx), seed);
        File.WriteAllBytes(path, bytes);
        FuzzRunner.AssertPasses($"onnx seed {seed} ({what})", () => ModelFileFuzzTests.ReadOnnx(path));
    }

    private static readonly Lazy<(string Folder, byte[] Matq)> MatqSeed = new(() =>
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, 32), PipelineFixtures.TinyWithTokenizer());
        return (Path.GetDirectoryName(artifact)!, File.ReadAllBytes(artifact));
    });

    [Fact]
    public void A_config_claiming_a_billion_layers_is_refused_at_the_first_missing_layer()
    {
        var dir = HfFixtures.CopyToTemp(PipelineFixtures.Tiny);
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000"));
        FuzzRunner.AssertPasses("hf 1e9 layers", () =>
        {
            var e = Assert.Throws<MatqException>(() => LlamaLoader.Load(dir));
            Assert.Contains("model.layers.2.", e.Message);
        });
        var (folder, matq) = MatqSeed.Value;
        var artifact = Path.Combine(folder, "layers.matq");
        File.WriteAllBytes(artifact, matq);
        ArtifactEdits.SetModelConfig(artifact, artifact + ".edited", "num_hidden_layers", "2147483647");
        FuzzRunner.AssertPasses("matq 2^31-1 layers", () =>
        {
            var e = Assert.Throws<MatqException>(() => QuantizedModelLoader.Load(artifact + ".edited", 4));
            Assert.Contains("model.layers.2.", e.Message);
        });
    }

    [Fact]
    public void Config_values_are_echoed_short_and_without_control_characters()
    {
        var e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse(
            "{\"model_type\": \"llama\", \"hidden_size\": \"" + new string('y', 5000) + "\"}", "config.json"));
        Assert.InRange(e.Message.Length, 1, 200);
        e = Assert.Throws<MatqException>(() => HfLlamaConfig.Parse("{\"model_type\": \"\\u001b[2J\\nllama\"}", "config.json"));
        Assert.Null(FuzzRunner.Problem(e.Message));
        Assert.Contains(@"\x1B[2J\nllama", e.Message);
    }
}
