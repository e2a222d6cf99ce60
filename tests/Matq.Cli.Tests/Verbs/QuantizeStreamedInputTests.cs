// `matq quantize` of a sharded checkpoint (models/tiny re-written as bf16 shards of a third of it + index), block-streamed: the
// artifact keeps the bf16 float tensors; bad input — a shard listed in the index but missing, a shard truncated
// mid-tensor, a tensor whose shape contradicts config.json, too little free disk for the output, a NaN in a later
// block — is one line naming the file or tensor and the fix, exit 1, and neither the artifact nor a tokenizer folder
// is written.
using Matq.Formats.Artifact;
using Matq.Formats.IO;
using Matq.Formats.Safetensors;

namespace Matq.Cli.Tests.Verbs;

public sealed class QuantizeStreamedInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-streamed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // models/tiny as 3 shards + model.safetensors.index.json, with its config and tokenizer
    private string Sharded()
    {
        var src = QuantizeVerbHarness.TinyModel();
        var dir = Path.Combine(_dir, "model");
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "config.json", "matq_tokenizer.json" }) File.Copy(Path.Combine(src, f), Path.Combine(dir, f));
        using var ckpt = SafetensorsCheckpoint.Open(src);
        var tensors = ckpt.TensorNames.Order(StringComparer.Ordinal).Select(n => (n, ckpt.Get(n).Dtype, ckpt.Get(n).Shape, ckpt.ReadBytes(n))).ToList();
        SafetensorsCheckpoint.WriteSharded(dir, tensors, tensors.Sum(t => (long)t.Item4.Length) / 3 + 1);
        return dir;
    }

    private static string[] Shards(string model) => Directory.GetFiles(model, "model-*-of-*.safetensors").Order(StringComparer.Ordinal).ToArray();

    private (int Code, string Output, string Out) Quantize(string model, string method = "rtn", params string[] extra)
    {
        var outPath = Path.Combine(_dir, "out", "tiny.matq");
        var (code, output) = QuantizeVerbHarness.Run(["quantize", "--model", model, "--method", method, "--bits", "4", "--group", "32", "--out", outPath, .. extra]);
        return (code, output, outPath);
    }

    private static void AssertRefused((int Code, string Output, string Out) run, string message)
    {
        Assert.True(run.Code == 1, run.Output);
        Assert.Contains(message, run.Output);
        Assert.DoesNotContain("   at ", run.Output);
        Assert.False(File.Exists(run.Out));
        Assert.False(Directory.Exists(Path.ChangeExtension(run.Out, ".tokenizer")));
    }

    [Fact]
    public void A_sharded_bf16_checkpoint_quantizes_to_an_artifact_with_bf16_float_tensors()
    {
        var model = Sharded();
        Assert.True(Shards(model).Length >= 3);
        var run = Quantize(model);
        Assert.True(run.Code == 0, run.Output);
        var artifact = MatqArtifact.Open(run.Out);
        using var ckpt = SafetensorsCheckpoint.Open(model);
        Assert.NotEmpty(artifact.Floats);
        foreach (var f in artifact.Floats)
        {
            Assert.Equal(SafetensorsDtype.BF16, f.StoredDtype);
            Assert.Equal(ckpt.ReadFloat32(f.Name), f.Values);
        }
    }

    [Fact]
    public void A_shard_listed_in_the_index_but_missing_is_one_line()
    {
        var model = Sharded();
        var shard = Shards(model)[1];
        File.Delete(shard);
        AssertRefused(Quantize(model), $"shard '{Path.GetFileName(shard)}' listed in weight_map is missing");
    }

    [Fact]
    public void A_shard_truncated_mid_tensor_is_one_line_naming_the_file()
    {
        var model = Sharded();
        var shard = Shards(model)[2];
        using (var fs = new FileStream(shard, FileMode.Open)) fs.SetLength(fs.Length - 100);
        AssertRefused(Quantize(model), $"{shard}: tensor");
        Assert.Contains("the file is truncated or corrupt", Quantize(model).Output);
    }

    [Fact]
    public void A_tensor_shape_that_contradicts_the_config_is_one_line()
    {
        var model = Sharded();
        var cfg = Path.Combine(model, "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"intermediate_size\": 512", "\"intermediate_size\": 640"));
        AssertRefused(Quantize(model), "has shape [512, 128] but config.json implies [640, 128]");
    }

    [Fact]
    public void Too_little_free_disk_for_the_artifact_is_one_line_before_any_work()
    {
        var model = Sharded();
        var probe = OutputPaths.FreeBytesProbe;
        try
        {
            OutputPaths.FreeBytesProbe = _ => 4096;
            var run = Quantize(model, "gptq", "--calib-data", QuantizeVerbHarness.CalibText(_dir), "--calib-n", "2", "--calib-len", "16");
            AssertRefused(run, "--out");
            Assert.Contains("free; free some space or write elsewhere", run.Output);
            Assert.False(Directory.Exists(Path.Combine(_dir, "out", ".tiny.matq.resume")));   // no checkpoint started either
        }
        finally
        {
            OutputPaths.FreeBytesProbe = probe;
        }
    }

    [Fact]
    public void A_NaN_in_a_later_block_fails_at_that_block_naming_the_tensor()
    {
        var model = Sharded();
        const string name = "model.layers.3.mlp.down_proj.weight";
        using (var ckpt = SafetensorsCheckpoint.Open(model))
        {
            var info = ckpt.Get(name);
            var file = ckpt.Files.Single(f => f.Tensors.Any(t => t.Name == name)).Path;
            using var fs = new FileStream(file, FileMode.Open, FileAccess.Write);
            fs.Position = info.Begin + 2 * 17;
            fs.Write([0xC0, 0x7F]);   // bf16 NaN at flat index 17
        }
        var run = Quantize(model);
        AssertRefused(run, $"tensor '{name}' holds 1 NaN/Inf value(s)");
    }
}
