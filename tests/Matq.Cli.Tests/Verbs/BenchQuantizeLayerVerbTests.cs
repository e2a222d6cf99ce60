// `matq bench quantize-layer --weight W --inputs X`: quantizes a given layer with the given calibration inputs and prints
// each algorithm's Hessian-weighted error, equal to the solver's own on H = 2XᵀX/N; file mistakes are one line, exit 1.
using System.Globalization;
using System.Text.RegularExpressions;
using Matq.Algorithms.Athena;
using Matq.Calibration;
using Matq.Formats.Safetensors;
using Matq.Kernels.Quantization;
using static TorchSharp.torch;

namespace Matq.Cli.Tests.Verbs;

public class BenchQuantizeLayerVerbTests
{
    private static (float[] W, float[] X) Layer(int rows, int cols, int tokens)
    {
        var rng = new Random(5);
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.1f).ToArray();
        // a few loud input channels, as in LLM activations
        var x = Enumerable.Range(0, tokens * cols).Select(i => (float)(rng.NextDouble() - 0.5) * (i % cols % 7 == 0 ? 8f : 1f)).ToArray();
        return (w, x);
    }

    [Fact]
    public void Prints_the_solvers_hessian_weighted_error_of_a_given_layer()
    {
        const int rows = 8, cols = 96, tokens = 300;
        var dir = Directory.CreateTempSubdirectory("matq-bench-layer-").FullName;
        try
        {
            var (w, x) = Layer(rows, cols, tokens);
            string wPath = Path.Combine(dir, "w.safetensors"), xPath = Path.Combine(dir, "x.safetensors");
            new SafetensorsWriter().AddFloat32("weight", [rows, cols], w).Write(wPath);
            new SafetensorsWriter().AddFloat32("inputs", [3, 100, cols], x).Write(xPath);
            var run = CliRunner.Run("bench", "quantize-layer", "--device", "cpu", "--weight", wPath, "--inputs", xPath,
                "--bits", "2", "--group", "32", "--block", "64", "--algorithms", "rtn,gptq");
            Assert.True(run.ExitCode == 0, run.Output);

            using var scope = NewDisposeScope();
            using var acc = new HessianAccumulator("x", cols);
            acc.Add(tensor(x, [tokens, cols]));
            using var solved = AthenaSolver.Quantize("l", tensor(w, [rows, cols]), acc.Hessian, new AthenaConfig(QuantSpec.Grouped(2, 32), AthenaMode.GptqExact, blockSize: 64));
            var m = Regex.Match(run.Output, @"w\.safetensors gptq: H-error (\S+), ‖ΔW Xᵀ‖² (\S+)");
            Assert.True(m.Success, run.Output);
            double printed = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            double output = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            Assert.Equal(solved.Report.FinalError, printed, 1e-9 * solved.Report.FinalError);
            Assert.Equal(printed * tokens / 2, output, 1e-9 * output);
            Assert.Contains("N = 300 input rows", run.Output);
            Assert.Matches(@"w\.safetensors rtn: H-error \S+", run.Output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void File_mistakes_are_one_line()
    {
        var dir = Directory.CreateTempSubdirectory("matq-bench-layer-").FullName;
        try
        {
            var (w, x) = Layer(4, 16, 10);
            string wPath = Path.Combine(dir, "w.safetensors"), xPath = Path.Combine(dir, "x.safetensors"), two = Path.Combine(dir, "two.safetensors");
            new SafetensorsWriter().AddFloat32("weight", [4, 16], w).Write(wPath);
            new SafetensorsWriter().AddFloat32("inputs", [10, 16], x).Write(xPath);
            new SafetensorsWriter().AddFloat32("a", [4, 16], w).AddFloat32("b", [4, 16], w).Write(two);
            new SafetensorsWriter().AddFloat32("inputs", [16, 10], x).Write(Path.Combine(dir, "xt.safetensors"));
            foreach (var (args, message) in new (string[], string)[]
            {
                (["--weight", wPath], "--weight needs --inputs"),
                (["--inputs", xPath], "--inputs needs --weight"),
                (["--weight", two, "--inputs", xPath], "holds 2 tensors; give a file with exactly one"),
                (["--weight", xPath.Replace("x.", "missing."), "--inputs", xPath], "does not exist"),
                (["--weight", wPath, "--inputs", Path.Combine(dir, "xt.safetensors")], "the layer has 16 inputs, so it must be [..., 16]"),
                (["--weight", wPath, "--inputs", xPath, "--group-grid", "late"], "--group-grid 'late' is not a group-grid rule"),
            })
            {
                var run = CliRunner.Run(["bench", "quantize-layer", "--device", "cpu", "--group", "8", .. args]);
                Assert.True(run.ExitCode == 1, run.Output);
                Assert.Contains(message, run.Output);
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
