// `matq bench race` on RTN int8 artifacts of models/tiny (symmetric and asymmetric), with minimal tokens and one round:
// the table has a row per thread count × GGUF type with both engines' columns, the export path of each file (lossless
// q8_0/q4_0 for the symmetric artifact; q8_0 re-quantized and q4_1 lossless for the asymmetric one), --out writes the
// same table as markdown; bad options are one line and exit code 1. No timing is asserted (a shared machine).
namespace Matq.Cli.Tests.Verbs;

public sealed class BenchRaceVerbTests : IClassFixture<BenchRaceVerbTests.TinyArtifacts>
{
    public sealed class TinyArtifacts : TempFolderFixture
    {
        public string Symmetric { get; }
        public string Asymmetric { get; }

        public TinyArtifacts() : base("matq-race-test-")
        {
            Symmetric = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8sym.matq"), extra: "--symmetric");
            Asymmetric = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
        }
    }

    private readonly TinyArtifacts _a;
    public BenchRaceVerbTests(TinyArtifacts a) => _a = a;

    private static readonly string[] Quick = ["--prompt-tokens", "8", "--decode-tokens", "2", "--repeats", "1"];

    private static readonly string[] Headers =
    [
        "threads", "bits", "GGUF type (export path)", "weights read/token matq", "weights read/token llama.cpp",
        "prefill tok/s matq", "prefill tok/s llama.cpp", "prefill matq ÷ llama.cpp", "decode tok/s matq", "decode tok/s llama.cpp",
        "decode matq ÷ llama.cpp", "decode GB/s matq (% read bw)", "decode GB/s llama.cpp (% read bw)",
    ];

    [Fact]
    public void Race_prints_both_engines_per_thread_count_and_bit_width_and_writes_markdown()
    {
        var md = Path.Combine(_a.Dir, "race.md");
        var run = CliRunner.Run(["bench", "race", "--model", _a.Symmetric, "--threads", "1,2", "--bandwidth-seconds", "0.02", "--out", md, .. Quick]);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("memory bandwidth, 1 thread(s):", run.Output);
        Assert.Contains("memory bandwidth, 2 thread(s):", run.Output);
        Assert.Contains("llama.cpp: ", run.Output);
        // a row: threads, bits, type (path), 2 sizes, 3 prefill numbers, 3 decode numbers, 2 GB/s with % of the read bandwidth
        const string num = @"\s+│ [\d.]+";
        foreach (var t in new[] { 1, 2 })
        {
            Assert.Matches($@"│ {t}\s+│ 8\s+│ q8_0 \(lossless,\s+│ [\d.]+ (KiB|MiB)\s+│ [\d.]+ (KiB|MiB)\s+({num}){{6}}\s+│ [\d.]+ \(\d+%\)\s+│ [\d.]+ \(\d+%\)", run.Output);
            Assert.Matches($@"│ {t}\s+│ 4\s+│ q4_0 \(lossless,", run.Output);
        }
        Assert.Contains("28/28 linears)", run.Output);
        // int8 activations (the default): matq's prefill runs the integer GEMM, and an fp32-activation prefill is timed beside it
        foreach (var t in new[] { 1, 2 })
            foreach (var b in new[] { 8, 4 })
                Assert.Matches($@"matq prefill with fp32 activations \(same rounds\), {t} thread\(s\), {b} bits: [\d.]+ tok/s; int8 ÷ fp32 activations [\d.]+", run.Output);

        var text = File.ReadAllText(md);
        Assert.StartsWith("`matq bench race --model ", text, StringComparison.Ordinal);
        Assert.Contains("| " + string.Join(" | ", Headers) + " |", text);
        var rows = text.Split('\n').Where(l => l.StartsWith("| 1 |", StringComparison.Ordinal) || l.StartsWith("| 2 |", StringComparison.Ordinal)).ToArray();
        Assert.Equal(4, rows.Length);
        Assert.All(rows, r => Assert.Equal(Headers.Length + 2, r.Split('|').Length));
        Assert.Contains(rows, r => r.StartsWith("| 2 | 4 | q4_0 (lossless, 28/28 linears) |", StringComparison.Ordinal));
    }

    [Fact]
    public void An_asymmetric_artifact_races_q4_1_losslessly_and_says_q8_0_was_requantized()
    {
        var run = CliRunner.Run(["bench", "race", "--model", _a.Asymmetric, "--bandwidth-seconds", "0", .. Quick]);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Matches(@"│ 1\s+│ 8\s+│ q8_0 \(re-quantized\s+│", run.Output);
        Assert.Matches(@"│ 1\s+│ 4\s+│ q4_1 \(lossless,\s+│", run.Output);
        Assert.DoesNotContain("q4_0", run.Output);
        Assert.DoesNotContain("memory bandwidth", run.Output);   // --bandwidth-seconds 0: GB/s without a % column
        Assert.DoesNotMatch(@"\(\d+%\)", run.Output);
    }

    [Theory]
    [InlineData("--types", "q5_0", "--types 'q5_0' is not raced")]
    [InlineData("--types", ",", "--types is empty")]
    [InlineData("--threads", "0", "--threads '0' is out of range")]
    [InlineData("--threads", "two", "--threads 'two' is out of range")]
    [InlineData("--repeats", "0", "--repeats 0 must be at least 1")]
    [InlineData("--prompt-tokens", "0", "--prompt-tokens 0 must be at least 1")]
    [InlineData("--decode-tokens", "0", "--decode-tokens 0 must be at least 1")]
    [InlineData("--prompt-tokens", "250", "exceeds the model's context of 256 tokens")]
    [InlineData("--activations", "int8,fp32", "--activations takes one mode here")]
    [InlineData("--head", "12", "--head 12 is not supported")]
    [InlineData("--bandwidth-seconds", "-1", "--bandwidth-seconds -1 must be between 0 and 60")]
    public void Bad_options_are_one_line_and_exit_code_1(string option, string value, string message)
    {
        var run = CliRunner.Run("bench", "race", "--model", _a.Symmetric, option, value);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Output);
        Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain("   at ", run.Output);
        Assert.DoesNotContain("exporting", run.Output);   // rejected before any work
    }

    [Fact]
    public void A_missing_model_is_one_line()
    {
        var run = CliRunner.Run("bench", "race", "--model", Path.Combine(_a.Dir, "nope.matq"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("does not exist", run.Output);
        Assert.Single(run.Lines);
    }
}
