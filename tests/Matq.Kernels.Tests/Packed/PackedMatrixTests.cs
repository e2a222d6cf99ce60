// Packed GEMV layout: hand-built blocks (layout documented in PackedBlock32), exact round trips, and the reference GEMV
// against the dense dequantization of the artifact formula α·(S·2^(c−r) − z).
using Matq.Kernels.Packed;
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Tests.Packed;

public sealed class PackedMatrixTests
{
    private static byte[] Iota(int mod) => Enumerable.Range(0, 32).Select(i => (byte)(i % mod)).ToArray();

    [Fact]
    public void Block4BitPutsCodeJInLowNibbleAndCodeJPlus16InHighNibble()
    {
        var codes = Iota(16);                              // code i = i mod 16
        var b = new byte[16];
        PackedBlock32.Pack(codes, 4, b);
        for (int j = 0; j < 16; j++) Assert.Equal((byte)(j | (j << 4)), b[j]); // codes j and j+16 are both j
    }

    [Fact]
    public void Block2BitPutsCode8kPlusJInBitPairKOfByteJ()
    {
        var codes = new byte[32];
        codes[0] = 1; codes[8] = 2; codes[16] = 3; codes[31] = 3;
        var b = new byte[8];
        PackedBlock32.Pack(codes, 2, b);
        Assert.Equal((byte)(1 | 2 << 2 | 3 << 4), b[0]);
        Assert.Equal((byte)(3 << 6), b[7]);
        Assert.All(b[1..7], v => Assert.Equal(0, v));
    }

    [Fact]
    public void Block3BitSplitsLowPairsAndAHighBitPlane()
    {
        var codes = new byte[32];
        codes[0] = 5; codes[9] = 6; codes[31] = 7;         // 5 = 1|4, 6 = 2|4, 7 = 3|4
        var b = new byte[12];
        PackedBlock32.Pack(codes, 3, b);
        Assert.Equal(new byte[] { 1, 2 << 2, 0, 0, 0, 0, 0, 3 << 6, 1, 1 << 1, 0, 1 << 7 }, b);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    public void BlockRoundTripsExactly(int bits)
    {
        var rng = new Random(bits);
        for (int t = 0; t < 50; t++)
        {
            var codes = Enumerable.Range(0, 32).Select(_ => (byte)rng.Next(1 << bits)).ToArray();
            var b = new byte[PackedBlock32.BlockBytes(bits)];
            PackedBlock32.Pack(codes, bits, b);
            var back = new byte[32];
            PackedBlock32.Unpack(b, bits, back);
            Assert.Equal(codes, back);
        }
    }

    [Fact]
    public void UnsupportedWidthAndGroupAreRefusedWithOneLine()
    {
        Assert.Throws<MatqException>(() => PackedBlock32.BlockBytes(5));
        var e = Assert.Throws<MatqException>(() => PackedMatrix.FromCodes(new byte[2 * 64], 2, 64, 4, 16, new float[8], new float[8]));
        Assert.Contains("multiple of 32", e.Message);
    }

    [Theory]
    [InlineData(1, 7, -1, 4)]
    [InlineData(3, 100, 32, 2)]
    [InlineData(17, 130, 64, 3)]
    [InlineData(5, 256, 128, 8)]
    [InlineData(4, 33, -1, 3)]
    public void ReferenceGemvEqualsDenseDequantizedMatVec(int rows, int cols, int group, int bits)
    {
        var rng = new Random(rows * 1000 + cols);
        int g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var master = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(256)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.01 + 1e-3)).ToArray();
        var zeros = Enumerable.Range(0, rows * groups).Select(_ => (float)rng.Next(256)).ToArray();
        var perm = Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).ToArray();
        var w = PackedMatrix.FromMaster(master, rows, cols, group, scales, zeros, 8, bits, perm);
        var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

        var y = new float[rows];
        GemvPackedReference.Gemv(w, x, y);
        for (int o = 0; o < rows; o++)
        {
            double want = 0;
            for (int k = 0; k < cols; k++)
            {
                int j = o * groups + k / g;
                int s = NestedSlice.Slice(master[o * cols + k], 8, bits);
                want += scales[j] * ((double)s * (1 << (8 - bits)) - zeros[j]) * x[perm[k]];
            }
            Assert.Equal(want, y[o], 3e-5 * Math.Max(1, Math.Abs(want)));
        }
        var dense = GemvPackedReference.Dequantize(w);
        var sliced = NestedSlice.Slice(master, 8, bits);
        for (int k = 0; k < cols; k++)
        {
            int j = k / g;
            float want = scales[j] * (sliced[k] * (1 << (8 - bits)) - zeros[j]);
            Assert.Equal(want, dense[perm[k]], 1e-5f);
        }
    }
}
