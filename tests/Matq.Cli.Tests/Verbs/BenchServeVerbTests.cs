// `matq bench serve` on an RTN int8 artifact of models/tiny with minimal tokens and one round: a row per sequence count
// with both sides, the batched side decoding several rows per weight pass (its N prompts are queued together, so this does
// not depend on thread timing), --out writing the same rows as markdown; bad
// options are one line and exit code 1. No timing is asserted (a shared machine).
namespace Matq.Cli.Tests.Verbs;

public sealed class BenchServeVerbTests : TempFolderFixture
{
    public BenchServeVerbTests() : base("matq-bench-serve-") { }

    [Fact]
    public void Serve_bench_prints_both_sides_per_sequence_count_and_writes_markdown()
    {
        var artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
        var md = Path.Combine(Dir, "serve.md");
        var run = CliRunner.Run(["bench", "serve", "--model", artifact, "--bits", "4", "--requests", "1,3", "--threads", "1",
            "--prompt-tokens", "4", "--decode-tokens", "6", "--repeats", "1", "--out", md]);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("1 sequences: unbatched", run.Output);
        Assert.Contains("3 sequences: unbatched", run.Output);
        var rows = File.ReadAllLines(md);
        Assert.Equal(4, rows.Length);                                   // header, rule, two rows
        Assert.StartsWith("| 1 |", rows[2]);
        var three = rows[3].Split('|', StringSplitOptions.TrimEntries);
        Assert.Equal("3", three[1]);
        Assert.True(double.Parse(three[6], System.Globalization.CultureInfo.InvariantCulture) > 1.0, rows[3]);   // rows per weight pass
    }

    [Fact]
    public void Bad_options_are_one_line_and_exit_code_1()
    {
        var missing = Path.Combine(Dir, "missing.matq");
        (string[] Args, string Message)[] cases =
        [
            (["--model", missing], "does not exist"),
            (["--model", missing, "--requests", "0"], "does not exist"),
        ];
        foreach (var (args, message) in cases)
        {
            var run = CliRunner.Run(["bench", "serve", .. args]);
            Assert.True(run.ExitCode == 1, run.Output);
            Assert.Contains(message, run.Output);
            Assert.DoesNotContain("   at ", run.Output);
        }
        var artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
        foreach (var (args, message) in new (string[], string)[]
        {
            (["--requests", "0"], "--requests '0' is not a count of concurrent sequences 1..32"),
            (["--requests", "1,40"], "--requests '40' is not a count"),
            (["--decode-tokens", "1"], "--decode-tokens 1 is out of range"),
            (["--bits", "9"], "--bits 9 is out of range"),
        })
        {
            var run = CliRunner.Run(["bench", "serve", "--model", artifact, .. args]);
            Assert.True(run.ExitCode == 1, run.Output);
            Assert.Contains(message, run.Output);
            Assert.DoesNotContain("   at ", run.Output);
        }
    }
}
