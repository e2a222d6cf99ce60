// Tests that the tensor affine quantizer equals the scalar reference exactly (codes, scales, zeros) and within
// 1e-6 (dequantized floats) over random shapes, every layout and bits 1..8, including groups that do not divide a row.
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public class TensorAffineQuantizerTests
{
    public static IEnumerable<object[]> Specs() => TensorQuantTestData.Specs();

    [Theory]
    [MemberData(nameof(Specs))]
    public void TensorPathEqualsScalarReference(int bits, Granularity granularity, int groupSize, QuantScheme scheme)
    {
        var spec = new QuantSpec(bits, granularity, groupSize, scheme);
        var rng = new Random(bits * 101 + (int)granularity * 13 + groupSize + 7 * (int)scheme);
        for (int trial = 0; trial < 6; trial++)
        {
            using var scope = NewDisposeScope();
            int rows = rng.Next(1, 7), cols = rng.Next(1, 30);
            float[] w = TensorQuantTestData.RandomWeights(rng, rows * cols);
            (QuantParams p, byte[] codes) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);

            using QuantizedTensor qt = TensorAffineQuantizer.Quantize(tensor(w, new long[] { rows, cols }), spec);
            Assert.Equal(ScalarType.Byte, qt.Codes.dtype);
            Assert.Equal(new long[] { rows, p.GroupsPerRow }, qt.Scales.shape);
            Assert.Equal(p.Scales, qt.Scales.data<float>().ToArray());
            Assert.Equal(Array.ConvertAll(p.Zeros, z => (float)z), qt.Zeros.data<float>().ToArray());
            Assert.Equal(codes, qt.Codes.data<byte>().ToArray());
            TensorQuantTestData.AssertClose(AffineQuantizer.DequantizeMatrix(codes, p), qt.Dequantize().data<float>().ToArray());

            QuantParams back = qt.ToQuantParams();
            Assert.Equal(p.Scales, back.Scales);
            Assert.Equal(p.Zeros, back.Zeros);
            Assert.Equal(p.GroupSize, back.GroupSize);
        }
    }

    [Fact]
    public void ShortLastGroupUsesOnlyItsOwnColumns()
    {
        // row of 5 in groups of 2: [−4, 1 | 0.5, 2 | 8]; the last group holds one column
        using var scope = NewDisposeScope();
        var w = tensor(new float[] { -4, 1, 0.5f, 2, 8 }, new long[] { 1, 5 });
        (Tensor scales, Tensor zeros) = TensorAffineQuantizer.ComputeParams(w, QuantSpec.Grouped(2, 2));
        Assert.Equal(new[] { 5f / 3f, 2f / 3f, 8f / 3f }, scales.data<float>().ToArray());
        Assert.Equal(new[] { 2f, 0f, 0f }, zeros.data<float>().ToArray());   // round(4/(5/3)) = round(2.4) = 2
    }

    [Fact]
    public void GivenParametersFromTheKernelQuantizeIdentically()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(9);
        float[] w = TensorQuantTestData.RandomWeights(rng, 5 * 19);
        (QuantParams p, byte[] codes) = AffineQuantizer.QuantizeMatrix(w, 5, 19, QuantSpec.Grouped(3, 6));
        (Tensor s, Tensor z) = QuantizedTensor.FromQuantParams(p);
        Tensor q = TensorAffineQuantizer.Quantize(tensor(w, new long[] { 5, 19 }), s, z, p.GroupSize, 3);
        Assert.Equal(codes, q.data<byte>().ToArray());
    }

    [Fact]
    public void BadSpecsThrowMatqException()
    {
        Assert.Contains("bits = 0", Assert.Throws<MatqException>(() => QuantSpec.PerTensor(0)).Message);
        Assert.Contains("bits = 9", Assert.Throws<MatqException>(() => QuantSpec.Grouped(9, 32)).Message);
        Assert.Contains("groupSize = 0", Assert.Throws<MatqException>(() => QuantSpec.Grouped(4, 0)).Message);
        Assert.Contains("groupSize = -8", Assert.Throws<MatqException>(() => QuantSpec.Grouped(4, -8)).Message);
        using var scope = NewDisposeScope();
        var w = zeros(2, 2);
        Assert.Contains("bits = 9", Assert.Throws<MatqException>(() => TensorAffineQuantizer.Quantize(w, ones(2, 1), zeros(2, 1), 2, 9)).Message);
    }

    [Fact]
    public void NaNWeightsAreRejectedLikeTheKernel()
    {
        using var scope = NewDisposeScope();
        float[] w = { 1f, float.NaN, 0.5f, 2f };
        var kernel = Assert.Throws<MatqException>(() => AffineQuantizer.ComputeParams(w, 2, 2, QuantSpec.PerChannel(4)));
        var tensorPath = Assert.Throws<MatqException>(() => TensorAffineQuantizer.ComputeParams(tensor(w, new long[] { 2, 2 }), QuantSpec.PerChannel(4)));
        Assert.Equal(kernel.Message, tensorPath.Message);
    }

    [Theory]
    [InlineData(1)]      // one row per chunk
    [InlineData(7)]      // chunks that straddle the groups' rows unevenly
    [InlineData(1000)]   // one chunk
    public void DequantizingInRowChunksGivesTheSameWeights(int chunkRows)
    {
        using var scope = NewDisposeScope();
        var w = randn(13, 40, generator: new Generator(3));
        using var q = TensorAffineQuantizer.Quantize(w, QuantSpec.Grouped(3, 16));
        var whole = TensorAffineQuantizer.Dequantize(q.Codes, q.Scales, q.Zeros, 16, long.MaxValue);
        var chunked = TensorAffineQuantizer.Dequantize(q.Codes, q.Scales, q.Zeros, 16, chunkRows * 40L);
        Assert.True(whole.eq(chunked).all().item<bool>(), "chunked dequantization differs");
        Assert.Equal(q.Dequantize().data<float>().ToArray(), whole.data<float>().ToArray());
    }
}
