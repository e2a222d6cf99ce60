// `matq logits`: every family fixture's HF logits reproduced from the CLI (--compare expected.safetensors, the file
// transformers wrote), both config forms; the written file's layout; the packed engine checked against the torch
// engine's written logits on the same artifact; and the one-line refusals.
using System.Globalization;
using Matq.Formats.Safetensors;

namespace Matq.Cli.Tests.Verbs;

public sealed class LogitsVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-logits-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } }

    public static TheoryData<string, bool> Families() => new()
    {
        { "tiny-llama3", false }, { "tiny-llama3", true }, { "tiny-mistral-sw", false }, { "tiny-mistral-sw", true },
        { "tiny-gemma2", false }, { "tiny-gemma2", true }, { "tiny-gemma3", false }, { "tiny-gemma3", true },
        { "tiny-qwen3", false }, { "tiny-qwen3", true }, { "tiny-phi3", false }, { "tiny-phi3", true },
    };

    private static double MaxDiff(CliRun run) =>
        double.Parse(run.Lines.Single(l => l.StartsWith("max |Δlogit| ", StringComparison.Ordinal)).Split(' ')[2], CultureInfo.InvariantCulture);

    [Theory]
    [MemberData(nameof(Families))]
    public void Every_family_reproduces_transformers_logits_from_the_cli(string family, bool hubForm)
    {
        var src = CliRunner.Fixture("families", family);
        var model = src;
        if (hubForm)
        {
            // the same model with the 4.x config.json most Hub checkpoints carry
            model = Path.Combine(_dir, family + "-hub");
            Directory.CreateDirectory(model);
            foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
            File.Copy(Path.Combine(src, "config.hub.json"), Path.Combine(model, "config.json"), overwrite: true);
        }
        var run = CliRunner.Run("logits", "--model", model, "--compare", Path.Combine(src, "expected.safetensors"));
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.InRange(MaxDiff(run), 0, 1e-4);
    }

    [Fact]
    public void The_packed_engine_matches_the_torch_engine_on_the_same_artifact_and_the_file_has_the_transformers_layout()
    {
        var artifact = Path.Combine(_dir, "q3.matq");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", CliRunner.Fixture("families", "tiny-qwen3"), "--method", "rtn", "--bits", "8", "--group", "32", "--out", artifact).ExitCode);
        var torchOut = Path.Combine(_dir, "torch.safetensors");
        var ids = "1,17,200,45,3,99,250,7,64,128;5,6,7,8,9,10,11,12,13,14";
        var torch = CliRunner.Run("logits", "--model", artifact, "--bits", "4", "--ids", ids, "--out", torchOut);
        double maxLogit;
        Assert.True(torch.ExitCode == 0, torch.Output);
        using (var f = SafetensorsFile.Open(torchOut))
        {
            Assert.Equal([2L, 10], f.Get("input_ids").Shape);
            Assert.Equal(SafetensorsDtype.I64, f.Get("input_ids").Dtype);
            Assert.Equal([2L, 10, 384], f.Get("logits").Shape);
            maxLogit = f.ReadFloat32("logits").Max(Math.Abs);
        }
        var packed = CliRunner.Run("logits", "--model", artifact, "--bits", "4", "--engine", "packed", "--compare", torchOut);
        Assert.True(packed.ExitCode == 0, packed.Output);
        // the packed layout keeps fp16 group scales (2^−12 relative rounding), the torch engine the artifact's fp32 ones: the
        // engines' agreement bound of PackedLlamaTests, 1e-3·max|logit| (a wiring mistake moves logits by far more)
        Assert.InRange(MaxDiff(packed), 0, 1e-3 * maxLogit);
    }

    [Theory]
    [InlineData("", "give the tokens")]
    [InlineData("--ids 1,2 --text hi", "give one of --ids and --text")]
    [InlineData("--ids 1,x", "--ids 'x' is not a token id")]
    [InlineData("--ids 1,2;3", "every row")]
    [InlineData("--ids 1,99999 --out {D}/o.safetensors", "token id 99999 is out of range")]
    [InlineData("--ids 1,2", "give --out FILE")]
    [InlineData("--ids 1,2 --engine packed --out {D}/o.safetensors", "--engine packed serves .matq artifacts")]
    [InlineData("--text hi --out {D}/o.safetensors", "no tokenizer in")]
    [InlineData("--ids 1,2 --out {M}/o.safetensors", "lies inside the input")]
    public void Mistakes_are_one_line(string args, string fragment)
    {
        var model = CliRunner.Fixture("families", "tiny-llama3");
        var extra = args.Replace("{D}", _dir).Replace("{M}", model).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var run = CliRunner.Run(["logits", "--model", model, .. extra]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(fragment, Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir));
    }
}

/// <summary>--tokenizer on the verbs that load a model: a model folder without tokenizer files runs with one given.</summary>
public sealed class TokenizerOptionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-tokopt-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } }

    private static string TinyTokenizer => Path.GetFullPath(CliRunner.Fixture("..", "..", "models", "tiny"));

    [Fact]
    public void A_model_without_tokenizer_files_runs_with_tokenizer_and_the_artifact_carries_it()
    {
        var model = CliRunner.Fixture("tiny-llama");   // no tokenizer files; vocabulary 384 ≥ the byte tokenizer's 256
        var without = CliRunner.Run("generate", "--model", model, "--prompt", "hi", "--max-tokens", "2", "--temperature", "0");
        Assert.Equal(1, without.ExitCode);
        Assert.Contains("--tokenizer DIR", without.Output, StringComparison.Ordinal);
        var with = CliRunner.Run("generate", "--model", model, "--prompt", "hi", "--max-tokens", "2", "--temperature", "0", "--tokenizer", TinyTokenizer);
        Assert.True(with.ExitCode == 0, with.Output);

        var artifact = Path.Combine(_dir, "tl.matq");
        var q = CliRunner.Run("quantize", "--model", model, "--method", "rtn", "--bits", "8", "--group", "32", "--out", artifact, "--tokenizer", TinyTokenizer);
        Assert.True(q.ExitCode == 0, q.Output);
        Assert.True(File.Exists(Path.Combine(_dir, "tl.tokenizer", "matq_tokenizer.json")));
        var g = CliRunner.Run("generate", "--model", artifact, "--prompt", "hi", "--max-tokens", "2", "--temperature", "0");
        Assert.True(g.ExitCode == 0, g.Output);
        var text = Path.Combine(_dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("Fellow citizens of the Senate. ", 40)));
        var e = CliRunner.Run("eval", "--model", model, "--data", text, "--tokenizer", TinyTokenizer, "--context", "32", "--stride", "16");
        Assert.True(e.ExitCode == 0, e.Output);
    }

    [Theory]
    [InlineData("generate")]
    [InlineData("eval")]
    [InlineData("quantize")]
    public void A_tokenizer_folder_that_is_none_is_one_line(string verb)
    {
        string[] args = verb switch
        {
            "generate" => ["generate", "--model", CliRunner.Fixture("tiny-llama"), "--prompt", "x", "--tokenizer", _dir],
            "eval" => ["eval", "--model", CliRunner.Fixture("tiny-llama"), "--tokenizer", Path.Combine(_dir, "missing")],
            _ => ["quantize", "--model", CliRunner.Fixture("tiny-llama"), "--out", Path.Combine(_dir, "q.matq"), "--tokenizer", _dir],
        };
        var run = CliRunner.Run(args);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("--tokenizer", Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal)), StringComparison.Ordinal);
    }
}
