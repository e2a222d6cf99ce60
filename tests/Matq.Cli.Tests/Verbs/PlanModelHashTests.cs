// `serve`, `generate` and `eval` with `--plan`: a plan written by `matq plan` is bound to its artifact by model_hash, and a
// plan made for another model (here: the same tiny model quantized with other groups, so another quantized layout) is
// refused in one error line naming the plan, both hashes and the fix, exit 1, before anything is served or scored. The
// plan made for the artifact serves it at the plan's bits.
using System.Text.Json;

namespace Matq.Cli.Tests.Verbs;

public sealed class PlanModelHashTests : IClassFixture<PlanModelHashTests.Artifacts>
{
    /// <summary>tiny quantized twice (groups of 32, per-channel) and a uniform 4-bit plan for each.</summary>
    public sealed class Artifacts : IDisposable
    {
        public string Dir { get; } = Directory.CreateTempSubdirectory("matq-plan-hash-").FullName;
        public string A => Path.Combine(Dir, "a.matq");
        public string B => Path.Combine(Dir, "b.matq");
        public string PlanA => Path.Combine(Dir, "plan-a.json");
        public string PlanB => Path.Combine(Dir, "plan-b.json");
        public string Text => Path.Combine(Dir, "text.txt");

        public Artifacts()
        {
            var model = Path.GetFullPath(CliRunner.Fixture("..", "..", "models", "tiny"));
            foreach (var (path, group, plan) in new[] { (A, "32", PlanA), (B, "0", PlanB) })
            {
                Check(CliRunner.Run("quantize", "--model", model, "--method", "rtn", "--bits", "8", "--group", group, "--device", "cpu", "--out", path));
                Check(CliRunner.Run("plan", "--model", path, "--strategy", "uniform", "--bits", "4", "--out", plan));
            }
            File.WriteAllText(Text, string.Concat(Enumerable.Repeat("Fellow citizens of the Senate and of the House. ", 30)));
        }

        private static void Check(CliRun run)
        {
            if (run.ExitCode != 0) throw new InvalidOperationException(run.Output);
        }

        public static string HashOf(string plan) => JsonDocument.Parse(File.ReadAllText(plan)).RootElement.GetProperty("model_hash").GetString()!;

        public void Dispose()
        {
            try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
        }
    }

    private readonly Artifacts _x;
    public PlanModelHashTests(Artifacts x) => _x = x;

    private string[] Command(string verb, string plan) => verb switch
    {
        "generate" => ["generate", "--model", _x.A, "--plan", plan, "--prompt", "Fellow citizens", "--max-tokens", "4", "--temperature", "0", "--threads", "1"],
        "eval" => ["eval", "--model", _x.A, "--plan", plan, "--data", _x.Text, "--context", "32", "--stride", "16", "--device", "cpu"],
        "serve" => ["serve", "--model", _x.A, "--plan", plan, "--port", "0", "--threads", "1"],
        _ => throw new ArgumentOutOfRangeException(nameof(verb)),
    };

    [Theory]
    [InlineData("generate")]
    [InlineData("eval")]
    [InlineData("serve")]
    public void A_plan_made_for_another_model_is_refused_in_one_line(string verb)
    {
        string hashA = Artifacts.HashOf(_x.PlanA), hashB = Artifacts.HashOf(_x.PlanB);
        Assert.NotEqual(hashA, hashB);   // the two layouts really differ
        var run = CliRunner.Run(Command(verb, _x.PlanB));
        Assert.Equal(1, run.ExitCode);
        var error = Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains($"--plan {_x.PlanB} was made for a different model", error, StringComparison.Ordinal);
        Assert.Contains(hashB, error, StringComparison.Ordinal);
        Assert.Contains($"{_x.A} has {hashA}", error, StringComparison.Ordinal);
        Assert.Contains($"matq plan --model {_x.A}", error, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_serves_the_plan_made_for_the_artifact_at_its_bits()
    {
        var run = CliRunner.Run(Command("generate", _x.PlanA));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("4 layers at 4.00 bits/weight", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_scores_the_plan_made_for_the_artifact_at_its_bits()
    {
        var run = CliRunner.Run(Command("eval", _x.PlanA));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("layers at other bits, mean 4.000 bits/weight", run.Output, StringComparison.Ordinal);   // every layer at 4 (the plan default 8 is unused)
    }

    [Fact]
    public void A_hand_written_plan_without_model_hash_still_serves()
    {
        var plan = Path.Combine(_x.Dir, "hand.json");
        File.WriteAllText(plan, "{\"default\": 4, \"layers\": {\"model.layers.0.mlp.down_proj\": 8}}");
        var run = CliRunner.Run(Command("generate", plan));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("4 layers at 4.", run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("4 layers at 4.00 bits/weight", run.Output, StringComparison.Ordinal);   // down_proj of block 0 at 8
    }
}
