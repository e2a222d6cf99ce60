// The multi-seed report of `bench matquant --seeds` and what it is made from. A seeded run writes, beside its tables and
// CSVs, <stem>-run.json: every measured row and Mix'n'Match point with the settings that shaped them. `bench
// matquant-merge` reads several such files (seeds run in separate processes, on one machine or many) and writes the same
// report over their union, after checking they are one experiment: the same settings, the same float model (equal float
// perplexities), no seed twice.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Matq.Algorithms.MatQuant;
using Matq.Cli.Common;
using Matq.Evaluation;
using Spectre.Console;

namespace Matq.Cli.Verbs;

/// <summary>One served row. EffBits = stored bits/weight with the escape stream, SparseBits = with sparse overflow lists,
/// PaperBits = r + overflow fraction.</summary>
public sealed record MatQuantRow(string Base, string Run, int Bits, double EffBits, double Sotu, double Moby, double PaperBits = 0, double SparseBits = 0, int Seed = 0);

/// <summary>One Mix'n'Match point of one seed: Target = the uniform width or the budget asked.</summary>
public sealed record MatQuantCurvePoint(int Seed, string Base, string Strategy, double Target, double Avg, long Bytes, double Sotu, double Moby);

/// <summary>What shaped every row of a seeded run but the seed: runs merge only when these are equal.</summary>
public sealed record MatQuantSeedSettings(string Model, int Steps, int Batch, int Context, int Group, int MaxTokens, string OmniBudget, int CalibN,
    string Layers, QatGrid Grid, int[] Independent, string[] Texts)
{
    /// <summary>The first setting that differs from <paramref name="other"/> as "name: a vs b", or null when none does.</summary>
    public string? FirstDifference(MatQuantSeedSettings other)
    {
        (string Name, string A, string B)[] fields =
        [
            ("model", Model, other.Model), ("--steps", $"{Steps}", $"{other.Steps}"), ("--batch", $"{Batch}", $"{other.Batch}"),
            ("--context", $"{Context}", $"{other.Context}"), ("--group", $"{Group}", $"{other.Group}"), ("--max-tokens", $"{MaxTokens}", $"{other.MaxTokens}"),
            ("OmniQuant budget", OmniBudget, other.OmniBudget), ("--calib-n", $"{CalibN}", $"{other.CalibN}"), ("--layers", Layers, other.Layers),
            ("--grid", $"{Grid}", $"{other.Grid}"), ("--independent", string.Join(",", Independent), string.Join(",", other.Independent)),
            ("eval texts", string.Join(",", Texts), string.Join(",", other.Texts)),
        ];
        foreach (var (name, a, b) in fields)
            if (a != b) return $"{name}: {a} vs {b}";
        return null;
    }
}

