// The packed group parameters (Packed/PackedGroupParams): a symmetric tensor (every zero the same, as symmetric artifacts
// store 2^(c−1)) keeps one fp16 scale per group and no zeros, at every slice width; a tensor whose zeros differ keeps
// an fp16 zero per group (exact: the artifact's integer zero over 2^(c−r)); the bytes a GEMV reads follow; and the kernels' fp16 → fp32 conversion equals .NET's (Half → float) over a
// tensor whose scales span 2^−34..2^0 (fp16 subnormals after the per-tensor power of two) and signed fractional zeros.
using Matq.Kernels.Packed;
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Packed;

public sealed class PackedGroupParamsTests
{
    [Theory]
    [InlineData(8)]
    [InlineData(6)]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    [InlineData(1)]
    public void A_symmetric_tensor_stores_no_zero_array(int r)
    {
        var rng = new Random(r);
        int rows = 37, cols = 96, groups = 3;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(1, 256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
        var zeros = Enumerable.Repeat(128f, rows * groups).ToArray();
        var w = PackedMatrix.FromMaster(master, rows, cols, 32, scales, zeros, 8, r);
        Assert.True(w.Params.Symmetric);
        Assert.Null(w.Params.Zeros);
        // the slice of a constant zero is a constant: z_r = 2^(c−1) / 2^(c−r) = 2^(r−1)
        Assert.Equal(MathF.ScaleB(1f, r - 1), w.Params.ZeroCode);
        Assert.Equal((long)w.Data.Length + 2L * w.Params.Scales.LongLength, w.WeightBytes);
        var dense = GemvPackedReference.Dequantize(w);
        var sliced = NestedSlice.Slice(master, 8, r);
        for (int i = 0; i < rows * cols; i++)
        {
            int j = i / cols * groups + i % cols / 32;
            float step = 1 << (8 - r);
            float want = (float)((double)Fp16.Round(scales[j] * step) * (sliced[i] - 128 / step));
            Assert.Equal(want, dense[i]);
            // and the artifact's α(S·2^(c−r) − z) within the fp16 rounding of the scale
            float artifact = scales[j] * (sliced[i] * step - 128);
            Assert.True(Math.Abs(dense[i] - artifact) <= Math.Abs(artifact) / 2048 + 1e-9, $"element {i}: {dense[i]} vs {artifact}");
        }
    }

    [Fact]
    public void A_tensor_whose_zeros_differ_keeps_a_zero_per_group()
    {
        var rng = new Random(11);
        int rows = 20, cols = 64, groups = 2;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-4)).ToArray();
        var zeros = Enumerable.Repeat(128f, rows * groups).ToArray();
        zeros[17] = 127;   // one group off the constant
        var w = PackedMatrix.FromMaster(master, rows, cols, 32, scales, zeros, 8, 4);
        Assert.False(w.Params.Symmetric);
        Assert.NotNull(w.Params.Zeros);
        Assert.Equal((long)w.Data.Length + 4L * w.Params.Scales.LongLength, w.WeightBytes);
        Assert.Equal(127f / 16, w.Zero(17 / groups, 17 % groups));   // the slice's zero, exact
        var dense = GemvPackedReference.Dequantize(w);
        var sliced = NestedSlice.Slice(master, 8, 4);
        for (int i = 0; i < rows * cols; i++)
        {
            int j = i / cols * groups + i % cols / 32;
            float want = (float)((double)Fp16.Round(scales[j] * 16) * (sliced[i] - zeros[j] / 16));
            Assert.Equal(want, dense[i]);
        }
        // the SIMD GEMVs read the zeros per group (bit for bit the reference's fold)
        EveryInt8PathEqualsTheReference(w, Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray());
    }

    // the int8-activation GEMV of every path this machine runs equals GemvInt8Reference bit for bit
    private static void EveryInt8PathEqualsTheReference(PackedMatrix w, float[] x)
    {
        var want = new float[w.Rows];
        var got = new float[w.Rows];
        GemvInt8Reference.Gemv(w, x, want);
        foreach (var path in GemvInt8Simd.Paths.Where(GemvInt8Simd.IsSupported))
        {
            GemvInt8Simd.Gemv(w, x, got, path, 1);
            Assert.Equal(want, got);
        }
    }

    [Theory]
    [InlineData(8, 4.0 + 0.5)]
    [InlineData(4, 4.0 + 0.5)]
    [InlineData(2, 2.0 + 0.5)]
    public void Symmetric_groups_of_32_cost_half_a_bit_per_weight(int bitsIn, double bitsPerWeight)
    {
        // 64 × 256, groups of 32: codes r bits (8 → served at 4), one fp16 scale per 32 weights
        int rows = 64, cols = 256, groups = 8, r = bitsIn == 8 ? 4 : bitsIn;
        var w = PackedMatrix.FromMaster(new byte[rows * cols], rows, cols, 32, Enumerable.Repeat(0.01f, rows * groups).ToArray(),
            Enumerable.Repeat(128f, rows * groups).ToArray(), 8, r);
        Assert.Equal(bitsPerWeight, 8.0 * w.WeightBytes / (rows * cols));
    }

    [Fact]
    public void The_kernels_fp16_conversion_is_exact_over_a_wide_range_and_signed_zeros()
    {
        var rng = new Random(5);
        int rows = 48, cols = 128, g = 32, groups = 4;
        var codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(16)).ToArray();
        // scales 2^−34..2^0: after T the smallest are fp16 subnormals (and a few flush to 0)
        var scales = Enumerable.Range(0, rows * groups).Select(_ => MathF.ScaleB((float)(1 + rng.NextDouble()), -rng.Next(35))).ToArray();
        var biases = Enumerable.Range(0, rows * groups).Select(i => -8 * scales[i] * (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = PackedMatrix.FromCodes(codes, rows, cols, 4, g, scales, biases);
        Assert.Contains(w.Params.Scales, h => Half.IsSubnormal(h));
        for (int o = 0; o < rows; o++)
            for (int j = 0; j < groups; j++)
            {
                long e = (o / 16 * groups + j) * 16 + o % 16;
                Assert.Equal((float)w.Params.Scales[e] * w.Params.TensorScale, w.Scale(o, j));
                // relative 2^−11 where the fp16 value is normal
                if (Half.IsNormal(w.Params.Scales[e])) Assert.True(Math.Abs(w.Scale(o, j) - scales[o * groups + j]) <= scales[o * groups + j] / 2048);
            }
        var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        EveryInt8PathEqualsTheReference(w, x);
        var got = new float[rows];
        var xs = new float[3 * cols];
        for (int t = 0; t < 3; t++) x.CopyTo(xs, t * cols);
        var wantRows = new float[3 * rows];
        var gotRows = new float[3 * rows];
        GemmInt8Reference.Gemm(w, xs, 3, wantRows);
        foreach (var path in GemmInt8Simd.Paths.Where(GemvInt8Simd.IsSupported))
        {
            GemmInt8Simd.Gemm(w, xs, 3, gotRows, path, 1);
            Assert.Equal(wantRows, gotRows);
        }
        // fp32 activations: the reference in double; the tolerance of GemvPackedSimdTests
        var yr = new float[rows];
        GemvPackedReference.Gemv(w, x, yr);
        var dense = GemvPackedReference.Dequantize(w);
        foreach (bool v128 in new[] { false, true })
        {
            GemvPackedSimd.Gemv(w, x, got, v128, 1);
            for (int o = 0; o < rows; o++)
            {
                double mag = 0;
                for (int k = 0; k < cols; k++) mag += Math.Abs(dense[o * cols + k] * x[k]);
                Assert.True(Math.Abs(got[o] - yr[o]) <= 1e-5 * mag + 1e-12, $"row {o} (v128={v128}): {got[o]} vs {yr[o]}");
            }
        }
    }
}
