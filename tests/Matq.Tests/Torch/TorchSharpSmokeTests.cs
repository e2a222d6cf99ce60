using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Torch;

/// <summary>Proves the native TorchSharp library loads on this host (the GLIBCXX weak-version fix) and computes.</summary>
public class TorchSharpSmokeTests
{
    [Fact]
    public void MatmulCholeskyAndBackwardWork()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 4, 2, 2, 3 }, 2, 2);
        var b = tensor(new float[] { 1, 0, 1, 1 }, 2, 2);
        var c = matmul(a, b);
        Assert.Equal(new float[] { 6, 2, 5, 3 }, c.data<float>().ToArray());

        var l = linalg.cholesky(a);
        var rebuilt = matmul(l, l.t());
        Assert.True(allclose(rebuilt, a, 1e-5, 1e-6));
        Assert.Equal(2.0f, l[0, 0].item<float>(), 5);

        var x = tensor(new float[] { 1, 2, 3 }, requires_grad: true);
        var y = (x * x).sum();
        y.backward();
        Assert.Equal(new float[] { 2, 4, 6 }, x.grad!.data<float>().ToArray());
    }
}
