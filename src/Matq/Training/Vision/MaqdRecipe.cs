// Contract: the MaQD training recipe on Fashion-MNIST: SGD nesterov at 0.1·min(1, sqrt(B/128)), gradient norm clipped at
// 2·sqrt(128/B), warm-up min(100, 10 % of the steps), cosine, weight decay 5e-4, augmentation; the sweep's columns
// (batch, images, epochs) and its markdown table (rows = MaqdTraining.SweepPlan, columns = settings).
using System.Globalization;
using System.Text;
using Matq.Algorithms.MaQD;
using Matq.Quantization;

namespace Matq.Training.Vision;

/// <summary>One column of the MaQD sweep: batch size, training images (null = all or --limit-train), epochs.</summary>
public sealed record MaqdSweepSetting(int Batch, int? Images, int Epochs);

public static class MaqdRecipe
{
    public const double DefaultClip = 2.0;

    /// <summary>Epochs of a MaQD run when none are given.</summary>
    public const int DefaultEpochs = 15;

    /// <summary>The gradient-norm clip for a batch size: <paramref name="given"/> (0 = none), else 2·sqrt(128/B): 2 sits above
    /// the typical norm of a MaQD ResNet step at B = 128 (0.4–3) and below the spikes (10–22) that kill layers; the
    /// noise part of the norm grows as 1/sqrt(B) (median 4 at B = 8), so the clip scales with it.</summary>
    public static double? ClipFor(double? given, int batch) => given is double g ? (g > 0 ? g : null) : DefaultClip * Math.Sqrt(128.0 / batch);

    /// <summary>SGD (nesterov, momentum 0.9) at 0.1 for batch ≥ 128, scaled with sqrt(B/128) below it (0.025 at B = 8):
    /// on a held-out split at B = 8 it beat linear scaling (0.00625) by 1.4 points for float BN and LBN and 0.6 for
    /// ternary MaQD, and with the clip 2·sqrt(128/B) it keeps the largest step lr·clip = 0.2 at every batch size.</summary>
    public static double DefaultLr(int batch) => 0.1 * Math.Min(1.0, Math.Sqrt(batch / 128.0));

    /// <summary>Warm-up steps: 10 % of the run's steps over <paramref name="images"/> (null = all 60,000), 1..100.</summary>
    public static int WarmupSteps(int? images, int batch, int epochs) => Math.Clamp((images ?? 60_000) / batch * epochs / 10, 1, 100);

    /// <summary>The training options of one MaQD run; <paramref name="lr"/> and <paramref name="clip"/> null = the rules above.</summary>
    public static CnnTrainOptions TrainOptions(int batch, int? images, int epochs, double? lr, double? clip, double freezeLbn, long seed, int? limitTest) => new()
    {
        Epochs = epochs, Batch = batch, Lr = lr ?? DefaultLr(batch), Optimizer = "sgd", WeightDecay = 5e-4,
        WarmupSteps = WarmupSteps(images, batch, epochs), Augment = true, Seed = seed, LimitTrain = images, LimitTest = limitTest,
        FreezeLbnFraction = freezeLbn, ClipGradNorm = ClipFor(clip, batch),
    };