/// <summary>Everything a seeded `bench matquant` measured: the float row, every served row and every Mix'n'Match point.</summary>
/// <remarks><see cref="Incomplete"/> names the seeds whose rows stop short: a seeded run rewrites its run file after every
/// run with its seed in progress listed there, so a process stopped by a time limit still leaves every finished row.</remarks>
public sealed record MatQuantSeedRun(int Version, MatQuantSeedSettings Settings, int[] Seeds, List<MatQuantRow> Rows, List<MatQuantCurvePoint> Curves, int[]? Incomplete = null)
{
    public const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public MatQuantRow Float => Rows.First(r => r.Run == "float");

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads a -run.json; a file that is not one gets one line naming it.</summary>
    public static MatQuantSeedRun Read(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"'{SafeText.Escape(path)}' does not exist: give the -run.json files that `matq bench matquant --seeds` wrote");
        MatQuantSeedRun? run;
        try { run = JsonSerializer.Deserialize<MatQuantSeedRun>(File.ReadAllText(path), Json); }
        catch (JsonException e)
        {
            throw new MatqException($"'{SafeText.Escape(path)}' is not a bench matquant run file ({SafeText.Escape(e.Message)}): give the -run.json files that `matq bench matquant --seeds` wrote");
        }
        if (run is null || run.Settings is null || run.Rows is null || run.Curves is null || run.Seeds is null || !run.Rows.Any(r => r.Run == "float"))
            throw new MatqException($"'{SafeText.Escape(path)}' is not a bench matquant run file (fields missing): give the -run.json files that `matq bench matquant --seeds` wrote");
        if (run.Version != CurrentVersion)
            throw new MatqException($"'{SafeText.Escape(path)}' is run-file version {run.Version}; this matq reads version {CurrentVersion}: re-run that seed with this matq");
        return run;
    }

    /// <summary>The union of <paramref name="runs"/> (named by <paramref name="names"/> in errors): one line and nothing merged
    /// when their settings differ, their float models differ, or a seed appears twice.</summary>
    public static MatQuantSeedRun Merge(IReadOnlyList<MatQuantSeedRun> runs, IReadOnlyList<string> names)
    {
        if (runs.Count == 0) throw new MatqException("--runs names no file: give two or more -run.json files");
        var first = runs[0];
        var seenSeeds = new Dictionary<int, string>();
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            if (i > 0 && first.Settings.FirstDifference(r.Settings) is { } diff)
                throw new MatqException($"'{SafeText.Escape(names[i])}' was run with other settings than '{SafeText.Escape(names[0])}' ({SafeText.Escape(diff)}): merge only seeds of one experiment");
            if (i > 0 && (!SameValue(first.Float.Sotu, r.Float.Sotu) || !SameValue(first.Float.Moby, r.Float.Moby)))
                throw new MatqException(string.Create(CultureInfo.InvariantCulture,
                    $"'{SafeText.Escape(names[i])}' measured another float model than '{SafeText.Escape(names[0])}' (float SOTU-test {r.Float.Sotu:F4} vs {first.Float.Sotu:F4}): merge only seeds run on the same float model"));
            foreach (var s in r.Seeds)
                if (!seenSeeds.TryAdd(s, names[i]))
                    throw new MatqException($"seed {s} is in both '{SafeText.Escape(seenSeeds[s])}' and '{SafeText.Escape(names[i])}': merge each seed once");
        }
        var rows = new List<MatQuantRow> { first.Float };
        rows.AddRange(runs.SelectMany(r => r.Rows.Where(x => x.Run != "float")));
        var incomplete = runs.SelectMany(r => r.Incomplete ?? []).Order().ToArray();
        return new MatQuantSeedRun(CurrentVersion, first.Settings, runs.SelectMany(r => r.Seeds).Order().ToArray(), rows, runs.SelectMany(r => r.Curves).ToList(),
            incomplete.Length > 0 ? incomplete : null);

        // the float model is scored the same way by every process: equal up to the last bits of a sum's order
        static bool SameValue(double a, double b) => Math.Abs(a - b) <= 1e-9 * Math.Max(1, Math.Abs(a));
    }
}

/// <summary>The seeded report: mean ± sd per cell, paired Δ vs independent with the verdict, Mix'n'Match with ±1 sd bands,
/// per-seed CSVs and the run file.</summary>
public static class MatQuantSeedReport
{
    /// <summary>Path of the run file beside the report <paramref name="path"/>.</summary>
    public static string RunFile(string path) => Path.ChangeExtension(Path.GetFullPath(path), null) + "-run.json";

    /// <summary>Rewrites the run file only (atomically): what a run has measured so far, its seed in progress marked incomplete.</summary>
    public static void SaveProgress(string path, MatQuantSeedRun run) => Matq.Formats.IO.AtomicFile.WriteAllText(RunFile(path), run.ToJson());

