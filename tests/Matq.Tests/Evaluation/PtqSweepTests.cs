// PtqSweep on the tiny-llama fixture: rows in float → method × bits × group order, the float weights restored after
// every run, 8-bit within 1% of float, second-order rows carry Hessian ratios, group sizes ≥ every width skipped.
using Matq.Evaluation;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Matq.Tests.Training;
using static TorchSharp.torch;

namespace Matq.Tests.Evaluation;

public sealed class PtqSweepTests
{
    private static readonly PerplexityOptions Eval = new() { Context = 64, Stride = 32, Batch = 4 };

    private static EvalSet[] Sets() =>
    [
        new("a", "stream a", TestText.Tokens(300, 384, 21), 300),
        new("b", "stream b", TestText.Tokens(200, 384, 22), 250),
    ];

    private static CalibrationTokens Calibration() =>
        new(Enumerable.Range(0, 8).Select(i => TestText.Tokens(32, 384, 100 + i)).ToArray());

    private static PtqSweepOptions Options(string methods, int[] bits, int[] groups) => new()
    {
        Methods = methods.Split(',').Select(PtqMethod.Parse).ToArray(), Bits = bits, Groups = groups, Eval = Eval, Seed = 3,
    };

    [Fact]
    public void Rows_come_in_order_weights_are_restored_and_8_bit_is_close_to_float()
    {
        using var model = PipelineFixtures.LoadTiny();
        var before = model.named_parameters().ToDictionary(p => p.name, p => PipelineFixtures.Floats(p.parameter));
        var sets = Sets();
        double floatBefore = Perplexity.Evaluate(model, sets[0].Tokens, sets[0].Bytes, Eval, CPU).Perplexity;
        var progress = new List<PtqSweepProgress>();

        var result = PtqSweep.Run(model, Options("rtn,gptq", [8, 3], [0]), sets, Calibration(), CPU, progress.Add);

        Assert.Equal(["float", "rtn", "rtn", "gptq", "gptq"], result.Rows.Select(r => r.Method));
        Assert.Equal([0, 8, 3, 8, 3], result.Rows.Select(r => r.Bits));
        Assert.All(result.Rows, r => Assert.Equal(2, r.Scores.Count));
        var f = result.Rows[0];
        Assert.True(f.IsFloat);
        Assert.Equal(floatBefore, f.Scores[0].Perplexity);   // the sweep's float row is the model as given

        // restored: every parameter bit-identical, and the float perplexity identical after the sweep
        foreach (var (name, p) in model.named_parameters())
            Assert.True(before[name].SequenceEqual(PipelineFixtures.Floats(p)), $"{name} was not restored");
        Assert.Equal(floatBefore, Perplexity.Evaluate(model, sets[0].Tokens, sets[0].Bytes, Eval, CPU).Perplexity);

        foreach (var r in result.Rows.Where(r => r.Bits == 8))
            for (int s = 0; s < sets.Length; s++)
                Assert.True(Math.Abs(r.Scores[s].Perplexity / f.Scores[s].Perplexity - 1) < 0.01,
                    $"{r.Method} 8-bit on {sets[s].Name}: {r.Scores[s].Perplexity} vs float {f.Scores[s].Perplexity}");
        // 3 bits really changes the model (the rows are not all float)
        Assert.True(Math.Abs(result.Rows[2].Scores[0].TotalNll - f.Scores[0].TotalNll) > 1e-3);

        Assert.Null(result.Rows[1].HessianRatio);
        Assert.All(result.Rows.Where(r => r.Method == "gptq"), r => Assert.InRange(r.HessianRatio!.Value, 0, 1.0 + 1e-6));
        Assert.Contains(progress, p => p.Stage == "quantizing" && p.Run == 3);
        Assert.Equal(5, progress.Max(p => p.Runs));
    }

    [Fact]
    public void Same_inputs_give_the_same_rows()
    {
        using var model = PipelineFixtures.LoadTiny();
        var a = PtqSweep.Run(model, Options("rtn-mse,gptq", [3], [32]), Sets(), Calibration(), CPU);
        var b = PtqSweep.Run(model, Options("rtn-mse,gptq", [3], [32]), Sets(), Calibration(), CPU);
        Assert.Equal(a.Rows.Select(r => r.Scores[1].TotalNll), b.Rows.Select(r => r.Scores[1].TotalNll));
        Assert.Equal("rtn-mse", a.Rows[1].Method);
    }

