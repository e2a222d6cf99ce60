// The vectorized packed GEMV (AVX2 and the portable Vector128 path, serial and multithreaded) against the scalar
// reference, odd shapes included. Tolerance: |Δy| ≤ 1e-5·Σ_k |ŵ_k·x_k| + 1e-6 (float summation in another order).
using Matq.Kernels.Packed;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Simd;

public sealed class GemvPackedSimdTests
{
    public static IEnumerable<object[]> Shapes()
    {
        int[][] shapes = [[1, 7], [3, 32], [17, 100], [3, 31], [17, 257], [64, 512], [33, 4096], [300, 96]];
        foreach (var s in shapes)
            foreach (int bits in PackedWidths.Bits)   // every row of the width table
                foreach (int group in new[] { -1, 32, 64, 128 })
                    if (group == -1 || group <= s[1])
                        foreach (bool sym in new[] { false, true }) yield return [s[0], s[1], group, bits, sym];
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SimdMatchesReference(int rows, int cols, int group, int bits, bool symmetric)
    {
        var rng = new Random(TestSeed.Of(rows, cols, group, bits));
        int g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.02 + 1e-3)).ToArray();
        var zeros = Enumerable.Range(0, rows * groups).Select(_ => symmetric ? 128f : rng.Next(256)).ToArray();
        int[]? perm = rows % 2 == 1 ? Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).ToArray() : null;
        var w = PackedMatrix.FromMaster(master, rows, cols, group, scales, zeros, 8, bits, perm);
        Assert.Equal(symmetric || rows * w.GroupsPerRow == 1, w.Params.Symmetric);   // one group: its zero is constant
        var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

        var want = new float[rows];
        GemvPackedReference.Gemv(w, x, want);
        var dense = GemvPackedReference.Dequantize(w);
        foreach (var (v128, threads) in new[] { (false, -1), (false, 1), (true, -1) })
        {
            var got = new float[rows];
            GemvPackedSimd.Gemv(w, x, got, v128, threads);
            for (int o = 0; o < rows; o++)
            {
                double mag = 0;
                for (int k = 0; k < cols; k++) mag += Math.Abs(dense[o * cols + k] * x[k]);
                Assert.True(Math.Abs(got[o] - want[o]) <= 1e-5 * mag + 1e-6,
                    $"row {o} (v128={v128}, threads={threads}): got {got[o]}, reference {want[o]}, Σ|ŵx| = {mag}");
            }
        }
    }

    [Fact]
    public void F32GemvMatchesScalar()
    {
        var rng = new Random(3);
        int rows = 37, cols = 211;
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var x = Enumerable.Range(0, cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var y = new float[rows];
        GemvF32Simd.Gemv(w, rows, cols, x, y);
        for (int o = 0; o < rows; o++)
        {
            double s = 0;
            for (int k = 0; k < cols; k++) s += (double)w[o * cols + k] * x[k];
            Assert.Equal(s, y[o], 1e-4);
        }
    }
}
