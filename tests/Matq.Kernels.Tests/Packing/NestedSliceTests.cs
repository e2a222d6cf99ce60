// Tests Matryoshka slicing against independent closed forms for every code and width, the extra-precision
// overflow bucket and its escape-stream storage, and dequantization of sliced codes with the master α and z.
using FsCheck.Xunit;
using Matq.Kernels.Packing;
using Matq.Kernels.Quantization;

namespace Matq.Kernels.Tests.Packing;

public class NestedSliceTests
{
    [Fact]
    public void SlicingToTheMasterWidthIsIdentity()
    {
        for (int c = 1; c <= 8; c++)
            for (int q = 0; q < 1 << c; q++)
                Assert.Equal(q, NestedSlice.Slice((byte)q, c, c));
    }

    [Fact]
    public void SliceEqualsRoundHalfUpThenClampForEveryCodeAndWidth()
    {
        for (int c = 1; c <= 8; c++)
            for (int r = 1; r <= c; r++)
                for (int q = 0; q < 1 << c; q++)
                {
                    int k = c - r, top = (1 << r) - 1;
                    // real-valued definition: ⌊q/2^k + ½⌋ then clamp
                    int viaFloor = Math.Min((int)Math.Floor(q / Math.Pow(2, k) + 0.5), top);
                    // integer form: (q + 2^(k−1)) >> k, with k = 0 meaning q itself
                    int viaShift = Math.Min(k == 0 ? q : (q + (1 << (k - 1))) >> k, top);
                    Assert.Equal(viaFloor, viaShift);
                    Assert.Equal(viaFloor, NestedSlice.Slice((byte)q, c, r));
                    Assert.Equal((int)Math.Floor(q / Math.Pow(2, k) + 0.5), NestedSlice.SliceUnclamped((byte)q, c, r));
                }
    }

    [Fact]
    public void HandComputedSlicesOfEightBitCodes()
    {
        byte[] q = { 0, 31, 32, 95, 96, 159, 160, 223, 224, 255 };
        // r = 2, k = 6: buckets split at 32, 96, 160, 224; 224.. would be 4 and clamps to 3
        Assert.Equal(new byte[] { 0, 0, 1, 1, 2, 2, 3, 3, 3, 3 }, NestedSlice.Slice(q, 8, 2));
        // r = 4, k = 4: (q + 8) >> 4
        Assert.Equal(new byte[] { 0, 2, 2, 6, 6, 10, 10, 14, 14, 15 }, NestedSlice.Slice(q, 8, 4));
    }

    [Fact]
    public void ExtraPrecisionKeepsTheOverflowBucketAndCountsEscapeBits()
    {
        byte[] q = { 255, 224, 223, 160, 159, 0 };
        ExtraPrecisionSlice s = NestedSlice.SliceExtra(q, 8, 2);
        Assert.Equal(new byte[] { 4, 4, 3, 3, 2, 0 }, s.Codes);
        Assert.Equal(2, s.OverflowCount);
        Assert.Equal(new byte[] { 0b0000_0011 }, s.OverflowMask);
        Assert.Equal(4, s.EscapeBitCount);                    // four positions hold the top code 3
        Assert.Equal(new byte[] { 0b0000_0011 }, s.EscapeStream); // escapes 1, 1, 0, 0
        Assert.Equal(2 + 4.0 / 6, s.EffectiveBits, 12);
        Assert.Equal(new byte[] { 3, 3, 3, 3, 2, 0 }, s.BaseCodes());
    }

    [Fact]
    public void ExtraPrecisionAtTheMasterWidthHasNoOverflowAndNoCost()
    {
        byte[] q = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        ExtraPrecisionSlice s = NestedSlice.SliceExtra(q, 8, 8);
        Assert.Equal(q, s.Codes);
        Assert.Equal(0, s.OverflowCount);
        Assert.Equal(0, s.EscapeBitCount);
        Assert.Equal(8.0, s.EffectiveBits);
    }

