// The packed GEMM (prefill) against the scalar reference GEMV row by row (AVX2 and portable paths, 1 and many threads),
// odd shapes included; the width fallback (r = 1 → 2-bit, r = 5..7 → 8-bit containers) and packed row lookups.
// Tolerance as for the GEMV: |Δy| ≤ 1e-5·Σ_k |ŵ_k·x_k| + 1e-6.
using Matq.Kernels.Packed;
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Simd;

public sealed class GemmPackedSimdTests
{
    public static IEnumerable<object[]> Cases()
    {
        int[][] shapes = [[1, 7, 1], [5, 33, 3], [17, 100, 32], [4, 64, 2], [37, 257, 9], [64, 512, 5]];
        foreach (var s in shapes)
            foreach (int bits in PackedWidths.Bits)   // every row of the width table
                foreach (int group in new[] { -1, 32, 128 })
                    if (group == -1 || group <= s[1])
                        foreach (bool sym in new[] { false, true }) yield return [s[0], s[1], s[2], group, bits, sym];
    }

    /// <summary>A random packed matrix from 8-bit master codes; <paramref name="symmetric"/>: every zero 2^(c−1) = 128, as
    /// symmetric artifacts store it (the layout keeps no offsets), else random zeros (the fp16 offset layout).</summary>
    internal static PackedMatrix Random(Random rng, int rows, int cols, int group, int bits, bool perm, bool symmetric = false)
    {
        int g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.02 + 1e-3)).ToArray();
        var zeros = Enumerable.Range(0, rows * groups).Select(_ => symmetric ? 128f : rng.Next(256)).ToArray();
        // asymmetric with more than one group: two zeros that differ in the top master bit differ at every slice width,
        // so the matrix is asymmetric whatever the draw (two rows of one group each could otherwise coincide)
        if (!symmetric && zeros.Length > 1) zeros[1] = (zeros[0] + 128) % 256;
        int[]? p = perm ? Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).ToArray() : null;
        return PackedMatrix.FromMaster(master, rows, cols, group, scales, zeros, 8, bits, p);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GemmMatchesTheReferenceGemvRowByRow(int rows, int cols, int t, int group, int bits, bool symmetric)
    {
        var rng = new Random(TestSeed.Of(rows, cols, t, group, bits));
        var w = Random(rng, rows, cols, group, bits, perm: rows % 2 == 1, symmetric);
        Assert.Equal(symmetric || rows * w.GroupsPerRow == 1, w.Params.Symmetric);   // one group: its zero is constant
        var x = Enumerable.Range(0, t * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var dense = GemvPackedReference.Dequantize(w);
        foreach (var (v128, threads) in new[] { (false, -1), (false, 1), (true, 2) })
        {
            var y = new float[t * rows];
            GemmPackedSimd.Gemm(w, x, t, y, v128, threads);
            for (int r = 0; r < t; r++)
            {
                var want = new float[rows];
                GemvPackedReference.Gemv(w, x.AsSpan(r * cols, cols), want);
                for (int o = 0; o < rows; o++)
                {
                    double mag = 0;
                    for (int k = 0; k < cols; k++) mag += Math.Abs(dense[o * cols + k] * x[r * cols + k]);
                    Assert.True(Math.Abs(y[r * rows + o] - want[o]) <= 1e-5 * mag + 1e-6,
                        $"[{r}, {o}] (v128={v128}, threads={threads}): got {y[r * rows + o]}, reference {want[o]}");
                }
            }
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(5, 8)]
    [InlineData(6, 8)]
    [InlineData(7, 8)]
    public void WidthsWithoutALayoutUseTheNextContainerAndKeepTheirValues(int r, int container)
    {
        var rng = new Random(r);
        int rows = 3, cols = 70, groups = 3;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => 0.01f + 0.001f * rng.Next(10)).ToArray();
        var zeros = Enumerable.Range(0, rows * groups).Select(_ => (float)rng.Next(256)).ToArray();
        var w = PackedMatrix.FromMaster(master, rows, cols, 32, scales, zeros, 8, r);
        Assert.Equal(container, w.Bits);
        Assert.Equal(r, w.SliceBits);
        var dense = GemvPackedReference.Dequantize(w);
        var sliced = NestedSlice.Slice(master, 8, r);
        for (int o = 0; o < rows; o++)
            for (int k = 0; k < cols; k++)
            {
                int gi = o * groups + k / 32;
                // α·2^(c−r) as the layout keeps it (fp16) times S − z/2^(c−r) (exact), in double as the reference
                float want = (float)((double)Packed.Fp16.Round(scales[gi] * (1 << (8 - r))) * (sliced[o * cols + k] - zeros[gi] / (1 << (8 - r))));
                Assert.Equal(want, dense[o * cols + k]);
            }
    }

    [Fact]
    public void DequantizeRowEqualsTheReferenceDequantization()
    {
        var w = Random(new Random(5), 7, 45, 32, 3, perm: true);
        var dense = GemvPackedReference.Dequantize(w);
        var row = new float[45];
        for (int o = 0; o < 7; o++)
        {
            w.DequantizeRow(o, row);
            Assert.Equal(dense.AsSpan(o * 45, 45).ToArray(), row);
        }
    }

    [Fact]
    public void FromFloatIsRoundToNearestWithinHalfAStep()
    {
        var rng = new Random(9);
        int rows = 6, cols = 96;
        var wf = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var w = PackedMatrix.FromFloat(wf, rows, cols, 8, 32);
        var dense = GemvPackedReference.Dequantize(w);
        for (int i = 0; i < wf.Length; i++)
        {
            // half a step, plus what the fp16 scale may add: 2^−11 of α·|S − z| ≤ 255α
            int o = i / cols, g = (i % cols) / 32;
            double fp16 = 255 * w.Scale(o, g) / 2048;
            Assert.True(Math.Abs(dense[i] - wf[i]) <= 0.5 * w.Scale(o, g) + fp16 + 1e-6, $"element {i}");
        }
    }

    [Fact]
    public void F32GemmMatchesScalar()
    {
        var rng = new Random(4);
        int rows = 70, cols = 45, t = 3;
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var x = Enumerable.Range(0, t * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var y = new float[t * rows];
        GemmF32Simd.Gemm(w, rows, cols, x, t, y);
        for (int r = 0; r < t; r++)
            for (int o = 0; o < rows; o++)
            {
                double s = 0;
                for (int k = 0; k < cols; k++) s += (double)w[o * cols + k] * x[r * cols + k];
                Assert.Equal(s, y[r * rows + o], 1e-4);
            }
    }
}
