// `matq generate` on the packed engine and `matq bench generate`, on an RTN int8 artifact of models/tiny (byte tokenizer):
// greedy text equals the torch engine's at the same bits (head and activations fp32); bench prints one row per
// bit-width and activation mode with ratios;
// bad input (engine/model mismatch, prompt longer than the context, --head, --threads) is one line and exit code 1.
namespace Matq.Cli.Tests.Verbs;

public sealed class PackedRuntimeVerbTests : IClassFixture<PackedRuntimeVerbTests.TinyArtifact>
{
    public sealed class TinyArtifact : TempFolderFixture
    {
        public string Path { get; }
        public string ModelDir { get; }

        public TinyArtifact() : base("matq-packed-")
        {
            ModelDir = CliRunner.TinyModel();
            Path = CliRunner.QuantizeRtn8(System.IO.Path.Combine(Dir, "tiny8.matq"), ModelDir);
        }
    }

    private readonly TinyArtifact _a;
    public PackedRuntimeVerbTests(TinyArtifact a) => _a = a;

    private static string Continuation(CliRun run) => run.Lines[0];

    [Theory]
    [InlineData(8)]
    [InlineData(3)]
    public void Packed_greedy_text_equals_the_torch_engine(int bits)
    {
        string[] common = ["generate", "--model", _a.Path, "--bits", $"{bits}", "--prompt", "The state of the", "--temperature", "0", "--max-tokens", "24"];
        var packed = CliRunner.Run([.. common, "--head", "fp32", "--activations", "fp32", "--threads", "1"]);
        var torch = CliRunner.Run([.. common, "--engine", "torch", "--device", "cpu"]);
        Assert.True(packed.ExitCode == 0, packed.Output);
        Assert.True(torch.ExitCode == 0, torch.Output);
        Assert.Contains("packed engine:", packed.Output);
        Assert.DoesNotContain("packed engine:", torch.Output);
        Assert.Equal(Continuation(torch), Continuation(packed));
        Assert.True(Continuation(packed).Length > "The state of the".Length + 5, packed.Output);
    }

    [Fact]
    public void Bench_generate_prints_a_row_per_bit_width_with_ratios_vs_int8()
    {
        var run = CliRunner.Run("bench", "generate", "--model", _a.Path, "--bits", "8,4,2", "--threads", "1",
            "--prompt-tokens", "40", "--decode-tokens", "8", "--repeats", "1");
        Assert.True(run.ExitCode == 0, run.Output);
        foreach (var b in new[] { 8, 4, 2 })
            foreach (var act in new[] { "int8", "fp32" })
                Assert.Matches($@"│ {b}\s+│ {act}\s+│ [\d.]+ (KiB|MiB)", run.Output);
        Assert.Contains("decode × int8", run.Output);
        Assert.Matches(@"│ 8\s+│.*│ 1\.00\s+│ 1\.00\s+│ 1\.00\s+│", run.Output);
    }

    [Fact]
    public void Bench_generate_times_each_head_width_of_a_list_against_its_own_int8_row()
    {
        var run = CliRunner.Run("bench", "generate", "--model", _a.Path, "--bits", "8,2", "--threads", "1", "--head-bits", "8,4",
            "--activations", "int8", "--prompt-tokens", "20", "--decode-tokens", "4", "--repeats", "1");
        Assert.True(run.ExitCode == 0, run.Output);
        foreach (var b in new[] { 8, 2 })
            foreach (var head in new[] { "int8", "int4" })
                Assert.Matches($@"│ {b}\s+│ int8\s+│ [\d.]+ (KiB|MiB)\s+│ [\d.]+ (KiB|MiB) \({head}\)", run.Output);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(run.Output, @"│ 8\s+│.*│ 1\.00\s+│ 1\.00\s+│ 1\.00\s+│").Count);
    }

    [Fact]
    public void Bench_kernels_times_every_integer_path_with_bandwidth_ratios()
    {
        var run = CliRunner.Run("bench", "kernels", "--shapes", "48x100", "--bits", "3,2", "--group", "32", "--seconds", "0.01",
            "--threads", "1", "--no-torch", "--paths", "all");
        Assert.True(run.ExitCode == 0, run.Output);
        foreach (var path in Matq.Kernels.Simd.GemvInt8Simd.Paths.Where(Matq.Kernels.Simd.GemvInt8Simd.IsSupported))
            foreach (var b in new[] { 3, 2 })
                Assert.Matches($@"│ 48x100\s+│ int{b} packed, int8 x \({path}\)\s+│ [\d.]+ KiB\s+│ (no|yes|\?)\s+│ \d+\s+│ [\d.]+\s+│ \d+%", run.Output);
        Assert.Contains("memory bandwidth: copy", run.Output);
        run = CliRunner.Run("bench", "kernels", "--shapes", "48x100", "--paths", "sse9");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--paths 'sse9' is not a kernel path", run.Output);
    }

    [Fact]
    public void Bad_input_is_one_line_and_exit_code_1()
    {
        var longPrompt = new string('a', 300);   // byte tokenizer: 300 tokens > context 256
        var run = CliRunner.Run("generate", "--model", _a.Path, "--prompt", longPrompt, "--max-tokens", "2");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("longer than the model's context of 256 tokens", run.Output);
        Assert.DoesNotContain("   at ", run.Output);

        run = CliRunner.Run("generate", "--model", _a.ModelDir, "--prompt", "hi", "--engine", "packed");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--engine packed serves .matq artifacts", run.Output);

        run = CliRunner.Run("generate", "--model", _a.Path, "--prompt", "hi", "--head", "12");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--head 12 is not supported", run.Output);

        run = CliRunner.Run("generate", "--model", _a.Path, "--prompt", "hi", "--threads", "0");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--threads 0 is out of range", run.Output);

        run = CliRunner.Run("generate", "--model", _a.Path, "--prompt", "hi", "--extra-precision", "--engine", "packed");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--extra-precision needs --engine torch", run.Output);

        run = CliRunner.Run("bench", "generate", "--model", _a.Path, "--prompt-tokens", "250", "--decode-tokens", "10");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("exceeds the model's context of 256 tokens", run.Output);
    }
}
