// The int8-activation GEMM (prefill): every path this machine supports (AVX-VNNI, AVX-512BW, AVX2, Vector128; serial
// and threaded) equals GemmInt8Reference bit for bit — integer group dots, the GEMV's fp32 epilogue — for every width of
// the table, odd T (token-block remainders), columns not a multiple of 32, groups and per-channel, permutations; equals
// the integer GEMV run row by row; extreme codes and activations stay exact; bad inputs are refused.
using Matq.Kernels.Packed;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Simd;

public sealed class GemmInt8SimdTests
{
    public static IEnumerable<object[]> Cases()
    {
        // [rows, cols, t]: t odd and even, below and above the 4-token block; cols past one 8-chunk decode block
        int[][] shapes = [[1, 7, 1], [5, 33, 3], [17, 100, 7], [4, 64, 2], [37, 257, 9], [33, 300, 5], [20, 1000, 13], [64, 512, 32]];
        foreach (var s in shapes)
            foreach (int bits in PackedWidths.Bits)   // every row of the width table
                foreach (int group in new[] { -1, 32, 64, 128 })
                    if (group == -1 || group <= s[1])
                        foreach (bool sym in new[] { false, true }) yield return [s[0], s[1], s[2], group, bits, sym];
    }

    private static IEnumerable<Int8KernelPath> Paths() => GemmInt8Simd.Paths.Where(GemvInt8Simd.IsSupported);

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPathEqualsTheReferenceBitForBit(int rows, int cols, int t, int group, int bits, bool symmetric)
    {
        var rng = new Random(TestSeed.Of(rows, cols, t, group, bits, 21));
        var w = GemmPackedSimdTests.Random(rng, rows, cols, group, bits, perm: rows % 2 == 1, symmetric);
        Assert.Equal(symmetric || rows * w.GroupsPerRow == 1, w.Params.Symmetric);   // one group: its zero is constant
        var x = Enumerable.Range(0, t * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        if (t > 2) x.AsSpan(cols, cols).Clear();   // an all-zero row (s = 0)
        var want = new float[t * rows];
        GemmInt8Reference.Gemm(w, x, t, want);
        Assert.Contains(want, v => v != 0);
        Assert.True(Paths().Count() >= 2, "at least one SIMD path besides Vector128 runs here");
        foreach (var path in Paths())
            foreach (int threads in new[] { 1, -1, 3 })
            {
                var got = new float[t * rows];
                GemmInt8Simd.Gemm(w, x, t, got, path, threads);
                for (int i = 0; i < got.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(got[i]),
                        $"{path}, {threads} threads: y[{i / rows}, {i % rows}] = {got[i]:R}, reference {want[i]:R}");
            }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    public void GemmEqualsTheIntegerGemvTokenByToken(int bits)
    {
        var rng = new Random(bits);
        int rows = 45, cols = 200, t = 11;
        var w = GemmPackedSimdTests.Random(rng, rows, cols, 64, bits, perm: true);
        var x = Enumerable.Range(0, t * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var y = new float[t * rows];
        GemmInt8Simd.Gemm(w, x, t, y);
        for (int r = 0; r < t; r++)
        {
            var one = new float[rows];
            GemvInt8Simd.Gemv(w, x.AsSpan(r * cols, cols), one);
            Assert.Equal(one, y.AsSpan(r * rows, rows).ToArray());
        }
        // and the prepared rows are the GEMV's activations, row by row
        var a = Int8ActivationRows.Prepare(w, x, t);
        for (int r = 0; r < t; r++)
        {
            var single = Int8Activations.Prepare(w, x.AsSpan(r * cols, cols));
            Assert.Equal(single.Codes, a.Codes.AsSpan(r * a.Stride, a.Stride).ToArray());
            Assert.Equal(single.GroupSums, a.GroupSums.AsSpan(r * a.Groups, a.Groups).ToArray());
            Assert.Equal(single.Scale, a.Scales[r]);
        }
    }

    // Largest codes against ±127 everywhere: the int16 sums of the vpmaddubsw paths at their bound (8 sub-steps of
    // 2·15·127), int32 over per-channel rows of 4096 columns, and a group wider than 65536 columns (int64 group dots).
    [Theory]
    [InlineData(8, 4096, -1, 5)]
    [InlineData(4, 4096, -1, 6)]
    [InlineData(3, 4096, -1, 4)]
    [InlineData(2, 4096, -1, 3)]
    [InlineData(8, 256, 128, 9)]
    [InlineData(8, 65600, -1, 2)]
    public void ExtremeCodesAndActivationsStayExact(int bits, int cols, int group, int t)
    {
        int rows = 17, g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var codes = Enumerable.Repeat((byte)((1 << bits) - 1), rows * cols).ToArray();
        var scales = Enumerable.Repeat(1e-3f, rows * groups).ToArray();
        var biases = Enumerable.Repeat(-0.1f, rows * groups).ToArray();
        var w = PackedMatrix.FromCodes(codes, rows, cols, bits, group, scales, biases);
        var x = new float[t * cols];
        for (int r = 0; r < t; r++) x.AsSpan(r * cols, cols).Fill(r % 2 == 0 ? 1f : -1f);
        var want = new float[t * rows];
        GemmInt8Reference.Gemm(w, x, t, want);
        // the exact value: s = 1/127, every code at its maximum against ±127
        // as stored: fp16 scale 1e-3 and zero 0.1/1e-3 = 100 (ŵ = s·(S − z))
        float s16 = Packed.Fp16.Round(1e-3f), z16 = Packed.Fp16.Round(0.1f / 1e-3f);
        float expect0 = 1f / 127 * s16 * (127f * ((1 << bits) - 1) * g * groups - z16 * 127 * cols);
        Assert.True(Math.Abs(want[0] - expect0) <= 1e-4 * Math.Abs(expect0), $"reference {want[0]} vs {expect0}");
        foreach (var path in Paths())
        {
            var got = new float[t * rows];
            GemmInt8Simd.Gemm(w, x, t, got, path, -1);
            Assert.Equal(want, got);
        }
    }

    [Fact]
    public void MismatchedInputsAreRefused()
    {
        var rng = new Random(3);
        var w = GemmPackedSimdTests.Random(rng, 16, 64, 32, 4, perm: false);
        var other = GemmPackedSimdTests.Random(rng, 16, 96, 32, 4, perm: false);
        var x = new float[3 * 64];
        Assert.Throws<ArgumentException>(() => GemmInt8Simd.Gemm(w, x, 3, new float[3 * 15]));
        Assert.Throws<ArgumentException>(() => GemmInt8Simd.Gemm(w, x.AsSpan(1), 3, new float[3 * 16]));
        var a = Int8ActivationRows.Prepare(other, new float[2 * 96], 2);
        Assert.Throws<ArgumentException>(() => GemmInt8Simd.Gemm(w, a, new float[2 * 16]));
        foreach (var path in GemmInt8Simd.Paths.Where(p => !GemvInt8Simd.IsSupported(p)))
            Assert.Throws<PlatformNotSupportedException>(() => GemmInt8Simd.Gemm(w, x, 3, new float[3 * 16], path));
    }
}
