// `matq bench efqat` on a tiny CPU ResNet: one row per configuration with finite times and ratios against full QAT;
// CUDA-only switches and bad option values are one line and exit code 1.
namespace Matq.Cli.Tests.Verbs;

public class BenchEfQatVerbTests
{
    [Fact]
    public void Times_full_qat_and_each_fraction_in_one_table()
    {
        var run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--batch", "2", "--iters", "1", "--widths", "4,4,4",
            "--methods", "inject", "--fractions", "1,0.25,0");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Matches(@"│ full QAT \(native autograd\)\s+│ 100 %\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+\s+│ 1\.00x\s+│ 1\.00x", run.Output);
        foreach (var (f, work) in new[] { ("100 %", "100 %"), ("CWPL 25 %", "25 %"), ("0 %", "0 %") })
            Assert.Matches($@"│ EfQAT {f} \(Inject, default\)\s+│ {work}\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+x\s+│ [\d.]+x", run.Output);
        Assert.Contains("cudnn.benchmark n/a (cpu)", run.Output);
    }

    [Fact]
    public void Each_mode_gets_its_rows_and_the_weight_gradient_work_it_selects()
    {
        // MLP 784 → 8 → 8 → 8 → 10: LWPN at 25 % trains ceil(0.25·4) = 1 whole layer; CWPN at 100 % and 0 % are the
        // mode-free rows, run once.
        var run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--arch", "mlp", "--batch", "2", "--iters", "1", "--widths", "8,8,8",
            "--methods", "inject", "--modes", "cwpl,cwpn,lwpn", "--fractions", "1,0.25,0");
        Assert.True(run.ExitCode == 0, run.Output);
        foreach (var mode in new[] { "CWPL", "CWPN", "LWPN" })
            Assert.Matches($@"│ EfQAT {mode} 25 % \(Inject, default\)\s+│ \d+ %", run.Output);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(run.Output, @"│ EfQAT 100 % "));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(run.Output, @"│ EfQAT 0 % "));
        // CWPL's 25 % of each layer's rows: 2 of 8 (three hidden layers) and 3 of 10 — work (2·784 + 2·8 + 2·8 + 3·8) / (8·784 + 8·8 + 8·8 + 10·8)
        double cwpl = (2.0 * 784 + 2 * 8 + 2 * 8 + 3 * 8) / (8.0 * 784 + 8 * 8 + 8 * 8 + 10 * 8);
        Assert.Matches($@"│ EfQAT CWPL 25 % \(Inject, default\)\s+│ {cwpl * 100:F0} %", run.Output);
    }

    [Fact]
    public void Init_times_a_trained_folder_with_its_own_architecture()
    {
        var dir = Directory.CreateTempSubdirectory("matq-bench-efqat-").FullName;
        try
        {
            using (var net = Matq.Models.Vision.VisionNet.Create(new Matq.Models.Vision.VisionNetConfig("mlp", [12, 6])))
                Matq.Models.Vision.VisionNetIO.Save(net, dir);
            var run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--init", dir, "--batch", "2", "--iters", "1",
                "--methods", "inject", "--modes", "lwpn", "--fractions", "1,0.25");
            Assert.True(run.ExitCode == 0, run.Output);
            Assert.Contains("MLP 784/12/6/10", run.Output);
            Assert.Contains("weights of " + dir, run.Output);
            // LWPN 25 % of 3 layers = 1 whole layer: its share of the weight-gradient work is 12·784, 6·12 or 10·6 of 9,540
            Assert.Matches(@"│ EfQAT LWPN 25 % \(Inject, default\)\s+│ (99|1) %", run.Output);

            run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--init", dir, "--widths", "4,4,4", "--iters", "1");
            Assert.Equal(1, run.ExitCode);
            Assert.Contains("--init takes the architecture and widths from the model folder: leave out --arch and --widths", run.Output);
            run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--init", Path.Combine(dir, "missing"), "--iters", "1");
            Assert.Equal(1, run.ExitCode);
            Assert.Contains("is not a matq vision model folder", run.Output);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("--cudnn-benchmark", "on", "--cudnn-benchmark applies to --device cuda only")]
    [InlineData("--cudnn-benchmark", "fast", "--cudnn-benchmark 'fast' is invalid: use on or off")]
    [InlineData("--tf32", "on", "--tf32 applies to --device cuda only")]
    [InlineData("--fractions", "1,2", "--fractions '2' is invalid: each must be in 0..1")]
    [InlineData("--arch", "vit", "--arch 'vit' is not supported: use resnet or mlp")]
    [InlineData("--modes", "cwpl,all", "EfQAT mode 'all' is not supported: allowed cwpl")]
    public void Bad_options_are_one_line_and_exit_code_1(string option, string value, string message)
    {
        var run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--batch", "2", "--iters", "1", "--widths", "4,4,4", option, value);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Output);
        Assert.DoesNotContain("   at ", run.Output);
    }
}
