// GptqColumnPass with swappable column quantizers: MatQuant's nested rule at R = {c} is the affine rule exactly (codes
// and feedback), and the lazy-batch blocking hands a quantizer the same columns as the unblocked pass.
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class GptqColumnPassTests
{
    private static Tensor UpperFactor(int n, int seed) =>
        HessianFactorizer.Factor("t", AthenaTestData.CorrelatedHessian(n, 4 * n, seed), 0.01, 3, 0).U;   // [n, n]

    [Theory]
    [InlineData(12, 40, 8, 7)]
    [InlineData(5, 64, 32, 128)]
    public void NestedRuleAtTheMasterWidthIsTheAffineRule(int rows, int n, int g, int blockSize)
    {
        using var scope = NewDisposeScope();
        var w = AthenaTestData.Weights(rows, n, seed: n);
        var u = UpperFactor(n, seed: rows);
        var spec = QuantSpec.Grouped(8, g);
        var (scales, zeros) = TensorAffineQuantizer.ComputeParams(w, spec);                       // fixed grid [rows, nG]
        int[] groupOf = Enumerable.Range(0, n).Select(c => c / g).ToArray();

        var nestedRule = new NestedColumnQuantizer(scales, zeros, g, new MatQuantConfig([8], [1], 8, MatQuantBase.Athena));
        Tensor affine = null!;
        // both per column (ATen's ops), then both a block per kernel call (GptqBlockKernel, GptqNestedBlockKernel)
        foreach (bool eager in new[] { true, false })
        {
            Tensor wAffine = w.clone(), wNested = w.clone();
            affine = GptqColumnPass.Run(wAffine, u, new AffineColumnQuantizer(scales, zeros, groupOf, g, dynamic: false, spec), blockSize, eager);
            var nested = GptqColumnPass.Run(wNested, u, nestedRule, blockSize, eager);
            Assert.True(affine.eq(nested).all().item<bool>(), $"codes differ (eager: {eager})");
            Assert.True(wAffine.eq(wNested).all().item<bool>(), $"the fed-back errors differ (eager: {eager})");
        }
        // the feedback moved codes away from round-to-nearest, so the comparison above is not between two RTN results
        var rtn = TensorAffineQuantizer.Quantize(w, scales, zeros, g, 8);
        Assert.False(rtn.to(ScalarType.Float32).eq(affine).all().item<bool>());
    }

    /// <summary>A rule without rounding (code = ŵ = w/2, residual w/2) that records the columns BeginColumn offers at
    /// every 4th column, so blocked and unblocked passes can be compared without rounding boundaries.</summary>
    private sealed class HalvingQuantizer : ColumnQuantizer
    {
        public Dictionary<int, float[]> Offered { get; } = new();

        public override void BeginColumn(int c, PassColumns columns)
        {
            if (c % 4 == 0) Offered[c] = columns.Current(4).contiguous().data<float>().ToArray();
        }

        public override Tensor Quantize(int c, Tensor wj, Tensor codes)
        {
            codes.copy_(wj.mul(0.5));
            return wj.mul(0.5);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(10)]
    public void LazyBatchesGiveTheQuantizerTheUnblockedColumns(int blockSize)
    {
        using var scope = NewDisposeScope();
        const int rows = 6, n = 24;
        var w = AthenaTestData.Weights(rows, n, seed: 11);
        var u = UpperFactor(n, seed: 12);
        var reference = new HalvingQuantizer();
        Tensor wRef = w.clone(), wBlocked = w.clone();
        var codesRef = GptqColumnPass.Run(wRef, u, reference, blockSize: n);
        var blocked = new HalvingQuantizer();
        var codes = GptqColumnPass.Run(wBlocked, u, blocked, blockSize);

        Assert.True(AthenaTestData.MaxAbsDiff(codes, codesRef) < 1e-4, "codes differ");
        Assert.True(AthenaTestData.MaxAbsDiff(wBlocked, wRef) < 1e-4, "final weights differ");
        Assert.Equal(reference.Offered.Keys.Order(), blocked.Offered.Keys.Order());
        foreach (var (c, expected) in reference.Offered)
        {
            double diff = expected.Zip(blocked.Offered[c], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(diff < 1e-4, $"column {c}: offered columns differ by {diff:E2}");
        }
        // the feedback changed the columns: the offered values are not the original weights
        Assert.True(AthenaTestData.MaxAbsDiff(codesRef, w * 0.5) > 1e-2);
    }
}
