// Packed GEMV layout: hand-built chunks (layout defined by PackedTile16), tiles and padding of a matrix, exact round trips, and the reference GEMV
// against the dense dequantization of the artifact formula α·(S·2^(c−r) − z).
using Matq.Kernels.Packed;
using Matq.Kernels.Packing;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Tests.Packed;

public sealed class PackedMatrixTests
{
    // codes [16 rows][32]: row l, column i
    private static byte[] Codes(Func<int, int, int> f) =>
        Enumerable.Range(0, 16 * 32).Select(j => (byte)f(j / 32, j % 32)).ToArray();

    private static byte[] Pack(byte[] codes, int bits)
    {
        var chunk = new byte[PackedTile16.ChunkBytes(bits)];
        PackedTile16.Pack(codes, bits, chunk);
        return chunk;
    }

    [Fact]
    public void Chunk8BitPutsCode4sPlusBOfRowLAtByte64sPlus4lPlusB()
    {
        var chunk = Pack(Codes((l, i) => 32 * (l % 8) + i), 8);
        Assert.Equal(512, chunk.Length);
        for (int l = 0; l < 16; l++)
            for (int i = 0; i < 32; i++)
                Assert.Equal((byte)(32 * (l % 8) + i), chunk[64 * (i / 4) + 4 * l + i % 4]);
    }

    [Fact]
    public void Chunk4BitPutsCode8sPlusBInTheLowAndCode8sPlus4PlusBInTheHighNibble()
    {
        var chunk = Pack(Codes((l, i) => (l + i) % 16), 4);
        Assert.Equal(256, chunk.Length);
        for (int l = 0; l < 16; l++)
            for (int s = 0; s < 4; s++)
                for (int b = 0; b < 4; b++)
                    Assert.Equal((byte)((l + 8 * s + b) % 16 | ((l + 8 * s + 4 + b) % 16) << 4), chunk[64 * s + 4 * l + b]);
    }

    [Fact]
    public void Chunk2BitPutsCode16sPlus4pPlusBInBitPairP()
    {
        var codes = new byte[16 * 32];
        codes[0] = 1;                    // row 0, column 0 → sub-step 0, byte 0, pair 0
        codes[3 * 32 + 4] = 2;           // row 3, column 4 → byte 12, pair 1
        codes[15 * 32 + 31] = 3;         // row 15, column 31 → sub-step 1, byte 63, pair 3
        var chunk = Pack(codes, 2);
        Assert.Equal(128, chunk.Length);
        Assert.Equal(1, chunk[0]);
        Assert.Equal(2 << 2, chunk[12]);
        Assert.Equal(3 << 6, chunk[64 + 63]);
        Assert.Equal(3, chunk.Count(v => v != 0));
    }

    [Fact]
    public void Chunk3BitSplitsA2BitPlaneAndA1BitPlaneAtBitsJWithPair3HoldingTheTopBits()
    {
        var codes = new byte[16 * 32];
        codes[0] = 5;                    // quad 0 → low pair 1 at byte 0; bit 2 at J[0] = 2 of byte 128
        codes[12] = 6;                   // row 0, quad 3 (pair 3) → top pair 3 at bits 6, 7 of byte 0; bit 0 (= 0) at J[3] = 5
        codes[2 * 32 + 5] = 6;           // row 2, quad 1, b = 1 → low 2 at pair 1 of byte 9; bit 2 at J[1] = 4 of byte 128 + 9
        codes[32 + 29] = 7;              // row 1, quad 7, b = 1 → top 3 at pair 3 of byte 64 + 5; bit 0 at J[7] = 1 of byte 128 + 5
        var chunk = Pack(codes, 3);
        Assert.Equal(192, chunk.Length);
        Assert.Equal(1 | 3 << 6, chunk[0]);
        Assert.Equal(2 << 2, chunk[9]);
        Assert.Equal(3 << 6, chunk[64 + 5]);
        Assert.Equal(1 << 2, chunk[128]);
        Assert.Equal(1 << 4, chunk[128 + 9]);
        Assert.Equal(1 << 1, chunk[128 + 5]);
        Assert.Equal(6, chunk.Count(v => v != 0));
        Assert.Equal(new byte[] { 2, 4, 6, 5, 3, 0, 7, 1 }, PackedTile16.HighBit3.ToArray());
    }

