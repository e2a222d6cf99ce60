// The per-layer solver against closed-form cases: H = I (GPTQ ≡ RTN), correlated inputs (GPTQ < RTN), Athena ≤ GPTQ,
// act-order with static groups, dead inputs, dampening retries, non-finite inputs, row blocks.
using Matq.Algorithms.Athena;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class AthenaSolverTests
{
    private static AthenaConfig Gptq(QuantSpec spec, int blockSize = 128, bool actOrder = false) =>
        new(spec, AthenaMode.GptqExact, blockSize: blockSize, actOrder: actOrder);

    public static IEnumerable<object[]> Specs() => new[]
    {
        new object[] { 3, Granularity.PerChannel, 0, QuantScheme.Asymmetric },
        new object[] { 4, Granularity.Group, 16, QuantScheme.Asymmetric },
        new object[] { 2, Granularity.Group, 24, QuantScheme.Asymmetric },   // 24 does not divide 64: short last group
        new object[] { 3, Granularity.Group, 16, QuantScheme.Symmetric },
        new object[] { 4, Granularity.PerTensor, 0, QuantScheme.Asymmetric },
    };

    [Theory]
    [MemberData(nameof(Specs))]
    public void IdentityHessianMakesGptqEqualRtn(int bits, Granularity gran, int g, QuantScheme scheme)
    {
        using var scope = NewDisposeScope();
        var spec = new QuantSpec(bits, gran, g, scheme);
        var w = AthenaTestData.Weights(12, 64, seed: 3);
        foreach (bool actOrder in new[] { false, true })
        {
            // blockSize 16 < 64 exercises the lazy block updates; with H = I they must all be zero
            using var result = AthenaSolver.Quantize("l", w, eye(64), Gptq(spec, blockSize: 16, actOrder: actOrder));
            using var rtn = TensorAffineQuantizer.Quantize(w, spec);
            Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(result.Weights.Codes, rtn.Codes));
            Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(result.Weights.Scales, rtn.Scales));
            Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(result.Weights.Zeros, rtn.Zeros));
            Assert.Equal(result.Report.RtnError, result.Report.FinalError, 9);
        }
    }

    [Fact]
    public void ActOrderWithUnequalDiagonalStillEqualsRtnWithoutCorrelation()
    {
        // diagonal H: no error propagation, but act-order permutes strongly; static groups must land on the right columns
        using var scope = NewDisposeScope();
        var spec = QuantSpec.Grouped(3, 8);
        var w = AthenaTestData.Weights(10, 40, seed: 5);
        var h = diag(rand(40, generator: new TorchSharp.torch.Generator(9)) * 10 + 0.1);
        using var result = AthenaSolver.Quantize("l", w, h, Gptq(spec, blockSize: 8, actOrder: true));
        using var rtn = TensorAffineQuantizer.Quantize(w, spec);
        Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(result.Weights.Codes, rtn.Codes));
        Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(result.Dequantize(), rtn.Dequantize()));
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void CorrelatedInputsMakeGptqBeatRtn(int bits, Granularity gran, int g, QuantScheme scheme)
    {
        using var scope = NewDisposeScope();
        var spec = new QuantSpec(bits, gran, g, scheme);
        var w = AthenaTestData.Weights(32, 64, seed: 11);
        var h = AthenaTestData.CorrelatedHessian(64, 512, seed: 11);
        foreach (bool actOrder in new[] { false, true })
        {
            using var result = AthenaSolver.Quantize("l", w, h, Gptq(spec, blockSize: 16, actOrder: actOrder));
            var r = result.Report;
            Assert.True(r.FinalError < 0.9 * r.RtnError, $"actOrder={actOrder}: GPTQ {r.FinalError:G4} vs RTN {r.RtnError:G4}");
            // the report's error is the error of what the result dequantizes to
            double own = AthenaSolver.HessianError(w - result.Dequantize(), h);
            Assert.Equal(1.0, own / r.FinalError, 4);
            Assert.Equal(r.RtnError, AthenaSolver.HessianError(w - TensorAffineQuantizer.Quantize(w, spec).Dequantize(), h), 6);
        }
    }

    [Fact]
    public void AthenaIsNeverWorseThanGptqAndUsuallyBetter()
    {
        int improved = 0, cases = 0;
        foreach (int seed in new[] { 1, 2, 3 })
            foreach (int bits in new[] { 2, 3, 4 })
                foreach (var spec in new[] { QuantSpec.PerChannel(bits), QuantSpec.Grouped(bits, 16), QuantSpec.Grouped(bits, 32, QuantScheme.Symmetric) })
                    foreach (bool actOrder in new[] { false, true })
                    {
                        using var scope = NewDisposeScope();
                        var w = AthenaTestData.Weights(24, 64, seed);
                        var h = AthenaTestData.CorrelatedHessian(64, 256, seed);
                        using var gptq = AthenaSolver.Quantize("l", w, h, Gptq(spec, blockSize: 32, actOrder: actOrder));
                        using var athena = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, AthenaMode.Athena, blockSize: 32, actOrder: actOrder, sweeps: 3));
                        double eg = AthenaSolver.HessianError(w - gptq.Dequantize(), h);
                        double ea = AthenaSolver.HessianError(w - athena.Dequantize(), h);
                        Assert.True(ea <= eg, $"seed {seed}, {spec}, actOrder {actOrder}: Athena {ea:G6} > GPTQ {eg:G6}");
                        Assert.Equal(gptq.Report.FinalError, athena.Report.GptqError);
                        Assert.True(athena.Report.FinalError <= athena.Report.GptqError);
                        Assert.InRange(athena.Weights.Codes.max().item<byte>(), 0, spec.QMax);
                        cases++;
                        if (ea < 0.99 * eg) improved++;
                    }
        // the sweeps must actually do something on most layers
        Assert.True(improved * 2 > cases, $"Athena improved on only {improved} of {cases} layers");
    }

    [Fact]
    public void DeadInputsGetZeroWeights()
    {
        using var scope = NewDisposeScope();
        var h = AthenaTestData.CorrelatedHessian(32, 256, seed: 4);
        var alive = ones(32);
        alive[3] = tensor(0f);
        alive[17] = tensor(0f);
        h = h * alive.unsqueeze(0) * alive.unsqueeze(1);                     // inputs 3 and 17 are always 0
        var w = AthenaTestData.Weights(8, 32, seed: 4);
        foreach (var mode in new[] { AthenaMode.GptqExact, AthenaMode.Athena })
        {
            using var result = AthenaSolver.Quantize("l", w, h, new AthenaConfig(QuantSpec.Grouped(3, 8), mode, blockSize: 8));
            var wHat = result.Dequantize();
            Assert.Equal(2, result.Report.DeadInputs);
            Assert.True(wHat.isfinite().all().item<bool>());
            Assert.Equal(0.0, wHat[.., 3].abs().max().item<float>());
            Assert.Equal(0.0, wHat[.., 17].abs().max().item<float>());
            Assert.True(result.Report.FinalError < result.Report.RtnError);
        }
    }

    [Fact]
    public void IndefiniteHessianRetriesWithMoreDampeningThenFailsNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        var w = tensor(new float[] { 0.3f, -0.7f, 1.1f, 0.2f, -0.4f, 0.9f }, new long[] { 3, 2 });
        // eigenvalues 2.05 and −0.05: 0.01·mean(diag) leaves it indefinite, 0.1 fixes it
        var h = tensor(new float[] { 1f, 1.05f, 1.05f, 1f }, new long[] { 2, 2 });
        using var result = AthenaSolver.Quantize("model.layers.0.mlp.up_proj", w, h, new AthenaConfig(QuantSpec.PerChannel(4), AthenaMode.GptqExact));
        Assert.Equal(1, result.Report.DampRetries);
        Assert.Equal(0.1, result.Report.PercDampUsed, 9);

        // eigenvalue −29: even 10·mean(diag) (3 retries) cannot fix it
        var bad = tensor(new float[] { 1f, 30f, 30f, 1f }, new long[] { 2, 2 });
        var e = Assert.Throws<MatqException>(() => AthenaSolver.Quantize("model.layers.0.mlp.up_proj", w, bad, new AthenaConfig(QuantSpec.PerChannel(4))));
        Assert.Contains("model.layers.0.mlp.up_proj", e.Message);
        Assert.Contains("not positive definite", e.Message);
    }

    [Fact]
    public void NonFiniteWeightsOrHessianFailNamingTheLayer()
    {
        using var scope = NewDisposeScope();
        var w = AthenaTestData.Weights(4, 8, seed: 2);
        var h = AthenaTestData.CorrelatedHessian(8, 64, seed: 2);
        var wNan = w.clone();
        wNan[1, 2] = tensor(float.NaN);
        var e = Assert.Throws<MatqException>(() => AthenaSolver.Quantize("model.layers.1.self_attn.q_proj", wNan, h, new AthenaConfig(QuantSpec.PerChannel(4))));
        Assert.Contains("model.layers.1.self_attn.q_proj", e.Message);
        var hInf = h.clone();
        hInf[0, 0] = tensor(float.PositiveInfinity);
        e = Assert.Throws<MatqException>(() => AthenaSolver.Quantize("model.layers.1.self_attn.k_proj", w, hInf, new AthenaConfig(QuantSpec.PerChannel(4))));
        Assert.Contains("model.layers.1.self_attn.k_proj", e.Message);
        Assert.Throws<MatqException>(() => AthenaSolver.Quantize("x", w, eye(7), new AthenaConfig(QuantSpec.PerChannel(4))));
    }

    [Theory]
    [InlineData(AthenaMode.Athena, false)]
    [InlineData(AthenaMode.GptqExact, false)]
    [InlineData(AthenaMode.GptqExact, true)]
    public void RowBlocksGiveTheSameResult(AthenaMode mode, bool actOrder)
    {
        using var scope = NewDisposeScope();
        var spec = QuantSpec.Grouped(3, 16);
        var w = AthenaTestData.Weights(20, 48, seed: 8);
        var h = AthenaTestData.CorrelatedHessian(48, 256, seed: 8);
        using var whole = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, mode, blockSize: 16, actOrder: actOrder));
        using var blocks = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, mode, blockSize: 16, actOrder: actOrder, rowBlockSize: 7));
        Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(whole.Weights.Codes, blocks.Weights.Codes));
        // rows are independent in exact arithmetic; BLAS may round a matmul over 7 rows differently from one over 20
        Assert.True(AthenaTestData.MaxAbsDiff(whole.Weights.Scales, blocks.Weights.Scales) < 1e-5);
        Assert.Equal(0.0, AthenaTestData.MaxAbsDiff(whole.Weights.Zeros, blocks.Weights.Zeros));
    }

    [Fact]
    public void ConfigRejectsOutOfRangeValues()
    {
        Assert.Contains("percDamp", Assert.Throws<MatqException>(() => new AthenaConfig(QuantSpec.PerChannel(4), percDamp: -1)).Message);
        Assert.Contains("blockSize", Assert.Throws<MatqException>(() => new AthenaConfig(QuantSpec.PerChannel(4), blockSize: 0)).Message);
        Assert.Contains("sweeps", Assert.Throws<MatqException>(() => new AthenaConfig(QuantSpec.PerChannel(4), sweeps: 99)).Message);
        Assert.Contains("bits", Assert.Throws<MatqException>(() => new AthenaConfig(QuantSpec.PerChannel(1))).Message);
    }
}