    [Fact]
    public void Group_sizes_at_or_above_layer_widths_are_skipped_or_marked()
    {
        // tiny-llama widths: 64 (q/k/v/o, gate/up) and 176 (down_proj)
        using var model = PipelineFixtures.LoadTiny();
        var result = PtqSweep.Run(model, Options("rtn", [4], [0, 64, 256, 32]), Sets(), null, CPU);
        Assert.Equal([0, 0, 64, 32], result.Rows.Select(r => r.Group));
        Assert.Contains("g256", Assert.Single(result.Skipped));
        Assert.Equal("g64 ≥ the input width of 12 of 14 layers (per-channel there)", result.Rows[2].WidthNote);
        Assert.Null(result.Rows[3].WidthNote);
    }

    [Fact]
    public void Bad_inputs_fail_before_any_work()
    {
        using var model = PipelineFixtures.LoadTiny();
        Assert.Contains("needs calibration", Assert.Throws<MatqException>(() => PtqSweep.Run(model, Options("gptq", [4], [0]), Sets(), null, CPU)).Message);
        Assert.Contains("athena at 1 bits", Assert.Throws<MatqException>(() => PtqSweep.Run(model, Options("rtn,athena", [4, 1], [0]), Sets(), Calibration(), CPU)).Message);
        Assert.Contains("not known", Assert.Throws<MatqException>(() => PtqMethod.Parse("awq")).Message);
        Assert.Contains("has no option", Assert.Throws<MatqException>(() => PtqSweep.Run(model, Options("rtn:act-order=true", [4], [0]), Sets(), null, CPU)).Message);
    }

    [Fact]
    public void Method_tokens_parse_into_registry_names_and_options()
    {
        var mse = PtqMethod.Parse("rtn-mse");
        Assert.Equal(("rtn-mse", "rtn", "mse"), (mse.Label, mse.Method, mse.Options["clip"]));
        var g = PtqMethod.Parse("GPTQ:act-order=true:percdamp=0.1");
        Assert.Equal("gptq", g.Method);
        Assert.Equal("true", g.Options["act-order"]);
        Assert.Equal("0.1", g.Options["percdamp"]);
        Assert.True(g.NeedsCalibration);
        Assert.Throws<MatqException>(() => PtqMethod.Parse("gptq:act-order"));
    }

    [Fact]
    public void Report_markdown_csv_and_plot_hold_every_row()
    {
        using var model = PipelineFixtures.LoadTiny();
        var sets = Sets();
        var result = PtqSweep.Run(model, Options("rtn,rtn-mse", [4, 2], [0, 32]), sets, null, CPU);
        var md = PtqSweepReport.Markdown(result, sets, "title", ["setting"], "p.png").Split('\n');
        Assert.Equal(result.Rows.Count, md.Count(l => l.StartsWith("| float |", StringComparison.Ordinal) || l.Contains(" | per-channel | ") || l.Contains(" | g32 | ")));
        Assert.Contains(md, l => l.StartsWith("| rtn-mse | 2 | g32 |", StringComparison.Ordinal));
        var csv = PtqSweepReport.Csv(result, sets).TrimEnd().Split('\n');
        Assert.Equal(result.Rows.Count + 1, csv.Length);
        Assert.StartsWith("method,bits,group,a_ppl,a_bits_per_byte", csv[0]);
        // the ×RTN column of plain rtn rows is exactly 1
        Assert.All(PtqSweepReport.Cells(result, sets).Where(c => c[0] == "rtn"), c => Assert.Equal("1.000", c[5]));

        // summary: methods × bits (descending); plain rtn is its own baseline, rtn-mse a geometric mean of its row ratios
        var (methods, bits, ratio) = PtqSweepReport.Summary(result);
        Assert.Equal(["rtn", "rtn-mse"], methods);
        Assert.Equal([4, 2], bits);
        Assert.Equal(1.0, ratio[0, 1]!.Value, 12);
        var mse2 = result.Rows.Where(r => r.Method == "rtn-mse" && r.Bits == 2).SelectMany(r =>
            r.Scores.Select((sc, i) => Math.Log(sc.Perplexity / PtqSweepReport.Baseline(result, r)!.Scores[i].Perplexity))).Average();
        Assert.Equal(Math.Exp(mse2), ratio[1, 1]!.Value, 12);
        Assert.Contains(md, l => l.StartsWith("| rtn-mse | ", StringComparison.Ordinal) && l.Split('|').Length == 5);   // summary row: 2 bit columns

        var png = Path.Combine(HfFixtures.TempDir(), "sweep.png");
        PtqSweepPlot.Save(png, result, sets, "tiny-llama sweep");
        var head = File.ReadAllBytes(png).Take(8).ToArray();
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, head);
        if (Environment.GetEnvironmentVariable("MATQ_KEEP_PLOT") is { } keep) File.Copy(png, keep, overwrite: true);
    }
}
