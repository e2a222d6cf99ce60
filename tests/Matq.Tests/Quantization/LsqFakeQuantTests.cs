// Tests LSQ fake quantization: forward on a hand case, the step gradient against the closed form and against
// a finite difference of the forward, the gradient scale 1/sqrt(N·Qp), and per-channel step reduction.
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public class LsqFakeQuantTests
{
    [Fact]
    public void HandComputedForwardAndGradients()
    {
        using var scope = NewDisposeScope();
        // 3-bit signed: Qn = 4, Qp = 3; s = 0.5; v/s = −6, −0.8, 0.52, 1.8, 10
        Tensor v = tensor(new float[] { -3f, -0.4f, 0.26f, 0.9f, 5f }).requires_grad_(true);
        Tensor s = tensor(0.5f).requires_grad_(true);
        Tensor y = LsqFakeQuant.Apply(v, s, 3);
        Assert.Equal(new float[] { -2f, -0.5f, 0.5f, 1f, 1.5f }, y.detach().data<float>().ToArray());
        y.sum().backward();
        Assert.Equal(new float[] { 0, 1, 1, 1, 0 }, v.grad!.data<float>().ToArray());
        // ∂/∂s: −4 (below), −1 + 0.8, 1 − 0.52, 2 − 1.8, 3 (above) = −0.52; times g = 1/sqrt(5·3)
        Assert.Equal(-0.52 / Math.Sqrt(15), s.grad!.item<float>(), 5);
    }

    [Fact]
    public void StepGradientMatchesClosedFormPerChannel()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(17);
        int rows = 3, cols = 11, bits = 4;
        (int qn, int qp) = LsqFakeQuant.Bounds(bits, signed: true);
        float[] w = TensorQuantTestData.RandomWeights(rng, rows * cols);
        float[] steps = { 0.05f, 0.11f, 0.3f };
        float[] up = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        Tensor v = tensor(w, new long[] { rows, cols }).requires_grad_(true);
        Tensor s = tensor(steps, new long[] { rows, 1 }).requires_grad_(true);
        (LsqFakeQuant.Apply(v, s, bits) * tensor(up, new long[] { rows, cols })).sum().backward();

        float[] gs = s.grad!.data<float>().ToArray();
        float[] gv = v.grad!.data<float>().ToArray();
        double g = 1 / Math.Sqrt(cols * qp);
        for (int r = 0; r < rows; r++)
        {
            double expect = 0;
            for (int c = 0; c < cols; c++)
            {
                int i = r * cols + c;
                float u = w[i] / steps[r];
                double d = u <= -qn ? -qn : u >= qp ? qp : Math.Round(u, MidpointRounding.ToEven) - u;
                expect += up[i] * d;
                Assert.Equal(u > -qn && u < qp ? up[i] : 0f, gv[i]);
            }
            Assert.Equal(expect * g, gs[r], 4);
        }
    }

    [Fact]
    public void StepGradientAgreesWithFiniteDifferenceOfTheForward()
    {
        // d/ds Σ round(clip(v/s))·s = Σ_inside round(v/s) − Σ_below Qn + Σ_above Qp (round is locally constant), and
        // the LSQ gradient is that minus Σ_inside v/s; with gradScale = 1 the two must agree.
        using var scope = NewDisposeScope();
        var rng = new Random(23);
        double[] w = Enumerable.Range(0, 40).Select(_ => rng.NextDouble() * 3 - 1.5).ToArray();
        double s0 = 0.173;
        int bits = 3;
        (int qn, int qp) = LsqFakeQuant.Bounds(bits, signed: true);
        Tensor v = tensor(w, new long[] { 40 }, ScalarType.Float64).requires_grad_(true);
        Tensor s = tensor(s0, ScalarType.Float64).requires_grad_(true);
        LsqFakeQuant.Apply(v, s, bits, gradScale: 1.0).sum().backward();

        double F(double step)
        {
            using var inner = NewDisposeScope();
            using var noGrad = no_grad();
            return LsqFakeQuant.Apply(tensor(w, new long[] { 40 }, ScalarType.Float64), tensor(step, ScalarType.Float64), bits).sum().item<double>();
        }
        const double h = 1e-7;
        double fd = (F(s0 + h) - F(s0 - h)) / (2 * h);
        double insideU = w.Select(x => x / s0).Where(u => u > -qn && u < qp).Sum();
        Assert.Equal(fd - insideU, s.grad!.item<double>(), 6);
    }

    [Fact]
    public void CodesUseTheUnsignedOffsetForm()
    {
        using var scope = NewDisposeScope();
        Tensor v = tensor(new float[] { -3f, -0.4f, 0.26f, 0.9f, 5f });
        Assert.Equal(new byte[] { 0, 3, 5, 6, 7 }, LsqFakeQuant.Codes(v, tensor(0.5f), 3).data<byte>().ToArray());
        Assert.Equal((0, 7), LsqFakeQuant.Bounds(3, signed: false));
        Assert.Throws<MatqException>(() => LsqFakeQuant.Bounds(1, signed: true));
        Assert.Throws<MatqException>(() => LsqFakeQuant.Bounds(9, signed: false));
    }

    [Fact]
    public void InitialStepIsTwiceMeanAbsOverSqrtQp()
    {
        using var scope = NewDisposeScope();
        Tensor v = tensor(new float[] { -1, 2, -3, 4 });
        Assert.Equal(2 * 2.5 / Math.Sqrt(7), LsqFakeQuant.InitialStep(v, 4).item<float>(), 5);
    }
}
