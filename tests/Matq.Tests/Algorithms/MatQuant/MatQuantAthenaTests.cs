// MatQuant's Athena base on one small layer: its λ-weighted Hessian error beats Athena's 8-bit codes sliced, and at
// R = {8} it is Athena exactly; through the pipeline it emits c-bit codes with trained_bits = R.
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.MatQuant;

public class MatQuantAthenaTests
{
    private static AthenaConfig Athena(int bits = 8) => new(QuantSpec.Grouped(bits, 32), AthenaMode.Athena, blockSize: 16);

    [Fact]
    public void Nested_error_is_below_athena_int8_codes_sliced()
    {
        var w = AthenaTestData.Weights(24, 96, seed: 4);
        var h = AthenaTestData.CorrelatedHessian(96, 400, seed: 5);
        var cfg = new MatQuantConfig([8, 4, 2], [1, 1, 1], 8, MatQuantBase.Athena);
        using var r = MatQuantAthena.Quantize("l", w, h, Athena(), cfg);

        // Athena's own 8-bit codes, sliced and scored independently of MatQuantAthena's bookkeeping
        using var a = AthenaSolver.Quantize("l", w, h, Athena());
        double athenaSliced = 0;
        foreach (var b in new[] { 8, 4, 2 })
        {
            var wr = TensorNestedSlice.Dequantize(TensorNestedSlice.Slice(a.Weights.Codes, 8, b), a.Weights.Scales, a.Weights.Zeros, 32, 8, b);
            athenaSliced += AthenaSolver.HessianError(w - wr, h);
        }
        Assert.Equal(athenaSliced, r.AthenaSlicedError, 1e-6 * athenaSliced);
        Assert.True(r.NestedKept);
        Assert.True(r.NestedError < athenaSliced, $"nested {r.NestedError} vs Athena sliced {athenaSliced}");
        // the reported error is the error of the returned codes
        var own = MatQuantAthena.PerWidthErrors(w, h, r.Codes, r.Scales, r.Zeros, 32, 8, [8, 4, 2]);
        Assert.Equal(own.Sum(), r.NestedError, 1e-6 * r.NestedError);
    }

    [Fact]
    public void At_R_equal_8_it_is_athena_8_bit()
    {
        var w = AthenaTestData.Weights(16, 64, seed: 6);
        var h = AthenaTestData.CorrelatedHessian(64, 300, seed: 7);
        using var r = MatQuantAthena.Quantize("l", w, h, Athena(), new MatQuantConfig([8], [1], 8, MatQuantBase.Athena));
        using var a = AthenaSolver.Quantize("l", w, h, Athena());
        Assert.True(r.Codes.eq(a.Weights.Codes).all().item<bool>());
        Assert.Equal(a.Report.FinalError, r.NestedError, 1e-6 * a.Report.FinalError);
    }

    [Fact]
    public void Pipeline_emits_master_codes_with_trained_bits()
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = new QuantizationConfig("matquant", 8, 32, options: new Dictionary<string, string> { ["base"] = "athena", ["bits"] = "8,4,2" });
        var result = QuantizationRunner.Run(config, new QuantizationContext(model, CPU, () => new CalibrationTokens(AthenaTestData.ZipfWindows(8, 24, seed: 3))));
        Assert.Equal([8, 4, 2], result.TrainedBits);
        Assert.Equal(14, result.Layers.Count);
        Assert.All(result.Layers, l => Assert.True(l.Report.HessianErrorAfter <= l.Report.HessianErrorBefore * (1 + 1e-9)));
        Assert.Contains(result.Layers, l => l.Report.HessianErrorAfter < l.Report.HessianErrorBefore);
    }
}
