// The block-at-a-time column pass (AffineBlockPass, the default) against the eager per-column pass it replaces: the same
// codes but for rounding ties (ATen's CPU kernels may fuse a multiply-add where the block pass rounds twice, so the fed-back
// values can differ in the last bit), the same grids and consumed weights to float precision, over the shapes that stress it (rows not a multiple of the 8-row
// lanes, a short last block, groups smaller and larger than the block, per-channel, per-tensor, act-order with static
// groups, fixed grids as Athena's re-quantize uses), and the same solver results end to end.
using Matq.Algorithms.Athena;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class AffineBlockPassTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // rows, n, bits, granularity, group, block, act-order (static groups)
        new object[] { 19, 96, 4, Granularity.Group, 16, 32, false },     // groups inside a block; 19 rows: 2 lanes + 3 scalar rows
        new object[] { 8, 100, 2, Granularity.Group, 64, 24, false },     // a group spans blocks; short last block and group
        new object[] { 33, 70, 3, Granularity.PerChannel, 0, 16, false },
        new object[] { 5, 40, 4, Granularity.PerTensor, 0, 16, false },
        new object[] { 17, 64, 2, Granularity.Group, 16, 16, true },      // act-order: fixed grid, permuted groups
        new object[] { 9, 48, 8, Granularity.Group, 16, 1, false },       // B = 1: no in-block feedback
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BlockPassGivesTheEagerPassCodes(int rows, int n, int bits, Granularity gran, int g, int block, bool actOrder)
    {
        using var scope = NewDisposeScope();
        var spec = new QuantSpec(bits, gran, g, QuantScheme.Asymmetric);
        var w = AthenaTestData.Weights(rows, n, seed: rows + n);
        var u = HessianFactorizer.Factor("t", AthenaTestData.CorrelatedHessian(n, 4 * n, seed: n), 0.01, 3, 0).U;   // [n, n]
        int ge = spec.EffectiveGroupSize(n);
        int[] order = actOrder ? Enumerable.Range(0, n).Reverse().ToArray() : Enumerable.Range(0, n).ToArray();
        int[] groupOf = order.Select(c => gran == Granularity.PerTensor ? 0 : c / ge).ToArray();
        bool dynamic = !actOrder && gran != Granularity.PerTensor;

        (Tensor Codes, Tensor W, Tensor Scales) Pass(bool eager)
        {
            var (s, z) = TensorAffineQuantizer.ComputeParams(w, spec);
            if (dynamic) { s.zero_(); z.zero_(); }
            var quantizer = new AffineColumnQuantizer(s, z, groupOf, ge, dynamic, spec);
            Tensor wCopy = w.clone();
            return (GptqColumnPass.Run(wCopy, u, quantizer, block, eager), wCopy, s);
        }

        var eagerResult = Pass(eager: true);
        var blockResult = Pass(eager: false);
        long differing = blockResult.Codes.ne(eagerResult.Codes).sum().item<long>();
        Assert.True(differing <= rows * n / 200, $"codes differ in {differing} of {rows * n}");
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.Codes, eagerResult.Codes) <= 1, "a code differs by more than one step");
        double scaleTol = 1e-5 * eagerResult.Scales.abs().max().item<float>();
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.Scales, eagerResult.Scales) <= scaleTol, "grids differ");
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.W, eagerResult.W) < 1e-4, "the consumed weights differ");
        // the feedback moved the weights: the consumed W is not the input
        Assert.True(AthenaTestData.MaxAbsDiff(blockResult.W, w) > 1e-4);
    }

    [Theory]
    [InlineData(AthenaMode.GptqExact, 16)]
    [InlineData(AthenaMode.Athena, 16)]
    [InlineData(AthenaMode.GptqExact, 0)]
    public void SolverResultsDoNotDependOnTheColumnPassEngine(AthenaMode mode, int g)
    {
        using var scope = NewDisposeScope();
        var spec = g == 0 ? QuantSpec.PerChannel(3) : QuantSpec.Grouped(3, g);
        var w = AthenaTestData.Weights(24, 80, seed: 5);
        var h = AthenaTestData.CorrelatedHessian(80, 320, seed: 6);
        var config = new AthenaConfig(spec, mode, blockSize: 32);
        using var block = AthenaSolver.Quantize("l", w, h, config);
        using var eager = AthenaSolver.Quantize("l", w, h, config with { ColumnPass = ColumnPassEngine.Eager });
        long differing = block.Weights.Codes.ne(eager.Weights.Codes).sum().item<long>();
        Assert.True(differing <= 24 * 80 / 200, $"codes differ in {differing} of {24 * 80}");
        Assert.True(Math.Abs(block.Report.FinalError - eager.Report.FinalError) <= 1e-3 * eager.Report.FinalError,
            $"H-error {block.Report.FinalError:G6} (block) vs {eager.Report.FinalError:G6} (eager)");
        Assert.True(block.Report.FinalError < block.Report.RtnError);
    }

    [Fact]
    public void TheColumnPassOptionIsReadAndGptqExactKeepsIt()
    {
        var config = new AthenaConfig(QuantSpec.Grouped(4, 128)) { ColumnPass = ColumnPassEngine.Eager };
        Assert.Equal(ColumnPassEngine.Eager, config.AsGptqExact().ColumnPass);
        Assert.Equal(ColumnPassEngine.Block, new AthenaConfig(QuantSpec.Grouped(4, 128)).ColumnPass);
    }
}

