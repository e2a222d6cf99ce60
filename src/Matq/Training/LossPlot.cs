// Loss-curve figure of a training run: train and validation loss (nats/token) against optimizer step, as a PNG
// written atomically (temp file + rename).
namespace Matq.Training;

public static class LossPlot
{
    public static void Save(string path, IReadOnlyList<LossPoint> train, IReadOnlyList<LossPoint> validation, string title,
        int width = 900, int height = 540)
    {
        var plot = new ScottPlot.Plot();
        if (train.Count > 0)
        {
            var t = plot.Add.Scatter(train.Select(p => (double)p.Step).ToArray(), train.Select(p => p.Loss).ToArray());
            t.LegendText = "train";
            t.MarkerSize = 0;
            t.LineWidth = 1.5f;
        }
        if (validation.Count > 0)
        {
            var v = plot.Add.Scatter(validation.Select(p => (double)p.Step).ToArray(), validation.Select(p => p.Loss).ToArray());
            v.LegendText = "validation";
            v.MarkerSize = 6;
            v.LineWidth = 2f;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss (nats per token)");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Matq.Formats.IO.AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png));
    }
}
