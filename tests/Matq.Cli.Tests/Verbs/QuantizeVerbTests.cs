// `matq quantize` with OmniQuant on models/tiny (tiny settings, calibration from a local text file, so no dataset is
// fetched): the plain method at one width, MatQuant with --base omniquant --bits 8,4,2 --lambda --codistill (int8
// master codes, trained_bits = R), and the flags' one-line errors.
using Matq.Data;
using Matq.Formats.Artifact;

namespace Matq.Cli.Tests.Verbs;

public sealed class QuantizeVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-quantize-").FullName;

    private static readonly string[] Tiny = ["--group", "64", "--calib-n", "4", "--calib-len", "32", "--option", "epochs=1", "--option", "lwc-batch=2"];

    [Fact]
    public void Matquant_with_the_omniquant_base_writes_int8_master_codes_trained_for_R()
    {
        var outPath = Path.Combine(_dir, "mq.matq");
        var (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "matquant", "--base", "omniquant", "--bits", "8,4,2",
            "--lambda", "1,1,2", "--codistill", "8->2", "--calib-data", QuantizeVerbHarness.CalibText(_dir), "--out", outPath, .. Tiny]);
        Assert.True(code == 0, output);
        Assert.Contains("matquant 8-bit", output);
        Assert.Contains("model.layers.3.mlp.down_proj", output);
        var meta = MatqArtifact.Open(outPath).Metadata;
        Assert.Equal("matquant", meta.Algorithm);
        Assert.Equal(8, meta.MasterBits);
        Assert.Equal([8, 4, 2], meta.TrainedBits);
        var settings = meta.AlgorithmConfig.GetProperty("settings");
        Assert.Equal("omniquant", settings.GetProperty("base").GetString());
        Assert.Equal("8->2", settings.GetProperty("codistill").GetString());
        Assert.Equal(2.0, settings.GetProperty("lambda")[2].GetDouble());
        Assert.Equal(1, settings.GetProperty("omniquant").GetProperty("epochs").GetInt32());
    }

    [Fact]
    public void Plain_omniquant_at_one_width()
    {
        var outPath = Path.Combine(_dir, "o4.matq");
        var (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "omniquant", "--bits", "4", "--calib-data", QuantizeVerbHarness.CalibText(_dir), "--out", outPath, .. Tiny]);
        Assert.True(code == 0, output);
        Assert.Contains("omniquant 4-bit", output);
        var meta = MatqArtifact.Open(outPath).Metadata;
        Assert.Equal("omniquant", meta.Algorithm);
        Assert.Equal([4], meta.TrainedBits);
    }

    [Theory]
    [InlineData("--method omniquant --bits 8,4,2", "omniquant takes one master bit-width")]
    [InlineData("--method rtn --bits 4 --base omniquant", "--base applies to --method matquant")]
    [InlineData("--method matquant --bits 8,4,2 --base omniquant --lambda 1,1", "lambda has 2 value(s)")]
    [InlineData("--method matquant --bits 8,4,2 --base omniquant --option bits=8,4", "--option bits=... are both given")]
    [InlineData("--method matquant --bits 8,4,2 --base omniquant --option lwc-lr=7", "lwc-lr = 7 is out of range")]
    [InlineData("--method matquant --bits 8,4,2 --base athena --codistill 8->2", "codistill applies to the qat and omniquant bases")]
    [InlineData("--method matquant --bits 8,4,2 --base gptq", "base = 'gptq' is not known")]
    [InlineData("--method omniquant --bits 4 --option epochs=-1", "epochs = -1 is out of range")]
    [InlineData("--method rtn --bits 4 --gpus 2", "--gpus 2 with rtn: spreading it over several GPUs is not implemented")]
    [InlineData("--method matquant --bits 8,4,2 --base omniquant --gpus 2", "spreading it over several GPUs is not implemented")]
    [InlineData("--method matquant --bits 8,4,2 --base qat --gpus 0", "--gpus 0: give 1 or more")]
    public void Mistakes_are_one_line_before_any_load(string args, string expected)
    {
        var (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--out", Path.Combine(_dir, "x.matq"), .. args.Split(' ')]);
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains(expected, output);
        Assert.DoesNotContain("   at ", output);
        Assert.False(File.Exists(Path.Combine(_dir, "x.matq")));
    }

    [Fact]
    public void Layers_ffn_quantizes_the_feed_forward_only_and_records_it()
    {
        var outPath = Path.Combine(_dir, "ffn.matq");
        var (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "rtn", "--bits", "4", "--group", "64",
            "--layers", "ffn", "--out", outPath]);
        Assert.True(code == 0, output);
        Assert.Contains("--layers ffn: the other linears stay float", output);
        var artifact = MatqArtifact.Open(outPath);
        Assert.Equal("ffn", artifact.Metadata.AlgorithmConfig.GetProperty("layers").GetString());
        Assert.All(artifact.Quantized, q => Assert.Contains(".mlp.", q.Name));
        Assert.True(artifact.TryGetFloat("model.layers.0.self_attn.q_proj.weight", out _));

        (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "rtn", "--bits", "4",
            "--layers", "mlp.dwn_proj", "--out", Path.Combine(_dir, "typo.matq")]);
        Assert.NotEqual(0, code);
        Assert.Contains("--layers item 'mlp.dwn_proj' matches no linear", output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