public class CudaModuleTests
{
    [Fact]
    public unsafe void PointerIsTheAddressOfAViewsFirstElement()
    {
        using var scope = NewDisposeScope();
        var t = arange(0, 24, dtype: ScalarType.Float32).reshape(4, 6);
        var view = t.narrow(0, 1, 2).narrow(1, 3, 2);                                  // [[9, 10], [15, 16]]
        IntPtr p = Matq.Runtime.Cuda.CudaModule.Pointer<float>(view);
        Assert.Equal(Matq.Runtime.Cuda.CudaModule.Pointer<float>(t) + 9 * sizeof(float), p);
        Assert.Equal(9f, *(float*)p);
        Assert.Equal(16f, ((float*)p)[6 + 1]);                                         // row stride 6
    }

    [Fact]
    public void WithoutACudaDriverTheBlockPassSaysItFallsBackAndWhy()
    {
        // On the CPU machines (CI) there is no libcuda.so.1: the CUDA pass must report the eager fallback with the
        // reason rather than throw; where a driver exists, the kernel must have passed its self-check.
        string line = AffineBlockPass.Describe(new Device(DeviceType.CUDA, 0));
        bool driver = System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so.1", out _);
        if (driver && cuda.is_available()) Assert.Contains("checked bit-identical", line);
        else Assert.StartsWith("column pass: eager TorchSharp ops per column (CUDA kernel unavailable: ", line);
    }

    [Fact]
    public void HostCopyGivesTheValuesInRowMajorOrderForAnyStrides()
    {
        using var scope = NewDisposeScope();
        var t = arange(0, 24, dtype: ScalarType.Float32).reshape(4, 6);
        Assert.Equal(t.data<float>().ToArray(), Matq.Runtime.Cuda.HostCopy.ToArray<float>(t));
        var transposed = t.t();                                                         // not contiguous
        Assert.Equal(transposed.contiguous().data<float>().ToArray(), Matq.Runtime.Cuda.HostCopy.ToArray<float>(transposed));
        var bytes = t.to(ScalarType.Byte).narrow(1, 2, 3);
        Assert.Equal(new byte[] { 2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22 }, Matq.Runtime.Cuda.HostCopy.ToArray<byte>(bytes));
        Assert.Empty(Matq.Runtime.Cuda.HostCopy.ToArray<float>(empty(0, 3)));
        Assert.Equal(24, t.numel());                                                    // the source is left alive
    }
}
