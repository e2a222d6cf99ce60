// `matq bench matquant-merge`: the seeded MatQuant report (MatQuantSeedReport) over the -run.json files of seeds run as
// separate processes; MatQuantSeedRun.Merge checks they are one experiment before anything is written.
using Matq.Cli.Common;
using Spectre.Console;

namespace Matq.Cli.Verbs;

/// <summary>`matq bench matquant-merge`: one seeded report from the -run.json files of seeds that ran in separate processes.</summary>
public sealed class BenchMatQuantMergeVerb(IAnsiConsole console) : Verb<BenchMatQuantMergeSettings>(console, "matquant-merge",
    "One seeded MatQuant report (mean ± sd, paired Δ, verdict, Mix'n'Match bands) from the -run.json files of `bench matquant --seeds` runs of the same experiment",
    "matq bench matquant-merge --runs s1-run.json,s2-run.json,s3-run.json --out docs/results/matquant-study/rows-qat-small.md")
{
    private readonly Option<string> _runs = new("--runs") { Description = "The -run.json files to merge (comma-separated): same settings, same float model, each seed once", Required = true, HelpName = "A-run.json,B-run.json[,...]" };
    private readonly Option<string> _out = new("--out") { Description = "Report path: the tables go to <stem>-tables.md, the CSVs, run file and PNG plots beside it", Required = true, HelpName = "PATH" };

    protected override IEnumerable<Option> Options => [_runs, _out];

    protected override BenchMatQuantMergeSettings Read(ParseResult r) => new(r.GetValue(_runs)!, r.GetValue(_out)!);

    protected override int Run(BenchMatQuantMergeSettings s)
    {
        var names = s.RunList;
        var merged = MatQuantSeedRun.Merge(names.Select(MatQuantSeedRun.Read).ToList(), names);
        MatQuantSeedReport.Write(Console, s.Out, merged);
        Console.MarkupLine($"merged seeds {string.Join(",", merged.Seeds)} from {names.Count} run files; wrote [bold]{Markup.Escape(Path.ChangeExtension(Path.GetFullPath(s.Out), null) + "-tables.md")}[/]");
        return 0;
    }
}

public sealed record BenchMatQuantMergeSettings(string Runs, string Out) : IVerbSettings
{
    public IReadOnlyList<string> RunList => Runs.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public void Validate()
    {
        if (RunList.Count < 2) throw new MatqException($"--runs '{SafeText.Escape(Runs)}' names fewer than two files: give the -run.json of each seed, comma-separated");
        if (RunList.Distinct(StringComparer.Ordinal).Count() != RunList.Count) throw new MatqException($"--runs '{SafeText.Escape(Runs)}' names a file twice");
        foreach (var f in RunList)
            if (!File.Exists(f)) throw new MatqException($"--runs: '{SafeText.Escape(f)}' does not exist: give the -run.json files that `matq bench matquant --seeds` wrote");
        var stem = Path.ChangeExtension(Path.GetFullPath(Out), null);
        foreach (var f in RunList)
            if (Path.GetFullPath(f) == stem + "-run.json")
                throw new MatqException($"--out '{SafeText.Escape(Out)}' would overwrite the input '{SafeText.Escape(f)}': give another report path");
        Matq.Formats.IO.OutputPaths.CheckFile(Out, "--out", [.. RunList]);
    }
}
