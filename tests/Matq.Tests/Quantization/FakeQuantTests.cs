// Tests STE fake quantization: forward equals the scalar dequant(quant(w)) (plain and nested), gradients pass
// straight through (1 everywhere) or are masked outside the clip range.
using Matq.Kernels.Packing;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public class FakeQuantTests
{
    public static IEnumerable<object[]> Specs() => TensorQuantTestData.Specs();

    [Theory]
    [MemberData(nameof(Specs))]
    public void ForwardEqualsScalarRoundTripAndGradientIsOne(int bits, Granularity granularity, int groupSize, QuantScheme scheme)
    {
        var spec = new QuantSpec(bits, granularity, groupSize, scheme);
        var rng = new Random(bits * 31 + groupSize + (int)granularity + 3 * (int)scheme);
        for (int trial = 0; trial < 3; trial++)
        {
            using var scope = NewDisposeScope();
            int rows = rng.Next(1, 6), cols = rng.Next(1, 26);
            float[] w = TensorQuantTestData.RandomWeights(rng, rows * cols);
            (QuantParams p, byte[] codes) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);

            Tensor wt = tensor(w, new long[] { rows, cols }).requires_grad_(true);
            Tensor fq = FakeQuant.Apply(wt, spec);
            Assert.True(fq.requires_grad);
            TensorQuantTestData.AssertClose(AffineQuantizer.DequantizeMatrix(codes, p), fq.detach().data<float>().ToArray());
            fq.sum().backward();
            Assert.All(wt.grad!.data<float>().ToArray(), g => Assert.Equal(1f, g));
        }
    }

    [Theory]
    [InlineData(8, 2, false)]
    [InlineData(8, 2, true)]
    [InlineData(8, 3, true)]
    [InlineData(8, 4, false)]
    [InlineData(8, 8, false)]
    [InlineData(4, 2, true)]
    public void NestedForwardEqualsScalarSliceAndGradientIsOne(int c, int r, bool extra)
    {
        var rng = new Random(c * 100 + r * 10 + (extra ? 1 : 0));
        foreach (QuantSpec spec in new[] { QuantSpec.PerChannel(c), QuantSpec.Grouped(c, 5) })
        {
            using var scope = NewDisposeScope();
            int rows = 4, cols = 23;
            float[] w = TensorQuantTestData.RandomWeights(rng, rows * cols);
            (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
            byte[] sliced = extra ? NestedSlice.SliceExtra(q, c, r).Codes : NestedSlice.Slice(q, c, r);
            float[] expected = NestedSlice.Dequantize(sliced, p, r);

            Tensor wt = tensor(w, new long[] { rows, cols }).requires_grad_(true);
            Tensor fq = FakeQuant.ApplyNested(wt, spec, r, extra);
            TensorQuantTestData.AssertClose(expected, fq.detach().data<float>().ToArray());
            (fq * 3).sum().backward();
            Assert.All(wt.grad!.data<float>().ToArray(), g => Assert.Equal(3f, g));
        }
    }

    [Fact]
    public void ClipMaskZeroesGradientWhereTheQuantizerClipped()
    {
        using var scope = NewDisposeScope();
        // 2 bits, α = 1, z = 1: representable −1..2; round(x) + 1 outside [0, 3] is clipped
        Tensor x = tensor(new float[] { -3f, -1.4f, -1.6f, 0.2f, 2.4f, 2.6f, 7f }, new long[] { 1, 7 }).requires_grad_(true);
        Tensor scales = ones(1, 1), zeros = full(1, 1, 1f);
        Tensor y = FakeQuant.Apply(x, scales, zeros, 7, 2, SteMode.ClipMask);
        Assert.Equal(new float[] { -1, -1, -1, 0, 2, 2, 2 }, y.detach().data<float>().ToArray());
        y.sum().backward();
        // −1.6 rounds to −2 → code −1 (clipped); 2.6 rounds to 3 → code 4 (clipped); −1.4 → code 0, 2.4 → code 3 inside
        Assert.Equal(new float[] { 0, 1, 0, 1, 1, 0, 0 }, x.grad!.data<float>().ToArray());

        Tensor x2 = x.detach().clone().requires_grad_(true);
        FakeQuant.Apply(x2, scales, zeros, 7, 2).sum().backward();
        Assert.All(x2.grad!.data<float>().ToArray(), g => Assert.Equal(1f, g));
    }

    [Fact]
    public void UpstreamGradientIsForwardedElementwise()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(2);
        float[] w = TensorQuantTestData.RandomWeights(rng, 3 * 8);
        float[] up = TensorQuantTestData.RandomWeights(rng, 3 * 8);
        Tensor wt = tensor(w, new long[] { 3, 8 }).requires_grad_(true);
        Tensor fq = FakeQuant.ApplyNested(wt, QuantSpec.Grouped(8, 3), 4);
        (fq * tensor(up, new long[] { 3, 8 })).sum().backward();
        Assert.Equal(up, wt.grad!.data<float>().ToArray());
    }
}
