// MatQuant-Athena's nested column pass a block at a time (NestedBlockPass, the default) against the eager per-column
// pass it replaces: the same codes but for near-ties (ATen's CPU ops may fuse a multiply-add where the kernel rounds
// twice, so fed-back values can differ in the last bit and flip an argmin), the same consumed weights to float precision,
// the same per-width Hessian errors; over groups inside and across blocks, a short last block, rows not a multiple of
// the 8-row lanes, λ ≠ 1, a width with λ = 0, extra precision and per-channel grids.
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using Matq.Tests.Algorithms.Athena;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.MatQuant;

public class NestedBlockPassTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // rows, n, group, block, bits, lambda, extra
        new object[] { 19, 96, 16, 32, "8,4,2", "1,1,1", false },
        new object[] { 8, 100, 64, 24, "8,4,2", "0.1,0.1,1", false },   // a group spans blocks; short last block and group
        new object[] { 21, 64, 32, 16, "8,4,2", "1,0,1", false },       // a width with λ = 0 is left out
        new object[] { 11, 48, 16, 16, "8,4,2", "1,1,1", true },        // extra precision
        new object[] { 9, 40, 40, 128, "8,2", "1,2", false },           // per channel, one block
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Block_pass_gives_the_eager_pass_codes(int rows, int n, int g, int block, string bits, string lambda, bool extra)
    {
        using var scope = NewDisposeScope();
        var config = new MatQuantConfig(bits.Split(',').Select(int.Parse).ToArray(),
            lambda.Split(',').Select(x => double.Parse(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray(), 8,
            MatQuantBase.Athena, extraPrecision: extra);
        var spec = QuantSpec.Grouped(8, g);
        var w = AthenaTestData.Weights(rows, n, seed: rows + n);
        var h = AthenaTestData.CorrelatedHessian(n, 4 * n, seed: n);
        var u = HessianFactorizer.Factor("t", h.clone(), 0.01, 3, 0).U;
        var (s, z) = TensorAffineQuantizer.ComputeParams(w, spec);

        (Tensor Codes, Tensor W) Pass(bool eager)
        {
            Tensor wCopy = w.clone();
            return (GptqColumnPass.Run(wCopy, u, new NestedColumnQuantizer(s, z, g, config), block, eager), wCopy);
        }
        var eagerResult = Pass(eager: true);
        var blockResult = Pass(eager: false);
        long differing = blockResult.Codes.ne(eagerResult.Codes).sum().item<long>();
        Assert.True(differing <= Math.Max(1, rows * n / 200), $"codes differ in {differing} of {rows * n}");
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.W, eagerResult.W) < 1e-4, "the consumed weights differ");
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.W, w) > 1e-4, "the feedback moved the weights");
        var eagerErr = MatQuantAthena.PerWidthErrors(w, h, eagerResult.Codes.to(ScalarType.Byte), s, z, g, 8, config.Bits, extra);
        var blockErr = MatQuantAthena.PerWidthErrors(w, h, blockResult.Codes.to(ScalarType.Byte), s, z, g, 8, config.Bits, extra);
        for (int i = 0; i < eagerErr.Length; i++)
            Assert.True(Math.Abs(blockErr[i] - eagerErr[i]) <= 1e-3 * eagerErr[i] + 1e-9, $"int{config.Bits[i]}: {blockErr[i]} vs {eagerErr[i]}");
    }
}
