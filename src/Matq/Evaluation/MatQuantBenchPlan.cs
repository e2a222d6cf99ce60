// Contract: the plan of `bench matquant` on one base (qat, athena, omniquant): independently quantized baselines at each
// width, then per λ vector the MatQuant runs over R = {8,4,2} (plain, co-distilled, extra precision) and single-precision
// MatQuant {2}, each with the widths it is served at; λ parsing, and the Mix'n'Match plot of a base's curves.
using System.Globalization;
using Matq.Algorithms.MatQuant;

namespace Matq.Evaluation;

/// <summary>One quantization run of the bench: its row label, master bits, R, λ, extra options and the widths served.</summary>
public sealed record MatQuantBenchRun(string Label, int Master, string Bits, string Lambda, Dictionary<string, string> Extra, int[] Serve,
    bool ServeExtra = false, bool MixSource = false);

public static class MatQuantBenchPlan
{
    /// <summary>The widths a MatQuant {8,4,2} artifact is served at (8, 6 and 3 are sliced, 6 and 3 interpolated).</summary>
    public static readonly int[] Sliced = [8, 6, 4, 3, 2];

    /// <summary>The nested widths every MatQuant run trains.</summary>
    public static readonly int[] Nested = [8, 4, 2];

    /// <summary>"1,1,1;1,1,2" → [[1,1,1],[1,1,2]]: one weight per width of R = {8,4,2} per vector, each valid for MatQuant
    /// (finite, ≥ 0, not all 0), no vector twice; one MatqException naming the vector otherwise.</summary>
    public static IReadOnlyList<double[]> ParseLambdas(string text)
    {
        var list = new List<double[]>();
        foreach (var part in (text ?? "").Split(';', StringSplitOptions.TrimEntries))
        {
            if (part.Length == 0) throw new MatqException($"--lambdas '{SafeText.Escape(text)}' has an empty vector: give L8,L4,L2 per run, ';'-separated, e.g. 1,1,1;1,1,2");
            var values = part.Split(',', StringSplitOptions.TrimEntries).Select(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
                : throw new MatqException($"--lambdas '{SafeText.Escape(part)}': '{SafeText.Escape(v)}' is not a number")).ToArray();
            if (values.Length != Nested.Length)
                throw new MatqException($"--lambdas '{SafeText.Escape(part)}' has {values.Length} value(s): give one weight per width of R = {{8,4,2}}, e.g. 1,1,1");
            _ = new MatQuantConfig(Nested, values, 8);   // λ ≥ 0, finite, not all 0 (its own message)
            if (list.Any(l => l.SequenceEqual(values))) throw new MatqException($"--lambdas repeats {LambdaText(values)}");
            list.Add(values);
        }
        return list;
    }

    private static string LambdaText(double[] l) => string.Join(",", l.Select(x => x.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>The runs of one base, in order: independent baselines, then per λ the R = {8,4,2} runs (plain, co-distill
    /// for qat/omniquant when pairs are given, extra precision), single-precision {2} once after the first λ's plain run.</summary>
    public static IReadOnlyList<MatQuantBenchRun> PlanRuns(string baseName, IReadOnlyList<int> independent, IReadOnlyList<double[]> lambdas, string codistill)
    {
        var runs = new List<MatQuantBenchRun>();
        foreach (var r in independent) runs.Add(new MatQuantBenchRun($"independent int{r}", r, r.ToString(CultureInfo.InvariantCulture), "1", new(), [r]));
        bool labelled = !(lambdas.Count == 1 && lambdas[0].All(x => x == 1));
        for (int i = 0; i < lambdas.Count; i++)
        {
            string lambda = LambdaText(lambdas[i]), suffix = labelled ? $" λ={lambda}" : "";
            runs.Add(new MatQuantBenchRun($"MatQuant {{8,4,2}}{suffix}", 8, "8,4,2", lambda, new(), Sliced, MixSource: i == 0));
            if (baseName is "qat" or "omniquant" && codistill.Length > 0)
                runs.Add(new MatQuantBenchRun($"MatQuant {{8,4,2}}{suffix} + co-distill {codistill.Replace("->", "→")}", 8, "8,4,2", lambda, new() { ["codistill"] = codistill }, Sliced));
            if (i == 0) runs.Add(new MatQuantBenchRun("single-precision MatQuant {2}", 8, "2", "1", new(), [2]));
            runs.Add(new MatQuantBenchRun($"MatQuant {{8,4,2}}{suffix} + extra precision", 8, "8,4,2", lambda, new() { ["extra-precision"] = "true" }, [4, 3, 2], ServeExtra: true));
        }
        return runs;
    }

    /// <summary>"&lt;stem&gt;-&lt;base&gt;-mixnmatch.png", without doubling the base when the stem already ends in it
    /// (matquant-tiny-qat.md → matquant-tiny-qat-mixnmatch.png, not …-qat-qat-…).</summary>
    public static string PlotPath(string outPath, string b)
    {
        var stem = Path.ChangeExtension(outPath, null);
        return (stem.EndsWith("-" + b, StringComparison.Ordinal) ? stem : stem + "-" + b) + "-mixnmatch.png";
    }

    public static void SavePlot(string path, List<(string Base, string Strategy, double Avg, long Bytes, double Sotu, double Moby)> points, string b)
    {
        var plot = new ScottPlot.Plot();
        foreach (var g in points.GroupBy(p => p.Strategy))
        {
            var ordered = g.OrderBy(p => p.Avg).ToArray();
            var s = plot.Add.Scatter(ordered.Select(p => p.Avg).ToArray(), ordered.Select(p => p.Sotu).ToArray());
            s.LegendText = g.Key;
            s.MarkerSize = 7;
        }
        plot.Title($"Mix'n'Match ({b} MatQuant artifact): SOTU-test perplexity vs average bits");
        plot.XLabel("parameter-weighted average bits");
        plot.YLabel("perplexity (SOTU test)");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Matq.Formats.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(900, 540, ScottPlot.ImageFormat.Png));
    }
}
