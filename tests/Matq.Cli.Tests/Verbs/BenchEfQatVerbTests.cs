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
        Assert.Matches(@"│ full QAT \(native autograd\)\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+\s+│ 1\.00x\s+│ 1\.00x", run.Output);
        foreach (var f in new[] { "100 %", "25 %", "0 %" })
            Assert.Matches($@"│ EfQAT CWPL {f} \(Inject, default\)\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+\s+│ [\d.]+x\s+│ [\d.]+x", run.Output);
        Assert.Contains("cudnn.benchmark n/a (cpu)", run.Output);
    }

    [Theory]
    [InlineData("--cudnn-benchmark", "on", "--cudnn-benchmark applies to --device cuda only")]
    [InlineData("--cudnn-benchmark", "fast", "--cudnn-benchmark 'fast' is invalid: use on or off")]
    [InlineData("--tf32", "on", "--tf32 applies to --device cuda only")]
    [InlineData("--fractions", "1,2", "--fractions '2' is invalid: each must be in 0..1")]
    [InlineData("--arch", "vit", "--arch 'vit' is not supported: use resnet or mlp")]
    public void Bad_options_are_one_line_and_exit_code_1(string option, string value, string message)
    {
        var run = CliRunner.Run("bench", "efqat", "--device", "cpu", "--batch", "2", "--iters", "1", "--widths", "4,4,4", option, value);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Output);
        Assert.DoesNotContain("   at ", run.Output);
    }
}
