// `matq export`: onnx from a .matq at 4 bits with --verify (ORT vs matq table), onnx from an HF folder, hf and gguf from
// a .matq; unsupported formats, combinations and bits are one line listing what is supported, exit 1, nothing written.
namespace Matq.Cli.Tests.Verbs;

public sealed class ExportVerbTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"matq-cli-export-{Guid.NewGuid():N}");
    private readonly string _artifact;

    public ExportVerbTests()
    {
        Directory.CreateDirectory(_dir);
        _artifact = Path.Combine(_dir, "tiny.matq");
        var q = CliRunner.Run("quantize", "--model", CliRunner.Fixture("tiny-llama"), "--method", "rtn", "--bits", "8", "--group", "32",
            "--device", "cpu", "--out", _artifact);
        Assert.True(q.ExitCode == 0, q.Output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Onnx_from_an_artifact_at_4_bits_writes_matmulnbits_and_verifies_against_matq()
    {
        var onnx = Path.Combine(_dir, "tiny-4.onnx");
        var run = CliRunner.Run("export", "--format", "onnx", "--model", _artifact, "--bits", "4", "--out", onnx, "--verify");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.True(File.Exists(onnx));
        Assert.Contains(run.Lines, l => l.StartsWith($"wrote {onnx} (4-bit com.microsoft MatMulNBits for 14 linears", StringComparison.Ordinal));
        Assert.Contains(run.Lines, l => l.Contains("no KV cache", StringComparison.Ordinal));
        // the verify table row: tiny.matq | 4 | bytes | 2×16 | max |Δ| | ...
        var row = run.Lines.Single(l => l.Contains("tiny.matq", StringComparison.Ordinal) && l.Contains("2×16", StringComparison.Ordinal));
        var diff = double.Parse(row.Split('│', StringSplitOptions.TrimEntries)[5], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(diff, 0, 1e-4);
    }

    [Fact]
    public void Onnx_from_an_hf_folder_is_float32()
    {
        var onnx = Path.Combine(_dir, "tiny-f32.onnx");
        var run = CliRunner.Run("export", "--format", "onnx", "--model", CliRunner.Fixture("tiny-llama"), "--out", onnx);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains(run.Lines, l => l.StartsWith($"wrote {onnx} (float32, 15 MatMul linears)", StringComparison.Ordinal));
    }

    [Fact]
    public void Hf_and_gguf_from_an_artifact()
    {
        var folder = Path.Combine(_dir, "tiny-2bit");
        var hf = CliRunner.Run("export", "--format", "hf", "--model", _artifact, "--bits", "2", "--out", folder);
        Assert.True(hf.ExitCode == 0, hf.Output);
        Assert.True(File.Exists(Path.Combine(folder, "config.json")));
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));
        // the folder is an ordinary HF model again: it exports to float ONNX
        var onnx = CliRunner.Run("export", "--format", "onnx", "--model", folder, "--out", Path.Combine(_dir, "from-hf.onnx"));
        Assert.True(onnx.ExitCode == 0, onnx.Output);

        var gguf = CliRunner.Run("export", "--format", "gguf", "--model", _artifact, "--type", "f16", "--out", Path.Combine(_dir, "t.gguf"));
        Assert.True(gguf.ExitCode == 0, gguf.Output);
    }

    [Fact]
    public void Gguf_k_quant_export_reports_exact_re_quantized_and_fallback_linears()
    {
        // tiny-llama's rows (64 and 176 values) are narrower than a 256-value super-block: every linear falls back to
        // q4_0 as llama.cpp's quantizer does for q3_K, and the report says so
        var path = Path.Combine(_dir, "t-q3_k.gguf");
        var run = CliRunner.Run("export", "--format", "gguf", "--model", _artifact, "--type", "q3_k", "--out", path);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.True(File.Exists(path));
        Assert.Contains("note: Q3_K: 0 linear(s) exact", run.Output);
        Assert.Contains("14 fell back (rows not a multiple of 256)", run.Output);
        Assert.Contains("were written as Q4_0 (llama.cpp's fallback)", run.Output);
        var bad = CliRunner.Run("export", "--format", "gguf", "--model", _artifact, "--type", "q7_k", "--out", Path.Combine(_dir, "bad.gguf"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--type q7_k is not supported for GGUF: use one of f32, f16, q8_0, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k", bad.Output);
        Assert.False(File.Exists(Path.Combine(_dir, "bad.gguf")));
    }

    [Theory]
    [InlineData("--format", "tflite")]
    [InlineData("--format", "onnx", "--type", "q4_1")]
    [InlineData("--format", "gguf", "--bits", "4")]
    [InlineData("--format", "gguf", "--verify")]
    public void An_unsupported_combination_is_one_line_listing_what_is_supported(params string[] args)
    {
        var onnx = Path.Combine(_dir, "x.out");
        var run = CliRunner.Run(["export", .. args, "--model", _artifact, "--out", onnx]);
        Assert.Equal(1, run.ExitCode);
        var line = Assert.Single(run.Lines);
        Assert.Contains("supported: gguf [--type f32|f16|q8_0|q4_0|q4_1] from a .matq; onnx [--bits 2|4|8] from a .matq, or float32 from an HF model; hf", line);
        Assert.False(File.Exists(onnx));
    }

    [Fact]
    public void Onnx_at_3_bits_is_refused_naming_the_bits_onnx_runtime_runs()
    {
        var onnx = Path.Combine(_dir, "t3.onnx");
        var run = CliRunner.Run("export", "--format", "onnx", "--model", _artifact, "--bits", "3", "--out", onnx);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--bits 3 is not supported by ONNX Runtime's MatMulNBits, which runs 2, 4 or 8 bits", Assert.Single(run.Lines));
        Assert.False(File.Exists(onnx));
    }
}
