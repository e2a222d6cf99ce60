// Tests the scalar affine quantizer against hand-computed cases, the α/2 error bound over every layout and
// bit width, per-group parameter placement (short last group) and option validation.
using Matq.Kernels.Quantization;

namespace Matq.Kernels.Tests.Quantization;

public class AffineQuantizerTests
{
    public static IEnumerable<object[]> Specs()
    {
        for (int bits = 1; bits <= 8; bits++)
        {
            yield return new object[] { bits, Granularity.PerTensor, 0, QuantScheme.Asymmetric };
            yield return new object[] { bits, Granularity.PerChannel, 0, QuantScheme.Asymmetric };
            yield return new object[] { bits, Granularity.Group, 5, QuantScheme.Asymmetric };
            yield return new object[] { bits, Granularity.Group, 8, QuantScheme.Asymmetric };
            if (bits >= 2)
            {
                yield return new object[] { bits, Granularity.PerTensor, 0, QuantScheme.Symmetric };
                yield return new object[] { bits, Granularity.PerChannel, 0, QuantScheme.Symmetric };
                yield return new object[] { bits, Granularity.Group, 7, QuantScheme.Symmetric };
            }
        }
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void DequantizationErrorIsAtMostHalfAStep(int bits, Granularity granularity, int groupSize, QuantScheme scheme)
    {
        var spec = new QuantSpec(bits, granularity, groupSize, scheme);
        var rng = new Random(1000 * bits + 10 * (int)granularity + groupSize + (int)scheme);
        for (int trial = 0; trial < 20; trial++)
        {
            int rows = rng.Next(1, 6), cols = rng.Next(1, 40);
            float[] w = RandomWeights(rng, rows * cols);
            (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
            float[] back = AffineQuantizer.DequantizeMatrix(q, p);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                {
                    int i = r * cols + c;
                    float a = p.Scale(r, c);
                    Assert.True(a > 0);
                    Assert.InRange(q[i], 0, (1 << bits) - 1);
                    float err = MathF.Abs(w[i] - back[i]);
                    float tol = a / 2 + 1e-5f * (MathF.Abs(w[i]) + a);
                    Assert.True(err <= tol, $"[{r},{c}] w={w[i]} ŵ={back[i]} α={a} err={err} > {tol}");
                }
        }
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void ZeroIsExactlyRepresentableAndSymmetricNeverUsesCodeZero(int bits, Granularity granularity, int groupSize, QuantScheme scheme)
    {
        var spec = new QuantSpec(bits, granularity, groupSize, scheme);
        var rng = new Random(bits * 7 + groupSize);
        int rows = 3, cols = 17;
        float[] w = RandomWeights(rng, rows * cols);
        w[5] = 0f;
        w[rows * cols - 1] = 0f;
        (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
        float[] back = AffineQuantizer.DequantizeMatrix(q, p);
        Assert.Equal(0f, back[5]);
        Assert.Equal(0f, back[rows * cols - 1]);
        if (scheme == QuantScheme.Symmetric)
        {
            Assert.All(p.Zeros, z => Assert.Equal(1 << (bits - 1), z));
            Assert.DoesNotContain((byte)0, q);
        }
    }

    [Fact]
    public void GroupParamsComeFromEachGroupIncludingTheShortLastOne()
    {
        var rng = new Random(7);
        int rows = 4, cols = 23, g = 6;          // groups of 6, 6, 6, 5
        float[] w = RandomWeights(rng, rows * cols);
        var spec = QuantSpec.Grouped(4, g);
        QuantParams p = AffineQuantizer.ComputeParams(w, rows, cols, spec);
        Assert.Equal(4, p.GroupsPerRow);
        Assert.Equal(rows * 4, p.Scales.Length);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < 4; j++)
            {
                var grp = w.AsSpan(r * cols + j * g, Math.Min(g, cols - j * g)).ToArray();
                float lo = Math.Min(grp.Min(), 0f), hi = Math.Max(grp.Max(), 0f);
                float a = (hi - lo) / 15f;
                Assert.Equal(a, p.Scales[r * 4 + j]);
                Assert.Equal((byte)Math.Clamp(Math.Round(-lo / a, MidpointRounding.ToEven), 0, 15), p.Zeros[r * 4 + j]);
            }
    }

    [Fact]
    public void PerTensorRepeatsOneScaleAndPerChannelUsesEachRow()
    {
        float[] w = { 1, 2, -3, 4, 0.5f, -0.5f };
        QuantParams t = AffineQuantizer.ComputeParams(w, 2, 3, QuantSpec.PerTensor(8));
        Assert.Equal(new[] { 7f / 255f, 7f / 255f }, t.Scales);
        QuantParams c = AffineQuantizer.ComputeParams(w, 2, 3, QuantSpec.PerChannel(8));
        Assert.Equal(new[] { 5f / 255f, 4.5f / 255f }, c.Scales);
        Assert.Equal(1, c.GroupsPerRow);
    }

    [Fact]
    public void HandComputedTwoBitCase()
    {
        // lo = −1.5, hi = 1.5, α = 3/3 = 1, z = round(1.5) = 2 (ties to even).
        // w/α = −1.5 → −2 → 0; −0.5 → −0 → 2; 0 → 2; 1.5 → 2 → 4 → clamp 3.
        float[] w = { -1.5f, -0.5f, 0f, 1.5f };
        (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(w, 1, 4, QuantSpec.PerTensor(2));
        Assert.Equal(1f, p.Scales[0]);
        Assert.Equal(2, p.Zeros[0]);
        Assert.Equal(new byte[] { 0, 2, 2, 3 }, q);
        Assert.Equal(new[] { -2f, 0f, 0f, 1f }, AffineQuantizer.DequantizeMatrix(q, p));
    }

    [Fact]
    public void HandComputedThreeBitAndSymmetricCases()
    {
        // 3-bit: lo = −2, hi = 4, α = 6/7, z = round(2.33) = 2; w/α = −2.33, −1.17, 0, 1.17, 4.67.
        (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(new float[] { -2, -1, 0, 1, 4 }, 1, 5, QuantSpec.PerTensor(3));
        Assert.Equal(6f / 7f, p.Scales[0]);
        Assert.Equal(2, p.Zeros[0]);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 7 }, q);

        // symmetric 4-bit: α = 7/7 = 1, z = 8; −3.5 rounds to −4 (even) → 4.
        (p, q) = AffineQuantizer.QuantizeMatrix(new float[] { -7, -3.5f, 0, 2, 7 }, 1, 5, QuantSpec.PerTensor(4, QuantScheme.Symmetric));
        Assert.Equal(1f, p.Scales[0]);
        Assert.Equal(8, p.Zeros[0]);
        Assert.Equal(new byte[] { 1, 4, 8, 10, 15 }, q);

        // all positive weights still include 0: lo = 0, hi = 3, α = 1, z = 0.
        (p, q) = AffineQuantizer.QuantizeMatrix(new float[] { 1, 2, 3 }, 1, 3, QuantSpec.PerTensor(2));
        Assert.Equal((1f, (byte)0), (p.Scales[0], p.Zeros[0]));
        Assert.Equal(new byte[] { 1, 2, 3 }, q);
    }

    [Fact]
    public void ConstantZeroGroupGetsMinScaleAndDequantizesToZero()
    {
        (QuantParams p, byte[] q) = AffineQuantizer.QuantizeMatrix(new float[6], 2, 3, QuantSpec.PerChannel(4));
        Assert.All(p.Scales, a => Assert.Equal(AffineQuantizer.MinScale, a));
        Assert.All(AffineQuantizer.DequantizeMatrix(q, p), v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(9)]
    [InlineData(-1)]
    public void BadBitsThrowNamingTheOption(int bits)
    {
        var ex = Assert.Throws<MatqException>(() => QuantSpec.PerChannel(bits));
        Assert.Contains($"bits = {bits}", ex.Message);
        Assert.Contains("1..8", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-4)]
    public void BadGroupSizeThrowsNamingTheOption(int groupSize)
    {
        var ex = Assert.Throws<MatqException>(() => QuantSpec.Grouped(4, groupSize));
        Assert.Contains($"groupSize = {groupSize}", ex.Message);
    }

    [Fact]
    public void SymmetricOneBitIsRejected()
    {
        var ex = Assert.Throws<MatqException>(() => QuantSpec.PerTensor(1, QuantScheme.Symmetric));
        Assert.Contains("bits = 1", ex.Message);
    }

    [Fact]
    public void GroupLargerThanTheRowIsTheRow()
    {
        float[] w = { 1, -2, 3, 0.25f, 5, -1 };
        QuantParams g = AffineQuantizer.ComputeParams(w, 2, 3, QuantSpec.Grouped(4, 128));
        QuantParams c = AffineQuantizer.ComputeParams(w, 2, 3, QuantSpec.PerChannel(4));
        Assert.Equal(c.Scales, g.Scales);
        Assert.Equal(c.Zeros, g.Zeros);
        Assert.Equal(3, g.GroupSize);
    }

    [Fact]
    public void RoundClipRoundsHalfToEvenThenClips()
    {
        Assert.Equal(2f, Rounding.RoundClip(2.5f, 0, 10));
        Assert.Equal(4f, Rounding.RoundClip(3.5f, 0, 10));
        Assert.Equal(0f, Rounding.RoundClip(-0.7f, 0, 3));
        Assert.Equal(7f, Rounding.RoundClip(9.6f, 0, 7));
        Assert.Equal(-2f, Rounding.RoundClip(-2.4f, -4, 3));
    }

    internal static float[] RandomWeights(Random rng, int n)
    {
        // a mix of scales and signs; sometimes all positive or all negative to exercise the zero-inclusion rule
        float scale = (float)Math.Pow(10, rng.NextDouble() * 4 - 3);
        int mode = rng.Next(4);
        var w = new float[n];
        for (int i = 0; i < n; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1) * scale;
            w[i] = mode switch { 1 => MathF.Abs(v), 2 => -MathF.Abs(v), _ => v };
        }
        return w;
    }
}
