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

    // hand-computed: independent int2 SOTU 5.0, 5.2, 5.1 (seeds 1..3) → mean 5.1, sd 0.1; MatQuant 4.9, 5.0, 5.05 →
    // paired differences −0.1, −0.2, −0.05 → mean −0.116667, sd √(0.0116667 / 2) = 0.0763763 (within noise: 0.117 < 2·0.076)
    private static List<SeedCell> FakeCells() =>
    [
        new("qat", "independent int2", 2, 1, [5.0, 14.0]), new("qat", "independent int2", 2, 2, [5.2, 14.2]), new("qat", "independent int2", 2, 3, [5.1, 14.4]),
        new("qat", "MatQuant {8,4,2}", 2, 1, [4.9, 14.1]), new("qat", "MatQuant {8,4,2}", 2, 2, [5.0, 14.3]), new("qat", "MatQuant {8,4,2}", 2, 3, [5.05, 14.5]),
        new("qat", "co", 2, 1, [4.9, 14.0]), new("qat", "co", 2, 2, [5.09, 14.2]), new("qat", "co", 2, 3, [4.98, 14.4]),
        new("qat", "MatQuant {8,4,2}", 8, 1, [5.0, 14.0]), new("athena", "independent int2", 2, 1, [9.0, 9.0]),
    ];

    [Fact]
    public void Seed_cells_aggregate_to_mean_and_sample_sd()
    {
        var s = MatQuantSeedStats.Aggregate(FakeCells(), 0);
        var ind = s[("qat", "independent int2", 2)];
        Assert.Equal(3, ind.N);
        Assert.Equal(5.1, ind.Mean, 9);
        Assert.Equal(0.1, ind.Sd, 9);
        Assert.Equal(0, s[("qat", "MatQuant {8,4,2}", 8)].Sd);
        Assert.Equal(1, s[("qat", "MatQuant {8,4,2}", 8)].N);
        Assert.Equal(14.3, MatQuantSeedStats.Aggregate(FakeCells(), 1)[("qat", "MatQuant {8,4,2}", 2)].Mean, 9);
        Assert.Equal("5.100 ± 0.100", ind.Text());
    }

    [Fact]
    public void Delta_is_paired_by_seed_and_only_over_seeds_on_both_sides()
    {
        var d = MatQuantSeedStats.PairedDelta(FakeCells(), "qat", "MatQuant {8,4,2}", 2, 0)!.Value;
        Assert.Equal(3, d.N);
        Assert.Equal(-0.35 / 3, d.Mean, 9);
        Assert.Equal(Math.Sqrt(0.0116666666667 / 2), d.Sd, 9);
        Assert.Equal(SeedVerdict.WithinNoise, MatQuantSeedStats.Verdict(d));
        // co: −0.1, −0.11, −0.12 → mean −0.11, sd 0.01: better by > 2 sd although its mean is smaller than MatQuant's
        var co = MatQuantSeedStats.PairedDelta(FakeCells(), "qat", "co", 2, 0)!.Value;
        Assert.Equal(-0.11, co.Mean, 9);
        Assert.Equal(0.01, co.Sd, 9);
        Assert.Equal(SeedVerdict.Better, MatQuantSeedStats.Verdict(co));
        // Moby: MatQuant +0.1 on every seed → sd 0 → worse
        Assert.Equal(SeedVerdict.Worse, MatQuantSeedStats.Verdict(MatQuantSeedStats.PairedDelta(FakeCells(), "qat", "MatQuant {8,4,2}", 2, 1)!.Value));
        var partial = FakeCells().Where(c => !(c.Run == "independent int2" && c.Seed == 3)).ToList();
        var p = MatQuantSeedStats.PairedDelta(partial, "qat", "MatQuant {8,4,2}", 2, 0)!.Value;
        Assert.Equal(2, p.N);
        Assert.Equal(-0.15, p.Mean, 9);
        Assert.Null(MatQuantSeedStats.PairedDelta(FakeCells(), "qat", "MatQuant {8,4,2}", 8, 0));   // no independent int8
        Assert.Null(MatQuantSeedStats.PairedDelta(FakeCells(), "athena", "MatQuant {8,4,2}", 2, 0));
    }

    [Theory]
    [InlineData(-0.3, 0.1, 3, SeedVerdict.Better)]
    [InlineData(-0.2, 0.1, 3, SeedVerdict.WithinNoise)]
    [InlineData(-0.19, 0.1, 3, SeedVerdict.WithinNoise)]
    [InlineData(0.0, 0.0, 3, SeedVerdict.WithinNoise)]
    [InlineData(0.21, 0.1, 3, SeedVerdict.Worse)]
    [InlineData(0.05, 0.0, 2, SeedVerdict.Worse)]
    [InlineData(-5, 0, 1, SeedVerdict.OneSeed)]
    public void Verdict_needs_more_than_two_sd_of_the_paired_difference(double mean, double sd, int n, SeedVerdict expected) =>
        Assert.Equal(expected, MatQuantSeedStats.Verdict(new MeanSd(mean, sd, n)));

    [Fact]
    public void Seed_csv_has_one_line_per_value()
    {
        var csv = MatQuantSeedStats.Csv(FakeCells(), ["SOTU test", "Moby-Dick"]).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("base,run,bits,seed,SOTU test,Moby-Dick", csv[0]);
        Assert.Equal(FakeCells().Count + 1, csv.Length);
        Assert.Equal("qat,\"MatQuant {8,4,2}\",2,2,5,14.3", csv[5]);
    }

    [Theory]
    [InlineData("1,1", "repeats a seed")]
    [InlineData("1,x", "'x' is not a seed")]
    [InlineData("1,-2", "'-2' is not a seed")]
    public void Bad_seeds_are_one_line(string seeds, string expected)
    {
        var (code, output) = Run(new DataStore(new DataCache(Path.Combine(_dir, "none"))), ["matquant", "--model", QuantizeVerbHarness.TinyModel(), "--seeds", seeds]);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, output);
    }

    [Fact]
    public void Codistill_runs_split_on_semicolons()
    {
        Assert.Equal(["8->2", "8->4,4->2"], MatQuantBenchPlan.CodistillRuns("8->2; 8->4,4->2"));
        Assert.Empty(MatQuantBenchPlan.CodistillRuns("none"));
        var runs = MatQuantBenchPlan.PlanRuns("qat", [], MatQuantBenchPlan.ParseLambdas("1,1,1"), "8->2;8->4,4->2");
        Assert.Contains(runs, r => r.Label == "MatQuant {8,4,2} + co-distill 8→4,4→2" && r.Extra["codistill"] == "8->4,4->2");
        Assert.Throws<MatqException>(() => MatQuantBenchPlan.CodistillRuns("8-2"));
    }

    [Fact]
    public void Seeds_run_every_row_per_seed_and_write_mean_sd_delta_verdict_csv_and_band_plot()
    {
        var data = FakeData();
        var outPath = Path.Combine(_dir, "seeds.md");
        var (code, output) = Run(data, ["matquant", "--model", QuantizeVerbHarness.TinyModel(), "--device", "cpu", "--bases", "qat", "--independent", "8,2",
            "--steps", "2", "--batch", "1", "--context", "16", "--calib-n", "2", "--max-tokens", "300", "--budgets", "3", "--codistill", "none", "--seeds", "1,2",
            "--group", "64", "--threads", "1", "--out", outPath, "--work", Path.Combine(_dir, "work")]);
        Assert.True(code == 0, output);
        Assert.Contains("seed 1 · qat · independent int2 @ 2 bits", output);
        Assert.Contains("seed 2 · qat · MatQuant {8,4,2} @ 2 bits", output);
        var tables = File.ReadAllText(Path.Combine(_dir, "seeds-tables.md"));
        Assert.Contains("mean ± sd over seeds 1,2", tables);
        Assert.Contains("Δ vs independent (qat", tables);
        Assert.Matches(@"\| qat \| MatQuant \{8,4,2\} \| 2 \| [+-]\d\.\d{3} ± \d\.\d{3} \| (better|worse|within noise)", tables);
        Assert.Contains("### Verdict", tables);
        var csv = File.ReadAllLines(Path.Combine(_dir, "seeds-seeds.csv"));
        Assert.Contains(csv, l => l.StartsWith("qat,independent int2,2,1,", StringComparison.Ordinal));
        Assert.Contains(csv, l => l.StartsWith("qat,independent int2,2,2,", StringComparison.Ordinal));
        var curves = File.ReadAllLines(Path.Combine(_dir, "seeds-curves.csv"));
        Assert.Contains(curves, l => l.StartsWith("qat,budget,3,2,", StringComparison.Ordinal));
        Assert.True(new FileInfo(Path.Combine(_dir, "seeds-qat-mixnmatch.png")).Length > 1000);
    }

    [Fact]
    public void Seeds_run_in_separate_processes_merge_into_the_report_of_one_run_of_all_seeds()
    {
        var data = FakeData();
        string[] Args(string seeds, string name) => ["matquant", "--model", QuantizeVerbHarness.TinyModel(), "--device", "cpu", "--bases", "qat", "--independent", "8,2",
            "--steps", "2", "--batch", "1", "--context", "16", "--calib-n", "2", "--max-tokens", "300", "--budgets", "3", "--codistill", "none", "--seeds", seeds,
            "--group", "64", "--threads", "1", "--out", Path.Combine(_dir, name + ".md"), "--work", Path.Combine(_dir, "work-" + name)];
        foreach (var (seeds, name) in new[] { ("1,2", "both"), ("1", "one"), ("2", "two") })
        {
            var (c, o) = Run(data, Args(seeds, name));
            Assert.True(c == 0, o);
        }
        var runs = $"{Path.Combine(_dir, "one-run.json")},{Path.Combine(_dir, "two-run.json")}";
        var (code, output) = RunMerge(["matquant-merge", "--runs", runs, "--out", Path.Combine(_dir, "merged.md")]);
        Assert.True(code == 0, output);
        Assert.Contains("merged seeds 1,2 from 2 run files", output);
        Assert.Null(MatQuantSeedRun.Read(Path.Combine(_dir, "one-run.json")).Incomplete);   // rewritten after every run, complete at the end
        // CPU runs are deterministic per seed: the merged values and tables are the one run's, line for line
        Assert.Equal(File.ReadAllLines(Path.Combine(_dir, "both-seeds.csv")).Order(), File.ReadAllLines(Path.Combine(_dir, "merged-seeds.csv")).Order());
        Assert.Equal(File.ReadAllLines(Path.Combine(_dir, "both-curves.csv")).Order(), File.ReadAllLines(Path.Combine(_dir, "merged-curves.csv")).Order());
        static string Tables(string path) => File.ReadAllText(path).Replace("both-", "X-").Replace("merged-", "X-");
        Assert.Equal(Tables(Path.Combine(_dir, "both-tables.md")), Tables(Path.Combine(_dir, "merged-tables.md")));
        Assert.True(new FileInfo(Path.Combine(_dir, "merged-qat-mixnmatch.png")).Length > 1000);

        // merging a seed twice, or the merged file with a part of it, is refused with one line and writes nothing
        var (dup, dupOut) = RunMerge(["matquant-merge", "--runs", $"{Path.Combine(_dir, "both-run.json")},{Path.Combine(_dir, "two-run.json")}", "--out", Path.Combine(_dir, "dup.md")]);
        Assert.NotEqual(0, dup);
        Assert.Contains("seed 2 is in both", dupOut);
        Assert.False(File.Exists(Path.Combine(_dir, "dup-tables.md")));
    }

    private static MatQuantSeedRun FakeRun(int seed, double floatSotu = 5.0, int steps = 2, string layers = "all") =>
        new(MatQuantSeedRun.CurrentVersion, new MatQuantSeedSettings("m", steps, 1, 16, 64, 300, "omni", 2, layers, Matq.Algorithms.MatQuant.QatGrid.Learned, [8, 2], ["SOTU test", "Moby-Dick"]),
            [seed], [new("-", "float", 32, 32, floatSotu, 14.0), new("qat", "independent int2", 2, 2, 5.5 + seed, 15, Seed: seed)],
            [new(seed, "qat", "uniform", 2, 2, 100, 5.6, 15.1)]);

    [Theory]
    [InlineData("steps", "other settings than 'a' (--steps: 2 vs 3)")]
    [InlineData("layers", "other settings than 'a' (--layers: all vs ffn)")]
    [InlineData("float", "another float model than 'a' (float SOTU-test 5.1000 vs 5.0000)")]
    [InlineData("seed", "seed 1 is in both 'a' and 'b'")]
    public void Merge_refuses_runs_of_different_experiments_with_one_line(string what, string expected)
    {
        var b = what switch
        {
            "steps" => FakeRun(2, steps: 3),
            "layers" => FakeRun(2, layers: "ffn"),
            "float" => FakeRun(2, floatSotu: 5.1),
            _ => FakeRun(1),
        };
        var e = Assert.Throws<MatqException>(() => MatQuantSeedRun.Merge([FakeRun(1), b], ["a", "b"]));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_stopped_seed_merges_with_its_finished_rows_and_the_report_says_so()
    {
        var stopped = FakeRun(2) with { Incomplete = [2], Rows = [.. FakeRun(2).Rows.Take(1)] };   // the float row only: stopped before its first run
        var merged = MatQuantSeedRun.Merge([FakeRun(1), stopped, FakeRun(3)], ["a", "b", "c"]);
        Assert.Equal([1, 2, 3], merged.Seeds);
        Assert.Equal([2], merged.Incomplete!);
        var path = Path.Combine(_dir, "partial.md");
        MatQuantSeedReport.Write(AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(new StringWriter()) }), path, merged);
        var tables = File.ReadAllText(Path.Combine(_dir, "partial-tables.md"));
        Assert.Contains("**Incomplete:** seed(s) 2 stopped before their last rows", tables);
        Assert.Contains("(n=2)", tables);
        Assert.Equal([2], MatQuantSeedRun.Read(MatQuantSeedReport.RunFile(path)).Incomplete!);
    }

    [Fact]
    public void Run_file_round_trips_and_a_wrong_file_is_one_line()
    {
        var path = Path.Combine(_dir, "r-run.json");
        File.WriteAllText(path, FakeRun(3).ToJson());
        var back = MatQuantSeedRun.Read(path);
        Assert.Equal([3], back.Seeds);
        Assert.Equal(FakeRun(3).Rows, back.Rows);
        Assert.Equal(FakeRun(3).Curves, back.Curves);
        Assert.Null(FakeRun(3).Settings.FirstDifference(back.Settings));
        var bad = Path.Combine(_dir, "bad-run.json");
        File.WriteAllText(bad, "{\"Version\": 1");
        var (code, output) = RunMerge(["matquant-merge", "--runs", $"{path},{bad}", "--out", Path.Combine(_dir, "m.md")]);
        Assert.NotEqual(0, code);
        Assert.Contains("is not a bench matquant run file", output);
        var (code2, output2) = RunMerge(["matquant-merge", "--runs", path, "--out", Path.Combine(_dir, "m.md")]);
        Assert.NotEqual(0, code2);
        Assert.Contains("fewer than two files", output2);
        var (code3, output3) = RunMerge(["matquant-merge", "--runs", $"{path},{Path.Combine(_dir, "missing-run.json")}", "--out", Path.Combine(_dir, "m.md")]);
        Assert.NotEqual(0, code3);
        Assert.Contains("missing-run.json' does not exist", output3);
        var (code4, output4) = RunMerge(["matquant-merge", "--runs", $"{path},{bad}", "--out", Path.Combine(_dir, "r.md")]);
        Assert.NotEqual(0, code4);
        Assert.Contains("would overwrite the input", output4);
        Assert.False(File.Exists(Path.Combine(_dir, "m-tables.md")));
    }

    private static (int Code, string Output) RunMerge(string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 400;
        var root = new RootCommand("test");
        root.Subcommands.Add(new BenchMatQuantMergeVerb(console).Build());
        int code = CliHost.Run(root, args, console);
        return (code, writer.ToString());
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
