// The integer GEMV (int8 activations): every path this machine supports (AVX-512, AVX-VNNI, AVX2, Vector128; serial and threaded)
// equals GemvInt8Reference bit for bit, and its integer group dots equal the reference's exactly, over odd shapes (cols
// not a multiple of 32, partial steps at group ends, rows not a multiple of the chunk, per-channel, permutations);
// the int8 result stays within the activation-quantization error of the fp32 reference.
using Matq.Kernels.Packed;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Simd;

public sealed class GemvInt8SimdTests
{
    public static IEnumerable<object[]> Cases()
    {
        int[][] shapes = [[1, 7], [3, 32], [17, 100], [5, 64], [40, 257], [33, 512], [2, 1000], [70, 96]];
        foreach (var s in shapes)
            foreach (int bits in PackedWidths.Bits)   // every row of the width table
                foreach (int group in new[] { -1, 32, 64, 128 })
                    if (group == -1 || group <= s[1])
                        foreach (bool sym in new[] { false, true }) yield return [s[0], s[1], group, bits, sym];
    }

    private static IEnumerable<Int8KernelPath> Paths() =>
        GemvInt8Simd.Paths.Where(GemvInt8Simd.IsSupported);

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPathEqualsTheReferenceBitForBit(int rows, int cols, int group, int bits, bool symmetric)
    {
        var rng = new Random(TestSeed.Of(rows, cols, group, bits, 8));
        var w = GemmPackedSimdTests.Random(rng, rows, cols, group, bits, perm: rows % 2 == 1, symmetric);
        Assert.Equal(symmetric || rows * w.GroupsPerRow == 1, w.Params.Symmetric);   // one group: its zero is constant
        var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var want = new float[rows];
        GemvInt8Reference.Gemv(w, x, want);
        var a = Int8Activations.Prepare(w, x);
        var refDots = new long[w.GroupsPerRow];
        var dots = new long[w.GroupsPerRow];
        foreach (var path in Paths())
        {
            for (int o = 0; o < rows; o++)
            {
                GemvInt8Reference.GroupDots(w, a.Codes, o, refDots);
                GemvInt8Simd.GroupDots(w, a, o, dots, path);
                Assert.Equal(refDots, dots);
            }
            foreach (int threads in new[] { 1, -1 })
            {
                var got = new float[rows];
                GemvInt8Simd.Gemv(w, x, got, path, threads);
                Assert.Equal(want, got);
            }
        }
    }

