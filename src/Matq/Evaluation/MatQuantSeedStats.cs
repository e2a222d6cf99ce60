// Contract: the seed statistics of `bench matquant --seeds`: one value per (base, run, served bits, seed) and text;
// per cell the mean ± sample sd over seeds; per MatQuant run and served width the Δ against the independent baseline at
// the same width, paired by seed (mean ± sd of the per-seed differences); and the verdict rule on a paired Δ (lower
// perplexity is better): "better" when −mean > 2 sd, "worse" when mean > 2 sd, else "within noise" (one seed: no verdict).
using System.Globalization;
using System.Text;

namespace Matq.Evaluation;

/// <summary>One measured value: <paramref name="Values"/> per eval text (bench order: SOTU test, Moby-Dick).</summary>
public sealed record SeedCell(string Base, string Run, int Bits, int Seed, IReadOnlyList<double> Values);

/// <summary>Mean and sample standard deviation (n − 1; 0 for one value) of <paramref name="N"/> values.</summary>
public readonly record struct MeanSd(double Mean, double Sd, int N)
{
    public static MeanSd Of(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        double mean = values.Average();
        double sd = values.Count < 2 ? 0 : Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
        return new MeanSd(mean, sd, values.Count);
    }

    public string Text(string format = "F3") => N < 2 ? Mean.ToString(format, CultureInfo.InvariantCulture)
        : $"{Mean.ToString(format, CultureInfo.InvariantCulture)} ± {Sd.ToString(format, CultureInfo.InvariantCulture)}";

    /// <summary>A signed Δ: "+0.012 ± 0.004".</summary>
    public string SignedText(string format = "F3") => (Mean >= 0 ? "+" : "") + Text(format);
}

public enum SeedVerdict { OneSeed, Better, WithinNoise, Worse }

public static class MatQuantSeedStats
{
    public const string IndependentPrefix = "independent int";

    /// <summary>The verdict on a paired Δ = MatQuant − independent (perplexity; negative = MatQuant better).</summary>
    public static SeedVerdict Verdict(MeanSd delta) =>
        delta.N < 2 ? SeedVerdict.OneSeed
        : -delta.Mean > 2 * delta.Sd ? SeedVerdict.Better
        : delta.Mean > 2 * delta.Sd ? SeedVerdict.Worse
        : SeedVerdict.WithinNoise;

    public static string VerdictText(SeedVerdict v) => v switch
    {
        SeedVerdict.Better => "better (> 2 sd)",
        SeedVerdict.Worse => "worse (> 2 sd)",
        SeedVerdict.WithinNoise => "within noise",
        _ => "one seed",
    };

    /// <summary>Mean ± sd over seeds of text <paramref name="text"/> for each (base, run, bits).</summary>
    public static Dictionary<(string Base, string Run, int Bits), MeanSd> Aggregate(IEnumerable<SeedCell> cells, int text) =>
        cells.GroupBy(c => (c.Base, c.Run, c.Bits)).ToDictionary(g => g.Key, g => MeanSd.Of(g.Select(c => c.Values[text]).ToArray()));

    /// <summary>Δ of run <paramref name="run"/> at <paramref name="bits"/> against "independent int{bits}" of the same base,
    /// paired by seed (only seeds present in both); null when either side is missing.</summary>
    public static MeanSd? PairedDelta(IEnumerable<SeedCell> cells, string baseName, string run, int bits, int text)
    {
        var list = cells.Where(c => c.Base == baseName && c.Bits == bits).ToList();
        var ind = list.Where(c => c.Run == IndependentPrefix + bits.ToString(CultureInfo.InvariantCulture)).ToDictionary(c => c.Seed, c => c.Values[text]);
        var diffs = list.Where(c => c.Run == run && ind.ContainsKey(c.Seed)).OrderBy(c => c.Seed).Select(c => c.Values[text] - ind[c.Seed]).ToArray();
        return diffs.Length == 0 ? null : MeanSd.Of(diffs);
    }

    /// <summary>Every per-seed value as CSV: base,run,bits,seed,then one column per text.</summary>
    public static string Csv(IEnumerable<SeedCell> cells, IReadOnlyList<string> textLabels)
    {
        static string Q(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
        var sb = new StringBuilder("base,run,bits,seed," + string.Join(",", textLabels.Select(Q)) + "\n");
        foreach (var c in cells)
            sb.Append(CultureInfo.InvariantCulture, $"{Q(c.Base)},{Q(c.Run)},{c.Bits},{c.Seed},")
              .AppendLine(string.Join(",", c.Values.Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
        return sb.ToString();
    }
}