    public static void Write(IAnsiConsole console, string path, MatQuantSeedRun run)
    {
        var (rows, curves, seeds, st) = (run.Rows, run.Curves, run.Seeds, run.Settings);
        var (texts, independent, group, layers) = (st.Texts, st.Independent, st.Group, st.Layers);
        var stem = Path.ChangeExtension(Path.GetFullPath(path), null);
        var cells = rows.Where(r => r.Run != "float").Select(r => new SeedCell(r.Base, r.Run, r.Bits, r.Seed, [r.Sotu, r.Moby])).ToList();
        var sotu = MatQuantSeedStats.Aggregate(cells, 0);
        var moby = MatQuantSeedStats.Aggregate(cells, 1);
        var md = new StringBuilder();
        var f = run.Float;
        string seedText = string.Join(",", seeds);
        md.AppendLine($"Model {st.Model}; group {(group == 0 ? "per-channel" : group.ToString(CultureInfo.InvariantCulture))}; quantized linears: {(layers == "all" ? "all" : layers + " (the rest float)")}. Perplexity: windows 256, stride 128, first {st.MaxTokens} tokens of each text (0 = all).");
        md.AppendLine($"Seeds {seedText} (quantization seed: calibration sampling, QAT data order and init; the float model is the same for every seed). " +
            "Cells: mean ± sample sd over seeds. Δ: MatQuant − independent at the same served bits, paired by seed (mean ± sd of the per-seed differences; negative = MatQuant better).");
        if (rows.Any(r => r.Base == "qat"))
            md.AppendLine($"QAT: {st.Steps} steps × {st.Batch} windows × {st.Context} tokens per run (AdamW, same budget for every run){(st.Grid == QatGrid.MinMax ? "; frozen min-max grid" : "; learned grid")}.");
        if (rows.Any(r => r.Base == "athena"))
            md.AppendLine($"Athena: {st.CalibN} windows × 256 tokens of SOTU train.");
        if (rows.Any(r => r.Base == "omniquant"))
            md.AppendLine($"OmniQuant with {st.OmniBudget} (same budget for every run).");
        md.AppendLine($"Float model: SOTU-test {f.Sotu:F3}, Moby-Dick {f.Moby:F3}.");
        if (run.Incomplete is { Length: > 0 } stopped)
            md.AppendLine($"**Incomplete:** seed(s) {string.Join(",", stopped)} stopped before their last rows (a run file written on the way); a cell over fewer seeds says n.");
        md.AppendLine();
        var verdicts = new List<(string Base, string Run, int Bits, MeanSd Ds, MeanSd Dm)>();
        foreach (var b in rows.Select(r => r.Base).Where(b => b != "-").Distinct())
        {
            var runs = rows.Where(r => r.Base == b).Select(r => r.Run).Distinct().Where(r => !r.StartsWith(MatQuantSeedStats.IndependentPrefix, StringComparison.Ordinal)).ToList();
            var widths = MatQuantBenchPlan.Sliced.Union(independent).Distinct().OrderByDescending(x => x).ToList();
            string Cell(string runName, int bits)
            {
                if (!sotu.TryGetValue((b, runName, bits), out var s)) return "–";
                var served = rows.Where(r => r.Base == b && r.Run == runName && r.Bits == bits).ToList();
                return $"{s.Text()} / {moby[(b, runName, bits)].Text()}" + Short(s.N) + (served.Any(r => r.EffBits > r.Bits + 1e-9)
                    ? $" (paper {served.Average(r => r.PaperBits):F3} b; stored {served.Average(r => r.EffBits):F3} escape / {served.Average(r => r.SparseBits):F3} sparse b)" : "");
            }
            md.AppendLine($"### Base: {b} — perplexity (SOTU-test / Moby-Dick), mean ± sd over seeds {seedText}");
            md.AppendLine();
            md.AppendLine("| bits | independent | " + string.Join(" | ", runs) + " |");
            md.AppendLine("|---|---|" + string.Concat(runs.Select(_ => "---|")));
            foreach (var bits in widths)
                md.AppendLine($"| {bits} | {Cell(MatQuantSeedStats.IndependentPrefix + bits, bits)} | " + string.Join(" | ", runs.Select(r => Cell(r, bits))) + " |");
            md.AppendLine();
            md.AppendLine($"Δ vs independent ({b}; SOTU-test / Moby-Dick; paired by seed; ✓ better by > 2 sd, ✗ worse by > 2 sd, · within noise):");
            md.AppendLine();
            md.AppendLine("| bits | " + string.Join(" | ", runs) + " |");
            md.AppendLine("|---|" + string.Concat(runs.Select(_ => "---|")));
            foreach (var bits in widths.Where(w => independent.Contains(w)))
            {
                var line = new List<string>();
                foreach (var r in runs)
                {
                    var ds = MatQuantSeedStats.PairedDelta(cells, b, r, bits, 0);
                    var dm = MatQuantSeedStats.PairedDelta(cells, b, r, bits, 1);
                    if (ds is null || dm is null) { line.Add("–"); continue; }
                    verdicts.Add((b, r, bits, ds.Value, dm.Value));
                    line.Add($"{ds.Value.SignedText()} {Mark(ds.Value)} / {dm.Value.SignedText()} {Mark(dm.Value)}{Short(ds.Value.N)}");
                }
                md.AppendLine($"| {bits} | " + string.Join(" | ", line) + " |");
            }
            md.AppendLine();
            var c = curves.Where(x => x.Base == b).ToList();
            if (c.Count == 0) continue;
            var points = c.GroupBy(x => (x.Strategy, x.Target)).Select(g => (g.Key.Strategy, g.Key.Target, Avg: g.Average(x => x.Avg), Bytes: g.Average(x => (double)x.Bytes),
                Sotu: MeanSd.Of(g.Select(x => x.Sotu).ToArray()), Moby: MeanSd.Of(g.Select(x => x.Moby).ToArray()))).OrderBy(x => x.Strategy).ThenBy(x => x.Avg).ToList();
            var plotPath = MatQuantBenchPlan.PlotPath(path, b);
            MatQuantBenchPlan.SavePlot(plotPath, points, $"Mix'n'Match ({b} MatQuant artifact, seeds {seedText}): SOTU-test ppl vs average bits");
            md.AppendLine($"Mix'n'Match on the {b} MatQuant {{8,4,2}} artifact of each seed (levels 2,4,8 for pyramid/budget; uniform at each width); mean ± sd over seeds:");
            md.AppendLine();
            md.AppendLine("| strategy | target | avg bits (mean) | weight bytes (mean) | SOTU-test | Moby-Dick |");
            md.AppendLine("|---|---|---|---|---|---|");
            foreach (var x in points)
                md.AppendLine($"| {x.Strategy} | {x.Target:0.##} | {x.Avg:F3} | {x.Bytes:N0} | {x.Sotu.Text()} | {x.Moby.Text()} |");
            md.AppendLine();
            md.AppendLine($"![Mix'n'Match, {b} base, mean ± 1 sd]({Path.GetFileName(plotPath)})");
            md.AppendLine();
        }
        md.AppendLine("### Verdict (generated from the paired Δ)");
        md.AppendLine();
        md.AppendLine("Rule: MatQuant is better where −mean(Δ) > 2 sd(Δ), worse where mean(Δ) > 2 sd(Δ), else within noise; per base, run and served bits, on each text.");
        md.AppendLine();
        md.AppendLine("| base | run | bits | Δ SOTU-test | verdict | Δ Moby-Dick | verdict |");
        md.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var v in verdicts)
            md.AppendLine($"| {v.Base} | {v.Run} | {v.Bits} | {v.Ds.SignedText()} | {MatQuantSeedStats.VerdictText(MatQuantSeedStats.Verdict(v.Ds))} | {v.Dm.SignedText()} | {MatQuantSeedStats.VerdictText(MatQuantSeedStats.Verdict(v.Dm))} |");
        md.AppendLine();
        foreach (var g in verdicts.GroupBy(v => v.Base))
        {
            string Count(Func<(string Base, string Run, int Bits, MeanSd Ds, MeanSd Dm), MeanSd> pick) =>
                string.Join(", ", Enum.GetValues<SeedVerdict>().Where(k => k != SeedVerdict.OneSeed)
                    .Select(k => $"{g.Count(v => MatQuantSeedStats.Verdict(pick(v)) == k)} {MatQuantSeedStats.VerdictText(k)}"));
            var head = g.Where(v => v.Run.StartsWith("MatQuant {8,4,2}", StringComparison.Ordinal) && !v.Run.Contains('+')).Take(independent.Length).ToList();
            md.AppendLine($"- **{g.Key}**: SOTU-test {Count(v => v.Ds)}; Moby-Dick {Count(v => v.Dm)} (of {g.Count()} cells). Headline {head.FirstOrDefault().Run}: " +
                string.Join("; ", head.Select(v => $"int{v.Bits} {v.Ds.SignedText()} ({MatQuantSeedStats.VerdictText(MatQuantSeedStats.Verdict(v.Ds))}) / {v.Dm.SignedText()} ({MatQuantSeedStats.VerdictText(MatQuantSeedStats.Verdict(v.Dm))})")) + ".");
        }
        md.AppendLine();
        md.AppendLine($"Per-seed values: {Path.GetFileName(stem)}-seeds.csv (cells), {Path.GetFileName(stem)}-curves.csv (Mix'n'Match); every row with its settings: {Path.GetFileName(stem)}-run.json (`matq bench matquant-merge` combines such files).");
        Matq.Formats.IO.AtomicFile.WriteAllText(stem + "-seeds.csv", MatQuantSeedStats.Csv(cells, texts));
        var cc = new StringBuilder("base,strategy,target,seed,avg_bits,weight_bytes," + string.Join(",", texts) + "\n");
        foreach (var x in curves)
            cc.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{x.Base},{x.Strategy},{x.Target:R},{x.Seed},{x.Avg:R},{x.Bytes},{x.Sotu:R},{x.Moby:R}"));
        Matq.Formats.IO.AtomicFile.WriteAllText(stem + "-curves.csv", cc.ToString());
        Matq.Formats.IO.AtomicFile.WriteAllText(RunFile(path), run.ToJson());
        Matq.Formats.IO.AtomicFile.WriteAllText(stem + "-tables.md", md.ToString());
        console.WriteLine(md.ToString());

        string Short(int n) => n < seeds.Length ? $" (n={n})" : "";
        static string Mark(MeanSd d) => MatQuantSeedStats.Verdict(d) switch { SeedVerdict.Better => "✓", SeedVerdict.Worse => "✗", _ => "·" };
    }
}
