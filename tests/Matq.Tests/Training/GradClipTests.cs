// Global-norm clipping: the clipped grads have norm maxNorm (within fp32 rounding), keep their direction,
// agree with TorchSharp's clip_grad_norm_, and are untouched when already below the cap.
using Matq.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Tests.Training;

public class GradClipTests
{
    private static List<Parameter> ParamsWithGrads(double scale, int seed)
    {
        var gen = new Generator((ulong)seed);
        var list = new List<Parameter>();
        foreach (var shape in new[] { new long[] { 7, 5 }, new long[] { 13 }, new long[] { 3, 4, 2 } })
        {
            var p = new Parameter(zeros(shape));
            p.grad = randn(shape, generator: gen) * scale;
            list.Add(p);
        }
        return list;
    }

    private static double GlobalNorm(IEnumerable<Parameter> ps) =>
        Math.Sqrt(ps.Sum(p => p.grad!.to_type(ScalarType.Float64).square().sum().item<double>()));

    [Fact]
    public void CapsTheGlobalNorm()
    {
        var ps = ParamsWithGrads(10, 1);
        double before = GlobalNorm(ps);
        Assert.True(before > 5);
        var direction = ps.Select(p => p.grad!.clone() / before).ToList();
        var total = GradClip.ClipGlobalNorm(ps, 1.0);
        Assert.Equal(before, total.item<float>(), 3);
        Assert.Equal(1.0, GlobalNorm(ps), 5);
        for (int i = 0; i < ps.Count; i++) Assert.True(allclose(ps[i].grad!, direction[i], rtol: 1e-4, atol: 1e-6));
    }

    [Fact]
    public void MatchesTorchSharpClipGradNorm()
    {
        var a = ParamsWithGrads(3, 2);
        var b = ParamsWithGrads(3, 2);
        GradClip.ClipGlobalNorm(a, 0.5);
        nn.utils.clip_grad_norm_(b, 0.5);
        for (int i = 0; i < a.Count; i++) Assert.True(allclose(a[i].grad!, b[i].grad!, rtol: 1e-5, atol: 1e-7));
    }

    [Fact]
    public void BelowTheCapNothingChanges()
    {
        var ps = ParamsWithGrads(0.01, 3);
        var copies = ps.Select(p => p.grad!.clone()).ToList();
        GradClip.ClipGlobalNorm(ps, 1.0);
        for (int i = 0; i < ps.Count; i++) Assert.True(ps[i].grad!.equal(copies[i]).all().item<bool>());
    }
}
