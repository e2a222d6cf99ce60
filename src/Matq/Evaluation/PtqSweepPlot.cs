// Contract: the PTQ sweep as one PNG (written atomically): a grid of panels, one row per eval set and one column per
// group layout, each showing perplexity (log axis) against bits with one line per method and the float model dashed.
using ScottPlot;
using SkiaSharp;

namespace Matq.Evaluation;

public static class PtqSweepPlot
{
    private const int PanelWidth = 420, PanelHeight = 340, TitleHeight = 40;

    public static void Save(string path, PtqSweepResult result, IReadOnlyList<EvalSet> sets, string title)
    {
        var quantized = result.Rows.Where(r => !r.IsFloat).ToList();
        var floatRow = result.Rows.FirstOrDefault(r => r.IsFloat);
        var groups = quantized.Select(r => r.Group).Distinct().ToList();
        var methods = quantized.Select(r => r.Method).Distinct().ToList();
        var bits = quantized.Select(r => r.Bits).Distinct().Order().ToArray();
        if (groups.Count == 0 || sets.Count == 0) throw new MatqException("nothing to plot: the sweep has no quantized rows");

        int width = PanelWidth * groups.Count, height = TitleHeight + PanelHeight * sets.Count;
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using (var font = new SKFont(SKTypeface.Default, 20))
        using (var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true })
            canvas.DrawText(title, width / 2f, 27, SKTextAlign.Center, font, paint);

        var palette = new ScottPlot.Palettes.Category10();
        MarkerShape[] markers = [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond];
        for (int si = 0; si < sets.Count; si++)
        {
            // One y range per row (per eval set), so panels of a row compare at a glance.
            var rowValues = quantized.Select(r => r.Scores[si].Perplexity).Append(floatRow?.Scores[si].Perplexity ?? double.NaN)
                .Where(v => double.IsFinite(v) && v > 0).ToArray();
            double lo = Math.Log10(rowValues.Min()), hi = Math.Log10(rowValues.Max());
            double pad = Math.Max(0.03, (hi - lo) * 0.06);
            for (int gi = 0; gi < groups.Count; gi++)
            {
                var plot = new Plot();
                for (int mi = 0; mi < methods.Count; mi++)
                {
                    var pts = quantized.Where(r => r.Method == methods[mi] && r.Group == groups[gi] && r.Scores[si].Perplexity > 0)
                        .OrderBy(r => r.Bits).ToArray();
                    if (pts.Length == 0) continue;
                    var line = plot.Add.Scatter(pts.Select(r => (double)r.Bits).ToArray(), pts.Select(r => Math.Log10(r.Scores[si].Perplexity)).ToArray());
                    line.Color = palette.GetColor(mi);
                    line.LineWidth = 2;
                    line.MarkerShape = markers[mi % markers.Length];
                    line.MarkerSize = 8;
                    line.LegendText = methods[mi];
                }
                if (floatRow is not null)
                {
                    var f = plot.Add.HorizontalLine(Math.Log10(floatRow.Scores[si].Perplexity));
                    f.Color = Colors.Gray;
                    f.LineWidth = 1.5f;
                    f.LinePattern = LinePattern.Dashed;
                    f.LegendText = $"float ({floatRow.Scores[si].Perplexity:F2})";
                }
                plot.Axes.Left.TickGenerator = LogTicks(lo - pad, hi + pad);
                plot.Axes.Bottom.TickGenerator = BitTicks(bits);
                plot.Axes.SetLimitsY(lo - pad, hi + pad);
                plot.Axes.SetLimitsX(bits.Min() - 0.4, bits.Max() + 0.4);
                bool marked = quantized.Any(r => r.Group == groups[gi] && r.WidthNote is not null);   // per-channel on some layers
                plot.Title($"{sets[si].Name} · {(groups[gi] == 0 ? "per-channel" : $"group {groups[gi]}")}{(marked ? "*" : "")}", size: 15);
                plot.XLabel("bits", size: 13);
                plot.YLabel("perplexity (log)", size: 13);
                if (si == 0 && gi == groups.Count - 1) plot.ShowLegend(Alignment.UpperRight);
                else plot.HideLegend();
                // Each panel renders into its own surface (Plot.Render fills the whole canvas it is given).
                using var panel = SKSurface.Create(new SKImageInfo(PanelWidth, PanelHeight));
                plot.Render(panel);
                using var snapshot = panel.Snapshot();
                canvas.DrawImage(snapshot, gi * PanelWidth, TitleHeight + si * PanelHeight);
            }
        }
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        Matq.Formats.IO.AtomicFile.Write(path, png.SaveTo);
    }

    // Ticks (in log10 units) inside [lo, hi]: at 1, 2, 5 × 10^k over more than a decade, else at a "nice" linear step
    // (1, 2 or 5 × 10^k) chosen for about five ticks, so a narrow range still gets readable labels.
    private static ScottPlot.TickGenerators.NumericManual LogTicks(double lo, double hi)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        double vlo = Math.Pow(10, lo), vhi = Math.Pow(10, hi);
        var values = new List<double>();
        if (vhi / vlo > 10)
        {
            for (int k = (int)Math.Floor(lo) - 1; k <= (int)Math.Ceiling(hi); k++)
                foreach (var m in new[] { 1, 2, 5 }) values.Add(m * Math.Pow(10, k));
        }
        else
        {
            double raw = (vhi - vlo) / 5, mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
            double step = new[] { 1, 2, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
            for (double v = Math.Ceiling(vlo / step) * step; v <= vhi; v += step) values.Add(Math.Round(v / step) * step);
        }
        foreach (var v in values.Where(v => v >= vlo && v <= vhi))
            ticks.AddMajor(Math.Log10(v), v >= 100 ? v.ToString("N0") : v.ToString("0.###"));
        return ticks;
    }

    private static ScottPlot.TickGenerators.NumericManual BitTicks(IEnumerable<int> bits)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (var b in bits) ticks.AddMajor(b, b.ToString());
        return ticks;
    }
}