    public static IEnumerable<object[]> Widths() => PackedWidths.Bits.Select(b => new object[] { b });

    [Theory]
    [MemberData(nameof(Widths))]
    public void ChunkRoundTripsExactly(int bits)
    {
        var rng = new Random(bits);
        for (int t = 0; t < 20; t++)
        {
            var codes = Enumerable.Range(0, 16 * 32).Select(_ => (byte)rng.Next(1 << bits)).ToArray();
            var back = new byte[codes.Length];
            PackedTile16.Unpack(Pack(codes, bits), bits, back);
            Assert.Equal(codes, back);
        }
    }

    [Theory]
    [InlineData(1, 7, -1, 4)]
    [InlineData(17, 100, 32, 2)]
    [InlineData(33, 130, 64, 3)]
    [InlineData(16, 64, 32, 8)]
    public void MatrixCodesScalesAndPaddingFollowTheTiles(int rows, int cols, int group, int bits)
    {
        var rng = new Random(rows + cols);
        int g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
        var codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(1 << bits)).ToArray();
        var scales = Enumerable.Range(0, rows * groups).Select(i => 1f + i).ToArray();
        var biases = Enumerable.Range(0, rows * groups).Select(i => -1f - i).ToArray();
        var w = PackedMatrix.FromCodes(codes, rows, cols, bits, group, scales, biases);
        Assert.Equal((rows + 15) / 16, w.RowTiles);
        Assert.Equal((cols + 31) / 32, w.ChunksPerRow);
        Assert.Equal((long)w.RowTiles * w.ChunksPerRow * 64 * bits, (long)w.Data.Length);
        Assert.Equal(w.RowTiles * groups * 16, w.Params.Scales.Length);
        Assert.Equal(w.RowTiles * groups * 16, w.Params.Zeros!.Length);
        for (int o = 0; o < w.RowTiles * 16; o++)
        {
            for (int k = 0; k < w.PaddedCols; k++)
                Assert.Equal(o < rows && k < cols ? codes[o * cols + k] : 0, w.CodeAt(o, k));
            for (int j = 0; j < groups; j++)
            {
                // small integers are exact in fp16 (times the tensor's power of two), so the values come back unchanged
                Assert.Equal(o < rows ? scales[o * groups + j] : 0f, w.Params.Scale((o / 16 * groups + j) * 16 + o % 16));
                Assert.Equal(o < rows ? biases[o * groups + j] : 0f, w.Params.Offset((o / 16 * groups + j) * 16 + o % 16));
                if (o < rows) Assert.Equal(scales[o * groups + j], w.Scale(o, j));
            }
        }
    }

    [Fact]
    public void UnsupportedWidthAndGroupAreRefusedWithOneLine()
    {
        Assert.Throws<MatqException>(() => PackedTile16.ChunkBytes(5));
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
                // the layout keeps α·2^(c−r) as fp16 and z/2^(c−r) (exact in fp16): α·2^(c−r)·(S − z/2^(c−r))
                double step = 1 << (8 - bits), sc = Fp16.Round(scales[j] * (1 << (8 - bits)));
                want += sc * (s - zeros[j] / step) * x[perm[k]];
            }
            Assert.Equal(want, y[o], 3e-5 * Math.Max(1, Math.Abs(want)));
        }
        var dense = GemvPackedReference.Dequantize(w);
        var sliced = NestedSlice.Slice(master, 8, bits);
        for (int k = 0; k < cols; k++)
        {
            int j = k / g;
            double step = 1 << (8 - bits), sc = Fp16.Round(scales[j] * (1 << (8 - bits)));
            float want = (float)(sc * (sliced[k] - zeros[j] / step));
            Assert.Equal(want, dense[perm[k]]);
        }
    }
}