    [Fact]
    public void ExtraPrecisionMatchesClosedFormAndDecodesFromItsStorage()
    {
        var rng = new Random(11);
        for (int c = 2; c <= 8; c++)
            for (int r = 1; r < c; r++)
            {
                byte[] q = new byte[rng.Next(0, 300)];
                for (int i = 0; i < q.Length; i++) q[i] = (byte)rng.Next(0, 1 << c);
                ExtraPrecisionSlice s = NestedSlice.SliceExtra(q, c, r);
                int k = c - r, overflow = 0, top = 0;
                for (int i = 0; i < q.Length; i++)
                {
                    int expect = (int)Math.Floor(q[i] / Math.Pow(2, k) + 0.5);
                    Assert.Equal(expect, s.Codes[i]);
                    Assert.InRange(expect, 0, 1 << r);
                    bool over = q[i] >= (1 << c) - (1 << (k - 1));
                    Assert.Equal(over, expect == 1 << r);
                    Assert.Equal(over, (s.OverflowMask[i >> 3] >> (i & 7) & 1) == 1);
                    overflow += over ? 1 : 0;
                    top += expect >= (1 << r) - 1 ? 1 : 0;
                }
                Assert.Equal(overflow, s.OverflowCount);
                Assert.Equal(top, s.EscapeBitCount);
                Assert.Equal(q.Length == 0 ? r : r + (double)top / q.Length, s.EffectiveBits, 12);
                byte[] decoded = ExtraPrecisionSlice.Decode(s.BaseCodes(), c, r, s.EscapeStream, s.EscapeBitCount);
                Assert.Equal(s.Codes, decoded);
            }
    }

    [Fact]
    public void SlicedCodesDequantizeWithTheMasterScaleAndZero()
    {
        var rng = new Random(5);
        int rows = 3, cols = 13;
        float[] w = Quantization.AffineQuantizerTests.RandomWeights(rng, rows * cols);
        (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, rows, cols, QuantSpec.Grouped(8, 4));
        for (int r = 1; r <= 8; r++)
        {
            byte[] s = NestedSlice.Slice(q, 8, r);
            float[] back = NestedSlice.Dequantize(s, p, r);
            for (int i = 0; i < q.Length; i++)
            {
                int row = i / cols, col = i % cols;
                float expect = p.Scale(row, col) * (s[i] * (1 << (8 - r)) - p.Zero(row, col));
                Assert.Equal(expect, back[i]);
            }
            if (r == 8) Assert.Equal(AffineQuantizer.DequantizeMatrix(q, p), back);
        }
        // hand case: α = 0.5, z = 100, r = 2 → S = (200 + 32) >> 6 = 3 → ŵ = 0.5·(3·64 − 100) = 46
        var one = new QuantParams(1, 1, 8, QuantScheme.Asymmetric, Granularity.PerTensor, 1, new[] { 0.5f }, new byte[] { 100 });
        Assert.Equal(46f, NestedSlice.Dequantize(NestedSlice.Slice(new byte[] { 200 }, 8, 2), one, 2)[0]);
    }

    [Theory]
    [InlineData(8, 0)]
    [InlineData(8, 9)]
    [InlineData(4, 5)]
    [InlineData(0, 0)]
    [InlineData(9, 4)]
    public void BadSliceWidthsThrow(int c, int r)
    {
        var ex = Assert.Throws<MatqException>(() => NestedSlice.Slice(0, c, r));
        Assert.Contains(c is < 1 or > 8 ? $"masterBits = {c}" : $"sliceBits = {r}", ex.Message);
    }

    [Property(MaxTest = 300)]
    public bool SlicingIsMonotoneInTheCode(byte a, byte b, byte rRaw)
    {
        int r = rRaw % 8 + 1;
        (byte lo, byte hi) = a <= b ? (a, b) : (b, a);
        return NestedSlice.Slice(lo, 8, r) <= NestedSlice.Slice(hi, 8, r);
    }
}
