// `matq quantize --resume` end to end on models/tiny (4 blocks, calibration from a local text file): a run killed after
// block 2 (a throw from the progress events, as Ctrl+C ends a run) leaves its checkpoint and says so; --resume says
// "resuming at block 3/4", writes an artifact equal to an uninterrupted run's in every tensor byte and every metadata
// field but the wall-clock seconds, and removes the checkpoint; plus the one-line refusals and the note when a run
// without --resume replaces a checkpoint.
using System.Text.Json.Nodes;
using Matq.Data;
using Matq.Formats.Safetensors;
using Matq.Quantization.Pipeline;

namespace Matq.Cli.Tests.Verbs;

public sealed class QuantizeResumeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-resume-").FullName;

    private string[] Args(string method, string outPath, params string[] extra) =>
    [
        "quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", method, "--group", "64", "--calib-data", QuantizeVerbHarness.CalibText(_dir), "--calib-n", "4", "--calib-len", "32",
        "--out", outPath, .. method is "omniquant" or "matquant" ? new[] { "--option", "epochs=1", "--option", "lwc-batch=2" } : [], .. extra,
    ];

    // A kill after block `block` (0-based): the event throws as the Ctrl+C handler's cancellation would.
    private static Action<QuantizationEvent> KillAfter(int block) => e =>
    {
        if (e.Kind == QuantizationEventKind.BlockDone && e.Block == block) throw new OperationCanceledException("killed by the test");
    };

    [Theory]
    [InlineData("athena", "--bits", "4")]
    [InlineData("omniquant", "--bits", "4")]
    [InlineData("omniquant", "--bits", "4", "--option", "let=true")]
    public void A_killed_run_resumes_at_its_next_block_and_writes_the_uninterrupted_artifact(string method, params string[] settings)
    {
        // same file name in two folders: the artifact names its tokenizer folder after itself
        var full = Path.Combine(_dir, "full", "m.matq");
        var (code, output) = QuantizeVerbHarness.Run(Args(method, full, settings));
        Assert.True(code == 0, output);
        Assert.False(Directory.Exists(QuantizationCheckpoint.FolderFor(full)), "a finished run leaves no checkpoint");

        var outPath = Path.Combine(_dir, "resumed", "m.matq");
        var folder = QuantizationCheckpoint.FolderFor(outPath);
        (code, output) = QuantizeVerbHarness.Run(Args(method, outPath, settings), KillAfter(1));
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("cancelled", output);
        Assert.Contains($"2 finished block(s) are saved in {folder}: add --resume to continue", output);
        Assert.False(File.Exists(outPath));
        Assert.True(File.Exists(Path.Combine(folder, "block-0001.safetensors")));

        (code, output) = QuantizeVerbHarness.Run([.. Args(method, outPath, settings), "--resume"]);
        Assert.True(code == 0, output);
        Assert.Contains($"resuming at block 3/4 (2 finished block(s) restored from {folder})", output);
        Assert.False(Directory.Exists(folder), "the checkpoint is removed once the artifact is written");
        AssertSameArtifact(full, outPath);
    }

    [Fact]
    public void A_run_without_resume_replaces_the_checkpoint_and_says_resume_would_have_continued()
    {
        var outPath = Path.Combine(_dir, "m.matq");
        var (code, _) = QuantizeVerbHarness.Run(Args("gptq", outPath, "--bits", "4"), KillAfter(0));
        Assert.Equal(CliHost.Failure, code);
        string output;
        (code, output) = QuantizeVerbHarness.Run(Args("gptq", outPath, "--bits", "4"));
        Assert.True(code == 0, output);
        Assert.Contains($"note: {QuantizationCheckpoint.FolderFor(outPath)} holds an unfinished run (1/4 blocks); starting over replaces it (--resume would have continued it)", output);
        Assert.DoesNotContain("resuming", output);
        Assert.False(Directory.Exists(QuantizationCheckpoint.FolderFor(outPath)));
    }

    [Fact]
    public void Resume_refusals_are_one_line()
    {
        var outPath = Path.Combine(_dir, "m.matq");
        var folder = QuantizationCheckpoint.FolderFor(outPath);
        void Refused(string[] args, string expected)
        {
            var (code, output) = QuantizeVerbHarness.Run(args);
            Assert.Equal(CliHost.Failure, code);
            Assert.Contains(expected, output);
            Assert.DoesNotContain("   at ", output);
            Assert.False(File.Exists(outPath));
        }
        Refused([.. Args("athena", outPath, "--bits", "4"), "--resume"], $"--resume: no checkpoint for --out {outPath} (expected {folder}); run without --resume to start");
        Refused([.. Args("rtn", outPath, "--bits", "4"), "--resume"], "--resume: rtn does not walk the model block by block, so it has no checkpoint to continue; methods that resume: gptq, athena, omniquant, and matquant with --base athena or omniquant");
        Refused([.. Args("matquant", outPath, "--bits", "8,4,2", "--base", "qat"), "--resume"], "--resume: matquant with base qat does not walk the model block by block");

        var (code, _) = QuantizeVerbHarness.Run(Args("athena", outPath, "--bits", "4"), KillAfter(0));
        Assert.Equal(CliHost.Failure, code);
        Refused([.. Args("athena", outPath, "--bits", "3"), "--resume"], $"cannot resume from {folder}: it was written with bits = 4, this run has bits = 3");
        Refused([.. Args("athena", outPath, "--bits", "4", "--option", "sweeps=1"), "--resume"], "it was written with option sweeps = 2, this run has option sweeps = 1");
        Refused([.. Args("athena", outPath, "--bits", "4", "--seed", "5"), "--resume"], "it was written with seed = 1234, this run has seed = 5");
        Refused([.. Args("gptq", outPath, "--bits", "4"), "--resume"], "it was written with method = athena, this run has method = gptq");
        Assert.True(Directory.Exists(folder), "a refused resume keeps the checkpoint");
    }

    // Every tensor byte for byte and every metadata field equal, except "seconds" (wall-clock time of the run).
    private static void AssertSameArtifact(string expectedPath, string actualPath)
    {
        using var a = SafetensorsFile.Open(expectedPath);
        using var b = SafetensorsFile.Open(actualPath);
        Assert.Equal(a.Tensors.Select(t => (t.Name, t.Dtype, string.Join(",", t.Shape))), b.Tensors.Select(t => (t.Name, t.Dtype, string.Join(",", t.Shape))));
        foreach (var t in a.Tensors) Assert.True(a.ReadBytes(t.Name).AsSpan().SequenceEqual(b.ReadBytes(t.Name)), $"tensor {t.Name} differs");
        Assert.Equal(a.Metadata.Keys.Order(), b.Metadata.Keys.Order());
        foreach (var (key, value) in a.Metadata) Assert.Equal(WithoutSeconds(value), WithoutSeconds(b.Metadata[key]));
    }

    private static string WithoutSeconds(string value)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(value); }
        catch (System.Text.Json.JsonException) { return value; }
        void Strip(JsonNode? n)
        {
            if (n is JsonObject o)
            {
                o.Remove("seconds");
                foreach (var (_, child) in o) Strip(child);
            }
            else if (n is JsonArray arr) foreach (var child in arr) Strip(child);
        }
        Strip(node);
        return node?.ToJsonString() ?? value;
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
