// Tests the tensor nested slice (plain and extra precision) and sliced dequantization against the scalar kernels.
using Matq.Kernels.Packing;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public class TensorNestedSliceTests
{
    [Fact]
    public void SliceEqualsKernelForEveryCodeAndWidth()
    {
        for (int c = 1; c <= 8; c++)
        {
            byte[] all = Enumerable.Range(0, 1 << c).Select(i => (byte)i).ToArray();
            for (int r = 1; r <= c; r++)
            {
                using var scope = NewDisposeScope();
                Tensor codes = tensor(all, new long[] { 1, all.Length });
                Assert.Equal(NestedSlice.Slice(all, c, r), TensorNestedSlice.Slice(codes, c, r).data<byte>().ToArray());

                ExtraPrecisionSlice ks = NestedSlice.SliceExtra(all, c, r);
                TensorExtraSlice ts = TensorNestedSlice.SliceExtra(codes, c, r);
                Assert.Equal(ks.Codes, ts.Codes.data<byte>().ToArray());
                Assert.Equal(ks.OverflowCount, ts.OverflowCount);
                Assert.Equal(ks.EscapeBitCount, ts.EscapeBitCount);
                Assert.Equal(ks.EffectiveBits, ts.EffectiveBits);
                bool[] mask = ts.OverflowMask.data<bool>().ToArray();
                for (int i = 0; i < all.Length; i++) Assert.Equal((ks.OverflowMask[i >> 3] >> (i & 7) & 1) == 1, mask[i]);
            }
        }
    }

    [Theory]
    [InlineData(8, 4, 0)]
    [InlineData(8, 4, 5)]
    [InlineData(8, 2, 0)]
    [InlineData(6, 3, 4)]
    [InlineData(8, 8, 3)]
    public void SlicedDequantizationEqualsKernel(int c, int r, int groupSize)
    {
        var rng = new Random(c * 10 + r + groupSize);
        for (int trial = 0; trial < 5; trial++)
        {
            using var scope = NewDisposeScope();
            int rows = rng.Next(1, 6), cols = rng.Next(1, 25);
            float[] w = TensorQuantTestData.RandomWeights(rng, rows * cols);
            QuantSpec spec = groupSize == 0 ? QuantSpec.PerChannel(c) : QuantSpec.Grouped(c, groupSize);
            (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
            using QuantizedTensor qt = TensorAffineQuantizer.Quantize(tensor(w, new long[] { rows, cols }), spec);

            Tensor sliced = TensorNestedSlice.Slice(qt.Codes, c, r);
            byte[] ks = NestedSlice.Slice(q, c, r);
            Assert.Equal(ks, sliced.data<byte>().ToArray());
            float[] expected = NestedSlice.Dequantize(ks, p, r);
            TensorQuantTestData.AssertClose(expected, TensorNestedSlice.Dequantize(sliced, qt.Scales, qt.Zeros, qt.GroupSize, c, r).data<float>().ToArray());

            ExtraPrecisionSlice ke = NestedSlice.SliceExtra(q, c, r);
            TensorExtraSlice te = TensorNestedSlice.SliceExtra(qt.Codes, c, r);
            TensorQuantTestData.AssertClose(NestedSlice.Dequantize(ke.Codes, p, r),
                TensorNestedSlice.Dequantize(te.Codes, qt.Scales, qt.Zeros, qt.GroupSize, c, r).data<float>().ToArray());
        }
    }

    [Fact]
    public void BadSliceBitsThrow()
    {
        using var scope = NewDisposeScope();
        var codes = zeros(new long[] { 1, 4 }, ScalarType.Byte);
        Assert.Contains("sliceBits = 0", Assert.Throws<MatqException>(() => TensorNestedSlice.Slice(codes, 8, 0)).Message);
        Assert.Contains("sliceBits = 9", Assert.Throws<MatqException>(() => TensorNestedSlice.Slice(codes, 8, 9)).Message);
    }
}
