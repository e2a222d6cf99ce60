// Contract: the one table of a PTQ sweep as cells (shared by the console, markdown and CSV writers): rows = float,
// then method × bits × group; per eval set perplexity, bits/byte and perplexity ÷ RTN's (same bits and group).
using System.Globalization;
using System.Text;

namespace Matq.Evaluation;

public static class PtqSweepReport
{
    /// <summary>Column headers: method, bits, group, then per set "&lt;set&gt; ppl", "&lt;set&gt; bits/byte", "&lt;set&gt; ×RTN", then H-err/RTN, quantize s, eval s.</summary>
    public static IReadOnlyList<string> Headers(IReadOnlyList<EvalSet> sets) =>
    [
        "method", "bits", "group",
        .. sets.SelectMany(s => new[] { $"{s.Name} ppl", $"{s.Name} bits/byte", $"{s.Name} ppl ×RTN" }),
        "H-err ÷ RTN", "quantize s", "eval s",
    ];

    /// <summary>Formatted cells per row, in Headers order ("-" where a value does not apply; "*" marks a width note).</summary>
    public static IReadOnlyList<string[]> Cells(PtqSweepResult result, IReadOnlyList<EvalSet> sets)
    {
        var list = new List<string[]>();
        foreach (var row in result.Rows)
        {
            var rtn = Baseline(result, row);
            var cells = new List<string> { row.Method, row.IsFloat ? "-" : row.Bits.ToString(CultureInfo.InvariantCulture),
                row.GroupText + (row.WidthNote is null ? "" : "*") };
            for (int i = 0; i < sets.Count; i++)
            {
                var s = row.Scores[i];
                cells.Add(F(s.Perplexity, 3));
                cells.Add(F(s.BitsPerByte, 4));
                cells.Add(rtn is null || row.IsFloat ? "-" : F(s.Perplexity / rtn.Scores[i].Perplexity, 3));
            }
            cells.Add(row.HessianRatio is double h ? F(h, 3) : "-");
            cells.Add(row.IsFloat ? "-" : F(row.QuantizeSeconds, 2));
            cells.Add(F(row.EvalSeconds, 1));
            list.Add(cells.ToArray());
        }
        return list;
    }

    /// <summary>
    /// Headline: per method (rows) and bits (columns), the geometric mean over group layouts and eval sets of
    /// perplexity ÷ RTN's at the same bits and group; null where the method has no row at those bits or no RTN baseline.
    /// </summary>
    public static (IReadOnlyList<string> Methods, IReadOnlyList<int> Bits, double?[,] Ratio) Summary(PtqSweepResult result)
    {
        var quantized = result.Rows.Where(r => !r.IsFloat).ToList();
        var methods = quantized.Select(r => r.Method).Distinct().ToList();
        var bits = quantized.Select(r => r.Bits).Distinct().OrderDescending().ToList();
        var ratio = new double?[methods.Count, bits.Count];
        for (int m = 0; m < methods.Count; m++)
            for (int b = 0; b < bits.Count; b++)
            {
                var logs = new List<double>();
                foreach (var row in quantized.Where(r => r.Method == methods[m] && r.Bits == bits[b]))
                    if (Baseline(result, row) is { } rtn)
                        for (int i = 0; i < row.Scores.Count; i++) logs.Add(Math.Log(row.Scores[i].Perplexity / rtn.Scores[i].Perplexity));
                ratio[m, b] = logs.Count == 0 ? null : Math.Exp(logs.Average());
            }
        return (methods, bits, ratio);
    }

    /// <summary>The Summary as markdown lines (a table plus one line saying what it is).</summary>
    public static IEnumerable<string> SummaryMarkdown(PtqSweepResult result)
    {
        var (methods, bits, ratio) = Summary(result);
        yield return "| method | " + string.Join(" | ", bits.Select(b => $"{b}-bit ppl ×RTN")) + " |";
        yield return "|---|" + string.Concat(bits.Select(_ => "---:|"));
        for (int m = 0; m < methods.Count; m++)
            yield return $"| {methods[m]} | " + string.Join(" | ", bits.Select((_, b) => ratio[m, b] is double v ? F(v, 3) : "-")) + " |";
        yield return "";
        yield return "Geometric mean over group layouts and eval sets of perplexity ÷ min-max RTN's at the same bits and group (< 1: better than RTN).";
    }