    // Largest codes against ±127 everywhere: the int16/int32 bounds of every path at their limits (per-channel rows
    // of 4096 columns, groups of 128), and a group wider than 65536 columns, whose dot exceeds int32 and is summed in int64.
    [Theory]
    [InlineData(8, 4096, -1)]
    [InlineData(4, 4096, -1)]
    [InlineData(3, 4096, -1)]
    [InlineData(2, 4096, -1)]
    [InlineData(8, 256, 128)]
    [InlineData(3, 256, 128)]
    [InlineData(8, 65600, -1)]
    public void ExtremeCodesAndActivationsStayExact(int bits, int cols, int group)
    {
        int rows = 17, g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var codes = Enumerable.Repeat((byte)((1 << bits) - 1), rows * cols).ToArray();
        var scales = Enumerable.Repeat(1e-3f, rows * groups).ToArray();
        var biases = Enumerable.Repeat(-0.1f, rows * groups).ToArray();
        var w = PackedMatrix.FromCodes(codes, rows, cols, bits, group, scales, biases);
        foreach (float sign in new[] { 1f, -1f })
        {
            var x = Enumerable.Repeat(sign, cols).ToArray();
            var a = Int8Activations.Prepare(w, x);
            var want = new long[w.GroupsPerRow];
            var got = new long[w.GroupsPerRow];
            GemvInt8Reference.GroupDots(w, a.Codes, 0, want);
            Assert.Equal(sign * 127L * ((1 << bits) - 1) * Math.Min(g, cols), want[0]);
            var y = new float[rows];
            GemvInt8Reference.Gemv(w, x, y);
            foreach (var path in Paths())
            {
                for (int o = 0; o < rows; o += 16)
                {
                    GemvInt8Simd.GroupDots(w, a, o, got, path);
                    Assert.Equal(want, got);
                }
                var yp = new float[rows];
                GemvInt8Simd.Gemv(w, x, yp, path, 1);
                Assert.Equal(y, yp);
            }
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(2)]
    public void TheIntegerResultIsWithinTheActivationQuantizationErrorOfTheFp32Reference(int bits)
    {
        var rng = new Random(bits);
        int rows = 64, cols = 384;
        var w = GemmPackedSimdTests.Random(rng, rows, cols, 128, bits, perm: false);
        var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var f = new float[rows];
        var q = new float[rows];
        GemvPackedReference.Gemv(w, x, f);
        GemvInt8Simd.Gemv(w, x, q);
        var dense = GemvPackedReference.Dequantize(w);
        float step = x.Max(Math.Abs) / 127f;
        for (int o = 0; o < rows; o++)
        {
            // each activation moves at most half a step: |Δy| ≤ ½·step·Σ|ŵ|
            double bound = 0.5 * step * dense.AsSpan(o * cols, cols).ToArray().Sum(Math.Abs) + 1e-5;
            Assert.True(Math.Abs(f[o] - q[o]) <= bound, $"row {o}: fp32 {f[o]}, int8 {q[o]}, bound {bound}");
        }
        Assert.NotEqual(f, q);   // the paths differ: the activations really were quantized
    }

    [Fact]
    public void QuantizeIsSymmetricRoundHalfEvenAndHandlesZeroAndNaN()
    {
        var q = new sbyte[4];
        float s = Int8Activations.Quantize([1.27f, -0.635f, 0.005f, 0.015f], q);
        Assert.Equal(0.01f, s, 6);
        Assert.Equal(127, q[0]);
        Assert.Equal(-64, q[1]);                 // −63.5 → −64 (half to even)
        Assert.Equal(0, q[2]);                   // 0.5 → 0 (half to even)
        Assert.Equal(2, q[3]);                   // 1.5 → 2
        Assert.Equal(0f, Int8Activations.Quantize([0f, 0f, 0f, 0f], q));
        Assert.All(q, v => Assert.Equal(0, v));
        Assert.True(float.IsNaN(Int8Activations.Quantize([1f, float.NaN, 0f, 0f], q)));
        var w = GemmPackedSimdTests.Random(new Random(1), 3, 64, 32, 4, perm: false);
        var y = new float[3];
        GemvInt8Simd.Gemv(w, Enumerable.Repeat(0f, 64).ToArray(), y);
        Assert.All(y, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void ActivationsPreparedForAnotherLayoutAreRefused()
    {
        var w1 = GemmPackedSimdTests.Random(new Random(1), 3, 64, 32, 4, perm: false);
        var w2 = GemmPackedSimdTests.Random(new Random(2), 3, 64, 64, 2, perm: false);
        var a = Int8Activations.Prepare(w1, new float[64]);
        Assert.Throws<ArgumentException>(() => GemvInt8Simd.Gemv(w2, a, new float[3]));
    }
}

public sealed class Int8ActivationsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(33)]
    [InlineData(1000)]
    public void VectorizedQuantizeEqualsTheScalarDefinition(int n)
    {
        var rng = new Random(n);
        var x = Enumerable.Range(0, n).Select(i => (float)((rng.NextDouble() - 0.5) * (i % 7 == 0 ? 100 : 3))).ToArray();
        x[n / 2] = 0.5f * x.Max(Math.Abs) / 127f * 3;           // lands on a tie: 1.5 steps
        var q = new sbyte[n];
        float s = Int8Activations.Quantize(x, q);
        Assert.Equal(x.Max(Math.Abs) / 127f, s);
        for (int i = 0; i < n; i++)
            Assert.Equal((sbyte)Math.Clamp(MathF.Round(x[i] / s, MidpointRounding.ToEven), -127f, 127f), q[i]);
    }

    [Fact]
    public void CodesAreInStoredOrderZeroPaddedWithGroupSums()
    {
        var w = GemmPackedSimdTests.Random(new Random(2), 2, 200, 64, 2, perm: true);
        var x = Enumerable.Range(0, 200).Select(i => (float)Math.Sin(i)).ToArray();
        var a = Int8Activations.Prepare(w, x);
        Assert.Equal(224, a.Codes.Length);
        var q = new sbyte[200];
        float s = Int8Activations.Quantize(Enumerable.Range(0, 200).Select(k => x[w.Perm![k]]).ToArray(), q);
        Assert.Equal(s, a.Scale);
        Assert.Equal(q, a.Codes.Take(200).ToArray());
        Assert.All(a.Codes.Skip(200), v => Assert.Equal(0, v));
        for (int g = 0; g < w.GroupsPerRow; g++)
            Assert.Equal(a.Codes.Skip(g * 64).Take(Math.Min(64, 200 - g * 64)).Sum(v => v), a.GroupSums[g]);
    }
}
