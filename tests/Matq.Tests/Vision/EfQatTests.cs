// Tests EfQAT: the partial weight gradient equals autograd's on the selected rows and is zero elsewhere (conv, both
// methods, strides 1 and 2; linear), the data gradient is unchanged; selection per mode; fraction 0 keeps weights but
// trains steps; invalid settings throw MatqException.
using Matq.Algorithms.EfQat;
using Matq.Data;
using Matq.Models.Vision;
using Matq.Training.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Vision;

public class EfQatTests
{
    [Theory]
    [InlineData(ConvWeightGradMethod.Inject, 1, 1, 3)]
    [InlineData(ConvWeightGradMethod.Inject, 2, 1, 3)]
    [InlineData(ConvWeightGradMethod.Inject, 2, 0, 1)]
    [InlineData(ConvWeightGradMethod.Split, 1, 1, 3)]
    [InlineData(ConvWeightGradMethod.Split, 2, 1, 3)]
    [InlineData(ConvWeightGradMethod.Split, 2, 0, 1)]
    [InlineData(ConvWeightGradMethod.Regrad, 1, 1, 3)]
    [InlineData(ConvWeightGradMethod.Regrad, 2, 1, 3)]
    [InlineData(ConvWeightGradMethod.Regrad, 2, 0, 1)]
    [InlineData(ConvWeightGradMethod.Unfold, 1, 1, 3)]
    [InlineData(ConvWeightGradMethod.Unfold, 2, 1, 3)]
    [InlineData(ConvWeightGradMethod.Conv, 1, 1, 3)]
    [InlineData(ConvWeightGradMethod.Conv, 2, 1, 3)]
    [InlineData(ConvWeightGradMethod.Conv, 2, 0, 1)]
    public void ConvPartialGradientMatchesAutogradOnSelectedRows(ConvWeightGradMethod method, long stride, long pad, long k)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        Tensor x = randn(3, 4, 9, 9), w = randn(6, 4, k, k), up = null!;
        long[] rows = { 1, 4, 5 };
        // reference: native conv2d + autograd
        Tensor xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true);
        Tensor yr = nn.functional.conv2d(xr, wr, strides: new[] { stride, stride }, padding: new[] { pad, pad });
        up = randn_like(yr);
        yr.mul(up).sum().backward();

        {
            Tensor xp = x.clone().requires_grad_(true), wp = w.clone().requires_grad_(true);
            Tensor yp = PartialWeightGrad.Conv2d(xp, wp, stride, pad, tensor(rows), method: method);
            Assert.True(yp.allclose(yr, 1e-5, 1e-5));
            if (method == ConvWeightGradMethod.Inject) Assert.True(yp.eq(yr).all().item<bool>(), "inject's forward is bit-identical to the plain conv");
            yp.mul(up).sum().backward();
            Assert.True(xp.grad!.allclose(xr.grad!, 1e-4, 1e-4));
            Tensor sel = tensor(rows);
            Assert.True(wp.grad!.index_select(0, sel).allclose(wr.grad!.index_select(0, sel), 1e-4, 1e-4));
            Tensor others = tensor(new long[] { 0, 2, 3 });
            Assert.Equal(0f, wp.grad!.index_select(0, others).abs().max().item<float>());
            Assert.True(wr.grad!.index_select(0, others).abs().max().item<float>() > 0);   // the reference is not zero there
        }
    }

    [Fact]
    public void ConvEmptySelectionComputesNoWeightGradient()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        Tensor x = randn(2, 3, 8, 8).requires_grad_(true), w = randn(5, 3, 3, 3).requires_grad_(true);
        PartialWeightGrad.Conv2d(x, w, 1, 1, tensor(Array.Empty<long>())).sum().backward();
        Assert.True(w.grad is null || w.grad.abs().max().item<float>() == 0);
        Assert.NotNull(x.grad);
    }

    [Theory]
    [InlineData(ConvWeightGradMethod.Split)]
    [InlineData(ConvWeightGradMethod.Unfold)]
    [InlineData(ConvWeightGradMethod.Inject)]
    public void LinearPartialGradientMatchesAutogradOnSelectedRows(ConvWeightGradMethod method)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        Tensor x = randn(7, 5), w = randn(4, 5);
        Tensor xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true);
        Tensor yr = nn.functional.linear(xr, wr);
        Tensor up = randn_like(yr);
        yr.mul(up).sum().backward();
        Tensor xp = x.clone().requires_grad_(true), wp = w.clone().requires_grad_(true);
        PartialWeightGrad.Linear(xp, wp, tensor(new long[] { 0, 3 }), method: method).mul(up).sum().backward();
        Assert.True(xp.grad!.allclose(xr.grad!, 1e-5, 1e-5));
        Tensor sel = tensor(new long[] { 0, 3 }), others = tensor(new long[] { 1, 2 });
        Assert.True(wp.grad!.index_select(0, sel).allclose(wr.grad!.index_select(0, sel), 1e-5, 1e-5));
        Assert.Equal(0f, wp.grad!.index_select(0, others).abs().max().item<float>());
    }

    [Fact]
    public void SelectionPerMode()
    {
        var imp = new List<float[]> { new[] { 0.1f, 0.9f, 0.5f, 0.2f }, new[] { 3f, 1f }, new[] { 0.3f, 0.4f, 0.05f, 0.6f, 0.7f, 0.8f, 0.01f, 0.02f } };
        var cwpl = ChannelSelector.Select(imp, EfQatMode.ChannelPerLayer, 0.25);
        Assert.Equal(new[] { 1 }, cwpl[0]);
        Assert.Equal(new[] { 0 }, cwpl[1]);
        Assert.Equal(new[] { 4, 5 }, cwpl[2]);
        var cwpn = ChannelSelector.Select(imp, EfQatMode.ChannelPerNetwork, 0.25);   // 14 channels → 4: 3, 1, 0.9, 0.8
        Assert.Equal(new[] { 1 }, cwpn[0]);
        Assert.Equal(new[] { 0, 1 }, cwpn[1]);
        Assert.Equal(new[] { 5 }, cwpn[2]);
        var lwpn = ChannelSelector.Select(imp, EfQatMode.LayerPerNetwork, 0.3);       // 1 of 3 layers: mean 2 wins
        Assert.Empty(lwpn[0]);
        Assert.Equal(new[] { 0, 1 }, lwpn[1]);
        Assert.Empty(lwpn[2]);
        Assert.All(ChannelSelector.Select(imp, EfQatMode.ChannelPerNetwork, 0), s => Assert.Empty(s));
        Assert.Equal(4, ChannelSelector.Select(imp, EfQatMode.ChannelPerLayer, 1)[0].Length);
    }

    [Fact]
    public void InvalidSettingsThrow()
    {
        Assert.Throws<MatqException>(() => new EfQatConfig(EfQatMode.ChannelPerLayer, 1.5));
        Assert.Throws<MatqException>(() => new EfQatConfig(EfQatMode.ChannelPerLayer, -0.1));
        Assert.Throws<MatqException>(() => new EfQatConfig((EfQatMode)7, 0.25));
        Assert.Throws<MatqException>(() => new EfQatConfig(EfQatMode.ChannelPerLayer, 0.25, weightBits: 1));
        Assert.Throws<MatqException>(() => EfQatConfig.ParseMode("best"));
        Assert.Throws<MatqException>(() => new QuantSettings(9, 8));
        Assert.Throws<MatqException>(() => new VisionNetConfig("vgg", [8]));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.25)]
    public void OnlySelectedWeightsMoveAndStepsTrain(double fraction)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var cfg = new VisionNetConfig("resnet", [4, 8], 1);
        var net = VisionNet.Create(cfg);
        var set = RandomSet(64, 42);
        VisionQuantization.Prepare(net, CnnTrainer.Batch(set, Enumerable.Range(0, 32).ToArray(), null, CPU).X, new QuantSettings(4, 8));
        var layers = net.QuantLayers().Select(l => l.Layer).ToList();
        var before = layers.Select(l => l.Weight.detach().clone()).ToList();
        var actBefore = layers.Select(l => l.ActStep!.detach().clone()).ToList();
        var alg = new EfQatAlgorithm(new EfQatConfig(EfQatMode.ChannelPerLayer, fraction, refreshEvery: 1000), layers);
        var opts = new CnnTrainOptions { Epochs = 1, Batch = 16, Lr = 0.05, Optimizer = "adamw", Augment = false, WarmupSteps = 0 };
        CnnTrainer.Train(net, set, set, opts, CPU, hooks: new TrainHooks(alg.BeforeStep, _ => alg.AfterStep()));
        for (int l = 0; l < layers.Count; l++)
        {
            var moved = layers[l].Weight.detach().sub(before[l]).abs().reshape(layers[l].OutChannels, -1).amax(new long[] { 1 }).data<float>().ToArray();
            for (int c = 0; c < moved.Length; c++)
                if (alg.Selection[l].Contains(c)) Assert.True(moved[c] > 0, $"layer {l} channel {c} selected but unchanged");
                else Assert.Equal(0f, moved[c]);
        }
        Assert.Contains(Enumerable.Range(0, layers.Count), l => layers[l].ActStep!.detach().sub(actBefore[l]).abs().max().item<float>() > 0);
    }

    [Theory]
    [InlineData("conv", false)]
    [InlineData("conv", true)]
    [InlineData("linear", false)]
    [InlineData("linear", true)]
    public void InjectOnLsqRowsMatchesTheGeneralPath(string kind, bool standardize)
    {
        // Inject fake-quantizes only the selected rows differentiably (the whole weight without autograd): outputs and
        // every gradient (input, weight, weight step, activation step, bias) must equal the Split path, which runs
        // LSQ on the whole weight under autograd.
        using var scope = NewDisposeScope();
        manual_seed(11);
        QuantLayer layer = kind == "conv" ? new QConv2d("c", 5, 8, 3, stride: 1, padding: 1, bias: true) : new QLinear("l", 12, 8);
        layer.Standardize = standardize;
        Tensor x = kind == "conv" ? rand(4, 5, 6, 6) : rand(4, 12);
        layer.EnableQuant(new QuantSettings(4, 8), x);
        var rows = tensor(new long[] { 1, 4, 5 });
        var grads = new List<Tensor[]>();
        var outs = new List<Tensor>();
        foreach (var method in new[] { ConvWeightGradMethod.Inject, ConvWeightGradMethod.Split })
        {
            layer.GradMethod = method;
            {
                layer.SelectedRows = rows;
                layer.FrozenRows = PartialWeightGrad.Complement(rows, layer.OutChannels);
                layer.zero_grad();
                Tensor xi = x.clone().requires_grad_(true);
                Tensor y = layer.forward(xi);
                y.mul(arange(y.numel()).reshape(y.shape).cos()).sum().backward();
                outs.Add(y.detach());
                grads.Add([xi.grad!, layer.Weight.grad!.clone(), layer.WeightStep!.grad!.clone(), layer.ActStep!.grad!.clone(), layer.Bias!.grad!.clone()]);
            }
        }
        layer.SelectedRows = layer.FrozenRows = null;
        Tensor plain;
        using (no_grad()) plain = layer.forward(x);
        Assert.True(outs[0].eq(plain).all().item<bool>(), "Inject's forward values differ from the plain layer's");
        Assert.True(outs[1].allclose(plain, rtol: 1e-5, atol: 1e-6), "Split's forward values differ from the plain layer's");
        string[] names = ["input", "weight", "weight step", "activation step", "bias"];
        for (int i = 0; i < names.Length; i++)
            Assert.True(grads[0][i].allclose(grads[1][i], rtol: 1e-4, atol: 1e-6), $"{names[i]} gradient differs");
        var frozen = PartialWeightGrad.Complement(rows, layer.OutChannels);
        Assert.Equal(0f, grads[0][1].index_select(0, frozen).abs().max().item<float>());
        Assert.True(grads[0][1].index_select(0, rows).abs().max().item<float>() > 0);
    }

    internal static ImageSet RandomSet(int n, int seed)
    {
        var rng = new Random(seed);
        var img = new float[n * 28 * 28];
        var lab = new byte[n];
        for (int i = 0; i < n; i++)
        {
            lab[i] = (byte)rng.Next(10);
            for (int p = 0; p < 784; p++) img[i * 784 + p] = (float)rng.NextDouble() * (p % 10 == lab[i] ? 1f : 0.3f);
        }
        return new ImageSet(n, 28, 28, img, lab);
    }
}

public class BackwardTensorsTests
{
    [Fact]
    public void Inputs_saved_by_custom_functions_stay_usable_after_later_backward_passes()
    {
        // BackwardTensors disposes what a backward handed over when the next backward starts: the caller's own
        // tensors (saved as inputs) must survive that, and repeated steps must keep producing the same gradient.
        manual_seed(5);
        Tensor x = randn(4, 6).requires_grad_(true), w = randn(3, 6).requires_grad_(true);
        var method = ConvWeightGradMethod.Unfold;   // the custom-function path (saves x and w)
        {
            Tensor? first = null;
            for (int i = 0; i < 3; i++)
            {
                x.grad?.zero_();
                var y = Matq.Quantization.LsqFakeQuant.Apply(PartialWeightGrad.Linear(x, w, tensor(new long[] { 0, 2 }), method: method), tensor(new float[] { 0.1f }), 4);
                y.sum().backward();
                first ??= x.grad!.clone();
                Assert.True(x.grad!.allclose(first), $"step {i}");
                Assert.Equal(new long[] { 4, 6 }, x.shape);
                Assert.True(float.IsFinite(x.sum().item<float>()));
                Assert.True(float.IsFinite(w.sum().item<float>()));
            }
        }
    }
}
