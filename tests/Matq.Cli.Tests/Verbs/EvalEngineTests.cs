// `matq eval` of a .matq on the packed engine (the default on the CPU: the artifact memory-mapped, r-bit kernels, no
// fp32 TorchSharp model) against --engine torch on an RTN int8 artifact of models/tiny (bf16 embedding and head): the
// same windows and token count, NLL within 1e-3 relative at 8, 4 and 2 bits; the model line names the engine; a
// truncated artifact is one error line on either engine; --head is refused on the torch engine.
namespace Matq.Cli.Tests.Verbs;

public sealed class EvalEngineTests : IClassFixture<PackedRuntimeVerbTests.TinyArtifact>
{
    private readonly PackedRuntimeVerbTests.TinyArtifact _a;
    public EvalEngineTests(PackedRuntimeVerbTests.TinyArtifact a) => _a = a;

    private string Text()
    {
        var path = Path.Combine(_a.Dir, "eval.txt");
        if (!File.Exists(path))
            File.WriteAllText(path, string.Concat(Enumerable.Repeat("Fellow citizens, the state of the union is strong and our economy grows. ", 12)));
        return path;
    }

    private static (string Tokens, double Nll) Row(CliRun run, string bits)
    {
        var line = run.Lines.Single(l => l.StartsWith($"│ {bits} ", StringComparison.Ordinal));
        var cells = line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return (cells[1], double.Parse(cells[2], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Packed_eval_scores_the_same_tokens_as_the_torch_engine_within_1e_3()
    {
        string[] common = ["eval", "--model", _a.Path, "--data", Text(), "--bits", "8,4,2", "--context", "64", "--stride", "32"];
        var packed = CliRunner.Run([.. common, "--threads", "1"]);
        var torch = CliRunner.Run([.. common, "--engine", "torch", "--device", "cpu"]);
        Assert.True(packed.ExitCode == 0, packed.Output);
        Assert.True(torch.ExitCode == 0, torch.Output);
        Assert.Contains("packed engine (memory-mapped load), bf16 head as stored", packed.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("packed engine", torch.Output, StringComparison.Ordinal);
        foreach (var bits in new[] { "8", "4", "2" })
        {
            var (pt, pn) = Row(packed, bits);
            var (tt, tn) = Row(torch, bits);
            Assert.Equal(tt, pt);
            Assert.True(Math.Abs(pn - tn) <= 1e-3 * Math.Abs(tn), $"r = {bits}: packed NLL {pn}, torch {tn}");
        }
    }

    [Fact]
    public void A_truncated_artifact_is_one_error_line_on_both_engines()
    {
        var cut = Path.Combine(_a.Dir, "cut.matq");
        var bytes = File.ReadAllBytes(_a.Path);
        File.WriteAllBytes(cut, bytes[..^100]);
        foreach (var engine in new[] { "packed", "torch" })
        {
            var run = CliRunner.Run("eval", "--model", cut, "--data", Text(), "--engine", engine, "--device", "cpu");
            Assert.Equal(1, run.ExitCode);
            var error = Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal));
            Assert.Contains("truncated", error, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Head_bits_apply_to_the_packed_engine_only()
    {
        var run = CliRunner.Run("eval", "--model", _a.Path, "--data", Text(), "--engine", "torch", "--head", "8", "--device", "cpu");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--head applies to the packed engine", Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        var packed = CliRunner.Run("eval", "--model", _a.Path, "--data", Text(), "--head", "8", "--context", "64", "--stride", "32", "--threads", "1");
        Assert.True(packed.ExitCode == 0, packed.Output);
        Assert.Contains("8-bit head", packed.Output, StringComparison.Ordinal);
    }
}
