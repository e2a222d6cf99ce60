// Tests the fake-quantized conv against a scalar reference quantizer (signed per-channel weights, unsigned per-tensor
// activations: q = clamp(round(v/s), −Qn, Qp)·s) followed by a float conv, and the save/load round trip of a net.
using Matq.Models.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Vision;

public class QuantLayerTests
{
    [Theory]
    [InlineData(4, 8)]
    [InlineData(2, 3)]
    public void QConvMatchesReferenceQuantizer(int wbits, int abits)
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        var conv = new QConv2d("c", 3, 5, 3, 2, 1);
        Tensor x = rand(2, 3, 9, 9);
        conv.EnableQuant(new QuantSettings(wbits, abits), x);
        float[] w = conv.Weight.detach().data<float>().ToArray(), ws = conv.WeightStep!.detach().data<float>().ToArray();
        float[] xv = x.data<float>().ToArray();
        float s = conv.ActStep!.detach().item<float>();
        int per = w.Length / 5, qn = 1 << (wbits - 1), qp = qn - 1, aqp = (1 << abits) - 1;
        var wq = new float[w.Length];
        for (int i = 0; i < w.Length; i++) wq[i] = Math.Clamp(MathF.Round(w[i] / ws[i / per], MidpointRounding.ToEven), -qn, qp) * ws[i / per];
        var xq = xv.Select(v => Math.Clamp(MathF.Round(v / s, MidpointRounding.ToEven), 0, aqp) * s).ToArray();
        Tensor expected = nn.functional.conv2d(tensor(xq, x.shape), tensor(wq, conv.Weight.shape), strides: new[] { 2L, 2L }, padding: new[] { 1L, 1L });
        Assert.True(conv.forward(x).allclose(expected, 1e-5, 1e-5));
        Assert.False(conv.forward(x).allclose(nn.functional.conv2d(x, conv.Weight, strides: new[] { 2L, 2L }, padding: new[] { 1L, 1L }), 1e-3, 1e-3));
    }

    [Fact]
    public void SaveLoadRoundTrip()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var net = VisionNet.Create(new VisionNetConfig("resnet", [4, 8], 1));
        net.eval();
        Tensor x = rand(3, 1, 28, 28);
        string dir = Path.Combine(Path.GetTempPath(), "matq-vision-" + Guid.NewGuid().ToString("N"));
        try
        {
            VisionNetIO.Save(net, dir);
            var back = VisionNetIO.Load(dir);
            back.eval();
            Assert.True(back.forward(x).allclose(net.forward(x), 1e-6, 1e-6));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MovingTheModuleKeepsParameterReferencesValid()
    {
        // Module.to(...) replaces registered tensors; the layer's Weight/Bias must follow (this broke CUDA runs).
        using var scope = NewDisposeScope();
        var conv = new QConv2d("c", 2, 3, 3, padding: 1, bias: true);
        var lin = new QLinear("l", 4, 5);
        conv.to(ScalarType.Float64);
        lin.to(ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, conv.Weight.dtype);
        Assert.Equal(ScalarType.Float64, conv.Bias!.dtype);
        Assert.Equal(ScalarType.Float64, lin.Weight.dtype);
        var y = conv.forward(ones(1, 2, 4, 4, dtype: ScalarType.Float64));
        Assert.Equal(new long[] { 1, 3, 4, 4 }, y.shape);
        Assert.Equal(new long[] { 2, 5 }, lin.forward(ones(2, 4, dtype: ScalarType.Float64)).shape);
    }
}
