// The memory-saving paths of block-streamed quantization give bit-identical results to the ones they replace:
// HessianFactorizer.Factor (one [n, n] buffer per step, H + λI built in place) against the reference order
// (h + eye·λ, cholesky, cholesky_inverse, cholesky, transpose), the solver reading the caller's Hessian in place (no copy
// unless dead inputs are fixed) against a solve on a private copy, the caller's Hessian and weight left unchanged, and sliced
// checkpoint reads against whole ones.
using Matq.Algorithms.Athena;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class MemorySavingPathTests
{
    // The factorisation as it was before the in-place version: every temporary a fresh tensor.
    private static Tensor? ReferenceFactor(Tensor h, double lambda)
    {
        long n = h.shape[0];
        var eyeN = eye(n, dtype: ScalarType.Float32);
        var (l, info) = linalg.cholesky_ex(h + eyeN * lambda);
        if (info.item<int>() != 0) return null;
        var (lInv, info2) = linalg.cholesky_ex(cholesky_inverse(l));
        if (info2.item<int>() != 0) return null;
        return lInv.t().contiguous();
    }

    private static byte[] Bits(Tensor t) => t.contiguous().cpu().bytes.ToArray();

    [Theory]
    [InlineData(96, 0.01, 0.5)]
    [InlineData(130, 0.01, 0.9)]
    [InlineData(64, 0.0, 0.3)]
    public void Factor_is_bit_identical_to_the_reference_order(int n, double percDamp, double correlation)
    {
        using var scope = NewDisposeScope();
        var h = AthenaTestData.CorrelatedHessian(n, 4 * n, seed: n, correlation: correlation);
        var before = Bits(h);
        var factor = HessianFactorizer.Factor("l", h, percDamp, maxRetries: 3, deadCount: 0);
        double meanDiag = h.diagonal().mean().item<float>();
        var reference = ReferenceFactor(h, percDamp * meanDiag);
        Assert.NotNull(reference);
        Assert.Equal(0, factor.Retries);
        Assert.Equal(Bits(reference!), Bits(factor.U));
        Assert.Equal(before, Bits(h));   // the input is read, never written
    }

    [Fact]
    public void Factor_after_dampening_retries_is_bit_identical_to_the_reference_at_the_same_lambda()
    {
        // H − 0.05·mean(diag)·I is indefinite: 1% dampening fails, a ten-fold retry factorises
        using var scope = NewDisposeScope();
        var h0 = AthenaTestData.CorrelatedHessian(64, 256, seed: 5);
        var h = h0 - eye(64) * (0.05 * h0.diagonal().mean().item<float>());
        var factor = HessianFactorizer.Factor("l", h, 0.01, maxRetries: 3, deadCount: 0);
        Assert.True(factor.Retries > 0, $"the test Hessian factorised without a retry (retries {factor.Retries})");
        double meanDiag = h.diagonal().mean().item<float>(), p = 0.01;
        for (int k = 0; k < factor.Retries; k++) p *= 10;
        Assert.Null(ReferenceFactor(h, 0.01 * meanDiag));
        var reference = ReferenceFactor(h, p * meanDiag);
        Assert.NotNull(reference);
        Assert.Equal(p * meanDiag, factor.Lambda);
        Assert.Equal(Bits(reference!), Bits(factor.U));
    }

    public static IEnumerable<object[]> Solves() =>
        from mode in new[] { AthenaMode.GptqExact, AthenaMode.Athena }
        from actOrder in new[] { false, true }
        from dead in new[] { 0, 3 }
        select new object[] { mode, actOrder, dead };

    [Theory]
    [MemberData(nameof(Solves))]
    public void Solving_on_the_callers_Hessian_equals_solving_on_a_private_copy_and_leaves_it_unchanged(AthenaMode mode, bool actOrder, int dead)
    {
        using var scope = NewDisposeScope();
        const int rows = 24, cols = 80;
        var w = AthenaTestData.Weights(rows, cols, seed: 7);
        var h = AthenaTestData.CorrelatedHessian(cols, 320, seed: 8);
        if (dead > 0)   // inputs that are always 0: their rows and columns of H are 0
        {
            var mask = ones(cols);
            mask.narrow(0, 10, dead).zero_();
            h = h * mask.unsqueeze(0) * mask.unsqueeze(1);
        }
        var config = new AthenaConfig(QuantSpec.Grouped(3, 16), mode, blockSize: 32, actOrder: actOrder);
        var shared = h.clone();
        var before = Bits(shared);
        var weightBefore = Bits(w);
        using var inPlace = AthenaSolver.Quantize("l", w, shared, config);
        using var copied = AthenaSolver.Quantize("l", w, h.clone(), config);
        Assert.Equal(before, Bits(shared));
        Assert.Equal(weightBefore, Bits(w));   // the weight is read in place (copied only to zero dead columns), never written
        Assert.Equal(Bits(copied.Weights.Codes), Bits(inPlace.Weights.Codes));
        Assert.Equal(Bits(copied.Weights.Scales), Bits(inPlace.Weights.Scales));
        Assert.Equal(Bits(copied.Weights.Zeros), Bits(inPlace.Weights.Zeros));
        Assert.Equal(copied.Report.FinalError, inPlace.Report.FinalError);
        Assert.Equal(dead, inPlace.Report.DeadInputs);
        // and the same factor as the reference order on the dead-fixed, permuted Hessian drives it: GPTQ-exact's codes
        // equal a pass run on the reference U
        if (mode == AthenaMode.GptqExact && !actOrder)
        {
            var hFixed = h.clone();
            var wFixed = w.clone();
            HessianFactorizer.FixDeadInputs(hFixed, wFixed);
            double meanDiag = hFixed.diagonal().mean().item<float>();
            var u = ReferenceFactor(hFixed, config.PercDamp * meanDiag)!;
            var scales = zeros(rows, 5);
            var zerosT = zeros(rows, 5);
            var quantizer = new AffineColumnQuantizer(scales, zerosT, Enumerable.Range(0, cols).Select(c => c / 16).ToArray(), 16, true, config.Spec);
            var codes = GptqColumnPass.Run(wFixed.clone(), u, quantizer, config.BlockSize);
            Assert.Equal(Bits(codes.to(ScalarType.Byte)), Bits(inPlace.Weights.Codes));
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Sliced_checkpoint_reads_equal_whole_reads(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var ckpt = SafetensorsCheckpoint.Open(HfFixtures.Path("tiny-llama"));
        foreach (var name in new[] { "model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight" })
        {
            var shape = ckpt.Get(name).Shape.ToArray();
            var whole = LlamaLoader.ReadTensor(ckpt, name, shape, CPU, dtype);
            // 1000 bytes: many slices and a short last one (no tensor here is a multiple of 250 fp32 values)
            var sliced = LlamaLoader.ReadTensor(ckpt, name, shape, CPU, dtype, sliceBytes: 1000);
            var reference = tensor(ckpt.ReadFloat32(name), shape).to(dtype);
            Assert.Equal(Bits(reference), Bits(whole));
            Assert.Equal(Bits(reference), Bits(sliced));
        }
    }
}
