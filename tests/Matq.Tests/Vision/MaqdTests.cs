// Tests MaQD: weights take exactly N distinct levels per layer (codes −k..k, W_eff = codes·Δ), activations exactly the
// M levels 0..M−1 (scaled), the surrogate gradients (ste: 1 inside the clip range, 0 outside; smooth: equal to central
// finite differences of the scalar smooth staircase, and the staircase tends to round-clip as the width shrinks), the
// Gaussian-optimal clip against the known ternary quantizer, invalid settings → MatqException, Convert/fold codes, and
// the end layers (first conv, classifier; found by EndLayers, not by registration order) at their own weight states.
using Matq.Algorithms.MaQD;
using Matq.Kernels.Quantization;
using Matq.Models.Vision;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Vision;

public class MaqdTests
{
    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(15)]
    [InlineData(255)]
    public void WeightsTakeExactlyNLevels(int states)
    {
        using var scope = NewDisposeScope();
        manual_seed(states);
        var alg = new MaqdAlgorithm(new MaqdConfig(states, 15));
        var conv = new QLinear("l", 4096, 64);                          // 262,144 weights
        // Laplace weights: tails heavy enough that even the outer levels of 255 states (≈ ±4σ) are hit
        using (no_grad())
        {
            Tensor u = rand(conv.Weight.shape).sub(0.5);
            conv.Weight.copy_(u.sign().neg().mul(u.abs().mul(2).neg().add(1).clamp_min(1e-7).log()));
        }
        conv.WeightQuantizer = alg.QuantizeWeight;
        Tensor w = conv.EffectiveWeight().detach();
        double step = alg.Step(conv);
        Tensor codes = w.div(step);
        Assert.True(codes.sub(codes.round()).abs().max().item<float>() < 1e-3, "W_eff is an integer multiple of Δ");
        var distinct = codes.round().to(ScalarType.Int32).data<int>().ToArray().Distinct().Order().ToArray();
        int k = (states - 1) / 2;
        Assert.Equal(Enumerable.Range(-k, states).ToArray(), distinct);
        // Convert returns the same codes as int8
        var direct = alg.WeightCodes(conv.Weight);
        Assert.Equal(ScalarType.Int8, direct.dtype);
        Assert.True(direct.to(ScalarType.Float32).allclose(codes.round()));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(15)]
    [InlineData(256)]
    public void ActivationsTakeExactlyMLevels(int states)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var alg = new MaqdAlgorithm(new MaqdConfig(3, states));
        Tensor x = randn(200_000).mul(3);
        Tensor a = alg.QuantizeActivation(x).mul(alg.ActScale).round();
        var levels = a.to(ScalarType.Int32).data<int>().ToArray().Distinct().Order().ToArray();
        Assert.Equal(Enumerable.Range(0, states).ToArray(), levels);
        // the scalar definition: RoundClip(s·x, 0, M−1)/s
        float s = (float)alg.ActScale;
        float[] xv = x[..1000].data<float>().ToArray(), av = alg.QuantizeActivation(x[..1000]).data<float>().ToArray();
        for (int i = 0; i < xv.Length; i++) Assert.Equal(Rounding.RoundClip(xv[i] * s, 0, states - 1) / s, av[i], 5);
    }

    [Fact]
    public void SteGradientIsOneInsideTheClipRangeAndZeroOutside()
    {
        using var scope = NewDisposeScope();
        // s = 2, range [−3, 3] in v = s·x: x in [−1.5, 1.5]
        Tensor x = tensor(new float[] { -2f, -1.6f, -1.5f, -0.3f, 0f, 0.74f, 1.5f, 1.51f, 4f }).requires_grad_(true);
        Tensor y = SurrogateRoundClip.Apply(x, 2, -3, 3, Surrogate.Ste);
        Assert.Equal(new float[] { -1.5f, -1.5f, -1.5f, -0.5f, 0f, 0.5f, 1.5f, 1.5f, 1.5f }, y.data<float>().ToArray());
        y.sum().backward();
        Assert.Equal(new float[] { 0, 0, 1, 1, 1, 1, 1, 0, 0 }, x.grad!.data<float>().ToArray());
    }

    [Theory]
    [InlineData(1.0, 0, 14)]
    [InlineData(0.5, -1, 1)]
    [InlineData(0.3, -7, 7)]
    [InlineData(2.5, 0, 3)]
    public void SmoothGradientMatchesFiniteDifferencesOfTheSmoothStaircase(double width, int lo, int hi)
    {
        using var scope = NewDisposeScope();
        const double scale = 1.7, h = 1e-5;
        var rng = new Random(7);
        // x spans the range and beyond it in v = s·x
        double[] xs = Enumerable.Range(0, 400).Select(_ => (lo - 3 + rng.NextDouble() * (hi - lo + 6)) / scale).ToArray();
        Tensor x = tensor(xs, ScalarType.Float64).requires_grad_(true);
        Tensor y = SurrogateRoundClip.Apply(x, scale, lo, hi, Surrogate.Smooth, width);
        y.sum().backward();
        double[] grad = x.grad!.data<double>().ToArray();
        double maxGrad = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            // d/dx S_w(s·x)/s = S′_w(s·x)
            double fd = (SurrogateRoundClip.SmoothStaircase(scale * (xs[i] + h), lo, hi, width)
                       - SurrogateRoundClip.SmoothStaircase(scale * (xs[i] - h), lo, hi, width)) / (2 * h) / scale;
            Assert.True(Math.Abs(fd - grad[i]) < 1e-4, $"x = {xs[i]}: fd {fd}, autograd {grad[i]}");
            maxGrad = Math.Max(maxGrad, grad[i]);
        }
        Assert.True(maxGrad > 0.5);
        // the forward value is still the hard round-clip
        double[] yv = y.data<double>().ToArray();
        for (int i = 0; i < xs.Length; i++) Assert.Equal(Math.Clamp(Math.Round(scale * xs[i], MidpointRounding.ToEven), lo, hi) / scale, yv[i], 9);
    }

    [Fact]
    public void SmoothStaircaseTendsToRoundClipAndIsZeroFarOutside()
    {
        foreach (double v in new[] { -5.0, -1.2, -0.7, 0.2, 0.8, 1.3, 2.49, 2.51, 3.9, 9.0 })
            Assert.Equal(Math.Clamp(Math.Round(v), -2, 3), SurrogateRoundClip.SmoothStaircase(v, -2, 3, 1e-4), 6);
        using var scope = NewDisposeScope();
        Tensor g = SurrogateRoundClip.SmoothStaircaseDerivative(tensor(new double[] { -4.0, 4.6, 0.0 }), -2, 3, 1.0);
        Assert.Equal(0.0, g[0].item<double>(), 12);                        // more than w below the first threshold (−1.5)
        Assert.Equal(0.0, g[1].item<double>(), 12);                        // more than w above the last (2.5)
        Assert.Equal(1.125, g[2].item<double>(), 9);                       // on a level, w = 1: 2·3·(¼)(¾)... = 1.125
    }

    [Fact]
    public void TernaryClipIsTheOptimalGaussianTernaryQuantizer()
    {
        // Lloyd-Max for N(0,1) with levels {−a, 0, a} and thresholds ±a/2: a ≈ 1.224 (thresholds ±0.612).
        Assert.InRange(MaqdAlgorithm.GaussianClip(3, signed: true), 1.215, 1.235);
        // more states clip further out; activations (ReLU target) too
        Assert.True(MaqdAlgorithm.GaussianClip(15, true) > 2.0);
        Assert.True(MaqdAlgorithm.GaussianClip(255, true) > MaqdAlgorithm.GaussianClip(15, true));
        Assert.True(MaqdAlgorithm.GaussianClip(255, false) > MaqdAlgorithm.GaussianClip(3, false));
    }

    [Theory]
    [InlineData(1, 15)]
    [InlineData(2, 15)]
    [InlineData(4, 15)]
    [InlineData(0, 15)]
    [InlineData(257, 15)]
    [InlineData(3, 1)]
    [InlineData(3, 0)]
    [InlineData(3, 300)]
    public void InvalidStatesThrow(int w, int a)
    {
        var e = Assert.Throws<MatqException>(() => new MaqdConfig(w, a));
        Assert.Contains("states", e.Message);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(4.5)]
    [InlineData(double.NaN)]
    public void InvalidWidthThrows(double width) =>
        Assert.Throws<MatqException>(() => new MaqdConfig(3, 15, Surrogate.Smooth, width));

    [Fact]
    public void SurrogateNamesParse()
    {
        Assert.Equal(Surrogate.Ste, MaqdConfig.ParseSurrogate("STE"));
        Assert.Equal(Surrogate.Smooth, MaqdConfig.ParseSurrogate("smooth"));
        Assert.Throws<MatqException>(() => MaqdConfig.ParseSurrogate("sigmoid"));
    }

    [Fact]
    public void GradientsReachTheLatentWeightsThroughStandardizationAndRoundClip()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        foreach (var s in new[] { Surrogate.Ste, Surrogate.Smooth })
        {
            var net = VisionNet.Create(new VisionNetConfig("resnet", [4, 8], 1, norm: "lbn"));
            new MaqdAlgorithm(new MaqdConfig(3, 3, s)).Prepare(net);
            net.train();
            nn.functional.cross_entropy(net.forward(rand(4, 1, 28, 28)), tensor(new long[] { 1, 2, 3, 4 })).backward();
            Assert.All(net.QuantLayers(), l => Assert.True(l.Layer.Weight.grad is { } g && g.abs().sum().item<float>() > 0, $"{l.Name} ({s})"));
        }
    }

    [Fact]
    public void ConvertAfterFoldGivesCodesWhoseScaledConvReproducesTheLayer()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var net = VisionNet.Create(new VisionNetConfig("resnet", [4, 8], 1, norm: "lbn"));
        var alg = new MaqdAlgorithm(new MaqdConfig(5, 15));
        alg.Prepare(net);
        net.train();
        using (no_grad()) net.forward(rand(8, 1, 28, 28));
        net.eval();
        net.FoldNorms();
        var layers = alg.Convert(net);
        var (name, stem) = net.QuantLayers()[0];
        var codes = layers.First(l => l.Name == name);
        Tensor x = rand(2, 1, 28, 28);
        Tensor expected;
        using (no_grad()) expected = stem.forward(x);
        // y = conv(x, codes)·scale_c + bias_c
        Tensor y = nn.functional.conv2d(x, codes.Codes.to(ScalarType.Float32), padding: new long[] { 1, 1 })
            .mul(codes.Scale.reshape(1, -1, 1, 1)).add(codes.Bias!.reshape(1, -1, 1, 1));
        Assert.True(y.allclose(expected, 1e-4, 1e-4));
        Assert.True(codes.Codes.abs().max().item<sbyte>() <= 2);
        foreach (var l in layers) l.Dispose();
    }

    [Fact]
    public void EndLayersTakeTheirOwnStatesAndEveryOtherLayerN()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var net = VisionNet.Create(new VisionNetConfig("resnet", [8, 16], 1, norm: "lbn"));
        var alg = new MaqdAlgorithm(new MaqdConfig(3, 15, endWeightStates: 255));
        alg.Prepare(net);
        var (first, last) = net.EndLayers();
        var codes = alg.Convert(net);
        foreach (var (name, layer) in net.QuantLayers())
        {
            bool end = ReferenceEquals(layer, first) || ReferenceEquals(layer, last);
            Assert.Equal(end ? 255 : 3, alg.StatesOf(layer));
            Tensor q;
            using (no_grad()) q = layer.EffectiveWeight().div(alg.Step(layer));
            Assert.True(q.sub(q.round()).abs().max().item<float>() < 1e-3, $"{name}: W_eff is an integer multiple of Δ");
            int distinct = q.round().to(ScalarType.Int32).data<int>().ToArray().Distinct().Count();
            if (end) Assert.True(distinct > 15, $"{name}: {distinct} levels"); else Assert.InRange(distinct, 2, 3);
            var c = codes.Single(l => l.Name == name);
            Assert.True(c.Codes.to(ScalarType.Float32).allclose(q.round()), name);
            int maxCode = c.Codes.abs().max().item<sbyte>();
            if (end) Assert.InRange(maxCode, 2, 127); else Assert.Equal(1, maxCode);
        }
        foreach (var l in codes) l.Dispose();
    }

    [Fact]
    public void EndLayersAreTheFirstAndLastOfTheForwardPass()
    {
        using var scope = NewDisposeScope();
        var resnet = VisionNet.Create(new VisionNetConfig("resnet", [4, 8], 1));
        var (first, last) = resnet.EndLayers();
        Assert.Equal("stem", resnet.QuantLayers().Single(l => ReferenceEquals(l.Layer, first)).Name);
        Assert.Equal("fc", resnet.QuantLayers().Single(l => ReferenceEquals(l.Layer, last)).Name);
        var mlp = VisionNet.Create(new VisionNetConfig("mlp", [32, 16]));
        (first, last) = mlp.EndLayers();
        Assert.Equal(784, first.Weight.shape[1]);
        Assert.Equal(10, last.OutChannels);
    }

    [Fact]
    public void EndStatesEqualToNMeanAllLayersAndInvalidEndStatesThrow()
    {
        Assert.Null(new MaqdConfig(15, 15, endWeightStates: 15).EndWeightStates);
        Assert.Equal("all layers", new MaqdConfig(15, 15).LayersText);
        Assert.Equal("first/last 255", new MaqdConfig(3, 15, endWeightStates: 255).LayersText);
        foreach (int bad in new[] { 1, 4, 256 })
            Assert.Contains("end-layer weight states", Assert.Throws<MatqException>(() => new MaqdConfig(3, 15, endWeightStates: bad)).Message);
    }
}