    /// <summary>Parses "8:20000:1,128:60000:4" (IMAGES and EPOCHS optional); null = two columns, B = 8 and B = 128.</summary>
    public static IReadOnlyList<MaqdSweepSetting> ParseSettings(string? text, int? images, int epochs)
    {
        if (text is null) return [new(8, images, epochs), new(128, images, epochs)];
        var list = new List<MaqdSweepSetting>();
        foreach (var item in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = item.Split(':');
            int[] v = new int[parts.Length];
            if (parts.Length > 3 || parts.Select((p, i) => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out v[i]) && v[i] > 0).Any(ok => !ok))
                throw new MatqException($"--sweep-settings item '{item}' is not B[:IMAGES[:EPOCHS]] with positive integers (e.g. 8:20000:1,128:60000:4)");
            list.Add(new(v[0], parts.Length > 1 ? v[1] : images, parts.Length > 2 ? v[2] : epochs));
        }
        if (list.Count == 0) throw new MatqException("--sweep-settings is empty: give B[:IMAGES[:EPOCHS]],... (e.g. 8,128)");
        return list;
    }

    public static string SurrogateText(MaqdConfig c) => c.Surrogate == Surrogate.Ste ? "ste" : $"smooth w={c.Width.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>"most distinct codes of an inner layer / of the first and last layers", or "-" for a float run.</summary>
    public static string CodesText(MaqdRunOutcome o) => o.MaxDistinctCodes is int i ? $"{i} / {o.EndDistinctCodes?.ToString(CultureInfo.InvariantCulture) ?? "-"}" : "-";

    private static string Pct(double v) => (v * 100).ToString("F2", CultureInfo.InvariantCulture) + " %";

    /// <summary>Summary (rows = runs, columns = settings; the folded accuracy, Δ against float+BN of the same column) and
    /// details. <paramref name="outcomes"/> are in run order (setting-major) and may be a prefix of the plan: cells not
    /// yet run show "…".</summary>
    public static string SweepMarkdown(IReadOnlyList<MaqdRunOutcome> outcomes, IReadOnlyList<MaqdSweepSetting> settings, IReadOnlyList<MaqdRunSpec> rows,
        string model, string device, Surrogate surrogate, double width, double freeze, double? clip, int ends, string evalName = "test images")
    {
        var md = new StringBuilder();
        md.AppendLine("# MaQD on Fashion-MNIST: float vs fully quantized, BN vs LBN");
        md.AppendLine();
        md.AppendLine($"Architecture of `{model}`, trained from scratch per row; device {device}; surrogate {(surrogate == Surrogate.Ste ? "ste" : $"smooth, width {width.ToString(CultureInfo.InvariantCulture)}")}; "
            + "SGD nesterov (lr 0.1·min(1, sqrt(B/128)), warm-up min(100, 10% of the steps), cosine, weight decay 5e-4"
            + (clip is double g ? (g > 0 ? $", gradient norm clipped at {g.ToString(CultureInfo.InvariantCulture)}" : "") : $", gradient norm clipped at {DefaultClip.ToString(CultureInfo.InvariantCulture)}·sqrt(128/B)") + "), augmentation (shift ±2 px, flip), same recipe for every row. "
            + $"Accuracy = eval-mode net after folding every norm into the layer before it ({evalName}). "
            + "MaQD (N, M): N weight states (standardized per output channel, round-clip), M activation states (round-clip ReLU after every norm); "
            + $"\"first/last {ends}\" keeps the first conv (on the pixels) and the classifier at {ends} states, \"all layers\" quantizes them to N too. "
            + "float + LBN standardizes its weights as MaQD does (WS(W)/sqrt(fan_in), no rounding). "
            + (freeze > 0 ? $"LBN nets train their last {(freeze * 100).ToString("0.#", CultureInfo.InvariantCulture)} % of steps (--freeze-lbn) with the norms frozen at running estimates recomputed over 4,096 training images. "
                : "LBN running estimates: recomputed over 4,096 training images after training (--freeze-lbn 0). ")
            + $"{outcomes.Count} of {rows.Count * settings.Count} runs done.");
        md.AppendLine();
        md.Append("| run |");
        foreach (var s in settings) md.Append($" B={s.Batch} ({(s.Images is int n ? n.ToString("N0", CultureInfo.InvariantCulture) : "all")} images × {s.Epochs} ep) | Δ vs float+BN |");
        md.AppendLine();
        md.Append("|---|");
        foreach (var _ in settings) md.Append("---:|---:|");
        md.AppendLine();
        for (int row = 0; row < rows.Count; row++)
        {
            md.Append($"| {rows[row].Label} |");
            for (int c = 0; c < settings.Count; c++)
            {
                int i = c * rows.Count + row, b = c * rows.Count;
                if (i >= outcomes.Count) { md.Append(" … | … |"); continue; }
                double acc = outcomes[i].FoldedAccuracy ?? outcomes[i].Accuracy, baseAcc = outcomes[b].FoldedAccuracy ?? outcomes[b].Accuracy;
                md.Append($" {Pct(acc)} | {(row == 0 ? "-" : ((acc - baseAcc) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture))} |");
            }
            md.AppendLine();
        }
        md.AppendLine();
        md.AppendLine("| run | batch | steps | eval acc (unfolded) | folded acc | distinct weight codes per layer, most: inner / first+last | train s | ms/step |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var o in outcomes)
            md.AppendLine($"| {o.Spec.Label} | {o.Batch} | {o.Steps} | {Pct(o.Accuracy)} | {(o.FoldedAccuracy is double f ? Pct(f) : "-")} | {CodesText(o)} | {o.Seconds.ToString("F1", CultureInfo.InvariantCulture)} | {(o.Steps > 0 ? (1000 * o.Seconds / o.Steps).ToString("F1", CultureInfo.InvariantCulture) : "-")} |");
        return md.ToString();
    }
}