    /// <summary>The plain "rtn" row with the same bits and group (min-max RTN, the baseline of the ×RTN column).</summary>
    public static PtqSweepRow? Baseline(PtqSweepResult result, PtqSweepRow row) =>
        result.Rows.FirstOrDefault(r => r.Method == "rtn" && r.Bits == row.Bits && r.Group == row.Group);

    /// <summary>Footnotes: width notes (the "*" rows) and skipped group sizes, one line each, no duplicates.</summary>
    public static IReadOnlyList<string> Notes(PtqSweepResult result) =>
        result.Rows.Where(r => r.WidthNote is not null).Select(r => "* " + r.WidthNote!).Distinct()
            .Concat(result.Skipped.Select(s => "skipped " + s)).ToArray();

    public static string Markdown(PtqSweepResult result, IReadOnlyList<EvalSet> sets, string title, IReadOnlyList<string> settings, string? plotFile)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# {title}").AppendLine();
        foreach (var line in settings) sb.AppendLine($"- {line}");
        foreach (var set in sets) sb.AppendLine($"- {set.Name}: {set.Label}, {set.Tokens.Length:N0} tokens = {set.Bytes:N0} UTF-8 bytes");
        sb.AppendLine();
        sb.AppendLine("## Summary").AppendLine();
        foreach (var line in SummaryMarkdown(result)) sb.AppendLine(line);
        sb.AppendLine().AppendLine("## All runs").AppendLine();
        var headers = Headers(sets);
        sb.AppendLine("| " + string.Join(" | ", headers) + " |");
        sb.AppendLine("|" + string.Concat(headers.Select((_, i) => i < 3 ? "---|" : "---:|")));
        foreach (var cells in Cells(result, sets)) sb.AppendLine("| " + string.Join(" | ", cells) + " |");
        sb.AppendLine();
        sb.AppendLine("ppl ×RTN: perplexity ÷ that of min-max RTN at the same bits and group (< 1 is better than RTN). "
            + "H-err ÷ RTN: mean over layers of the Hessian-weighted error tr(ΔW H ΔWᵀ) after the method ÷ RTN's on the same H "
            + "(second-order methods only). Times are wall-clock seconds on the device named above.");
        var notes = Notes(result);
        if (notes.Count > 0)
        {
            sb.AppendLine();
            foreach (var n in notes) sb.AppendLine(n.StartsWith('*') ? "\\" + n : n).AppendLine();   // "\*": a footnote, not a list item
        }
        if (plotFile is not null) sb.AppendLine().AppendLine($"![perplexity vs bits]({plotFile})");
        return sb.ToString();
    }

    /// <summary>CSV with full-precision numbers (invariant culture); group 0 = per-channel; the float row has empty bits and group.</summary>
    public static string Csv(PtqSweepResult result, IReadOnlyList<EvalSet> sets)
    {
        var sb = new StringBuilder();
        sb.Append("method,bits,group");
        foreach (var s in sets) sb.Append($",{s.Name}_ppl,{s.Name}_bits_per_byte,{s.Name}_nll,{s.Name}_tokens");
        sb.AppendLine(",hessian_ratio,quantize_seconds,eval_seconds,note");
        foreach (var row in result.Rows)
        {
            sb.Append($"{Quote(row.Method)},{(row.IsFloat ? "" : row.Bits.ToString(CultureInfo.InvariantCulture))},{(row.IsFloat ? "" : row.Group.ToString(CultureInfo.InvariantCulture))}");
            foreach (var s in row.Scores) sb.Append($",{R(s.Perplexity)},{R(s.BitsPerByte)},{R(s.TotalNll)},{s.Tokens}");
            sb.AppendLine($",{(row.HessianRatio is double h ? R(h) : "")},{R(row.QuantizeSeconds)},{R(row.EvalSeconds)},{Quote(row.WidthNote ?? "")}");
        }
        return sb.ToString();
    }

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> atomically (temp file in the same folder + rename).</summary>
    public static void WriteAtomic(string path, string text) => Matq.Formats.IO.AtomicFile.WriteAllText(path, text);

    private static string F(double v, int digits) => v.ToString("F" + digits, CultureInfo.InvariantCulture);
    private static string R(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    private static string Quote(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
}
