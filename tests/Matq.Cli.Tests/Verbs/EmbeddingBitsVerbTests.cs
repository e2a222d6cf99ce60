// Contract: `matq quantize --embedding-bits` end to end on models/tiny: the artifact holds the embedding (and, with
// --include-head, the untied head) as codes, `matq inspect` says so, `matq eval` scores it on the packed and torch engines
// alike (NLL within 1e-3 at 8/4/2 bits, and at 8 bits within 0.5 % of the float-embedding artifact's), `matq generate`
// gives the same greedy text on both engines; widths other than the master bits, and the option on a bench scale run with
// another master, are one error line.
using Matq.Formats.Artifact;

namespace Matq.Cli.Tests.Verbs;

public sealed class EmbeddingBitsVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-embedding-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Text()
    {
        var path = Path.Combine(_dir, "eval.txt");
        if (!File.Exists(path))
            File.WriteAllText(path, string.Concat(Enumerable.Repeat("Fellow citizens, the state of the union is strong and our economy grows. ", 12)));
        return path;
    }

    private string Quantize(string name, params string[] extra)
    {
        var path = Path.Combine(_dir, name);
        var run = CliRunner.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "rtn", "--bits", "8", "--group", "64", "--out", path, .. extra]);
        Assert.True(run.ExitCode == 0, run.Output);
        return path;
    }

    private static double Nll(CliRun run, string bits)
    {
        var line = run.Lines.Single(l => l.StartsWith($"│ {bits} ", StringComparison.Ordinal));
        return double.Parse(line.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[2], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Quantize_with_embedding_bits_then_eval_and_generate_on_both_engines()
    {
        var path = Path.Combine(_dir, "emb.matq");
        var q = CliRunner.Run("quantize", "--model", QuantizeVerbHarness.TinyModel(), "--method", "rtn", "--bits", "8", "--group", "64",
            "--embedding-bits", "8", "--include-head", "--out", path);
        Assert.True(q.ExitCode == 0, q.Output);
        Assert.Contains("embedding 256×128 stored as 8-bit codes", q.Output);
        var a = MatqArtifact.Open(path);
        Assert.True(a.IsQuantized("model.embed_tokens.weight"));
        Assert.True(a.IsQuantized("lm_head.weight"));
        Assert.All(a.Floats, f => Assert.Single(f.Shape));   // no large float tensor left

        var inspect = CliRunner.Run("inspect", path);
        Assert.True(inspect.ExitCode == 0, inspect.Output);
        Assert.Contains("quantized: 8-bit codes [256, 128], group 64", inspect.Output);

        string[] common = ["eval", "--model", path, "--data", Text(), "--bits", "8,4,2", "--context", "64", "--stride", "32"];
        var packed = CliRunner.Run([.. common, "--threads", "1"]);
        var torch = CliRunner.Run([.. common, "--engine", "torch", "--device", "cpu"]);
        Assert.True(packed.ExitCode == 0, packed.Output);
        Assert.True(torch.ExitCode == 0, torch.Output);
        foreach (var bits in new[] { "8", "4", "2" })
            Assert.True(Math.Abs(Nll(packed, bits) - Nll(torch, bits)) <= 1e-3 * Nll(torch, bits), $"r = {bits}: packed {Nll(packed, bits)}, torch {Nll(torch, bits)}");
        var floatEmbedding = CliRunner.Run(["eval", "--model", Quantize("float.matq", "--include-head"), "--data", Text(), "--bits", "8", "--context", "64", "--stride", "32", "--threads", "1"]);
        Assert.True(floatEmbedding.ExitCode == 0, floatEmbedding.Output);
        Assert.InRange(Nll(packed, "8") / Nll(floatEmbedding, "8"), 0.995, 1.005);

        foreach (var bits in new[] { "8", "4" })
        {
            string[] gen = ["generate", "--model", path, "--bits", bits, "--prompt", "The state of the", "--temperature", "0", "--max-tokens", "24"];
            var p = CliRunner.Run([.. gen, "--activations", "fp32", "--threads", "1"]);
            var t = CliRunner.Run([.. gen, "--engine", "torch", "--device", "cpu"]);
            Assert.True(p.ExitCode == 0, p.Output);
            Assert.True(t.ExitCode == 0, t.Output);
            Assert.Equal(t.Lines[0], p.Lines[0]);   // the prompt and its continuation
            Assert.True(p.Lines[0].Length > "The state of the".Length + 5, p.Output);
        }
    }

    [Theory]
    [InlineData("--method rtn --bits 4 --embedding-bits 3", "--embedding-bits 3: the embedding is stored as master codes beside the linears' and sliced like them, so it takes the artifact's master bits (4)")]
    [InlineData("--method matquant --base athena --bits 8,4,2 --embedding-bits 4", "takes the artifact's master bits (8); give --embedding-bits 8")]
    public void A_width_other_than_the_master_bits_is_one_line(string args, string message)
    {
        var run = CliRunner.Run(["quantize", "--model", QuantizeVerbHarness.TinyModel(), "--out", Path.Combine(_dir, "x.matq"), .. args.Split(' ')]);
        Assert.Equal(1, run.ExitCode);
        var error = Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains(message, error);
        Assert.False(File.Exists(Path.Combine(_dir, "x.matq")));
    }

    [Fact]
    public void Bench_scale_passes_embedding_bits_through_and_refuses_another_width_before_writing()
    {
        var work = Path.Combine(_dir, "work");
        var run = CliRunner.Run("bench", "scale", "--shape", "llama-3.2-1b", "--bits", "4", "--embedding-bits", "8", "--work", work);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--embedding-bits 8: the embedding is stored as master codes", run.Output);
        Assert.False(Directory.Exists(work));
    }
}
