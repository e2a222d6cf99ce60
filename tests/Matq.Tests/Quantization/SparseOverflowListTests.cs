// Sparse overflow lists of an extra-precision slice: the exact stream and bit count of a worked example, round trips
// (codes with overflow ↔ r-bit base codes + lists) over many shapes and widths, agreement with the tensor slice's
// accounting, and corrupt streams as errors.
using Matq.Kernels.Packing;
using Matq.Quantization;
using static TorchSharp.torch;

namespace Matq.Tests.Quantization;

public sealed class SparseOverflowListTests
{
    [Fact]
    public void Worked_example_has_the_documented_stream_and_bits()
    {
        // r = 2 (top 3, bucket 4); row 0 overflows at 3, 4, 12 → gaps 3, 0, 7; row 1 has top codes but no overflow
        byte[] codes =
        [
            0, 1, 3, 4, 4, 2, 3, 1, 0, 0, 3, 1, 4, 2, 1, 0,
            3, 3, 1, 0, 2, 3, 0, 1, 1, 2, 3, 3, 0, 1, 2, 0,
        ];
        Assert.Equal(5, SparseOverflowList.CountBits(16));                     // 0..16 needs 5 bits
        // k = 0: 4+1+8 = 13; k = 1: 3+2+5 = 10; k = 2: 3+3+4 = 10; k = 3: 12 → k = 1 (ties: smaller)
        Assert.Equal((5 + 3 + 10L, 1), SparseOverflowList.RowBits(16, [3, 4, 12]));
        Assert.Equal((5L, 0), SparseOverflowList.RowBits(16, []));
        var list = SparseOverflowList.Encode(codes, 2, 16, 2);
        Assert.Equal(23, list.ListBits);
        // n=3 (11000) k=1 (100) | d=3: 1 0 1 | d=0: 0 0 | d=7: 1 1 1 0 1 | row 1 n=0 (00000), LSB first
        Assert.Equal(new byte[] { 0x23, 0xE5, 0x02 }, list.Stream);
        Assert.Equal(3, list.OverflowCount);
        Assert.Equal(2 + 23.0 / 32, list.StoredBitsPerWeight);
        Assert.Equal(2 + 3.0 / 32, list.PaperBitsPerWeight);
        var baseCodes = codes.Select(c => (byte)Math.Min(c, (byte)3)).ToArray();
        Assert.Equal(codes, SparseOverflowList.Decode(baseCodes, 2, 16, 2, list.Stream));
        // the escape stream pays one bit per top-code or overflow position: 11 of them here
        Assert.Equal(11, ExtraPrecisionSliceEscapes(codes, 2));
    }

    private static int ExtraPrecisionSliceEscapes(byte[] sliced, int r) => sliced.Count(c => c >= (1 << r) - 1);

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 7, 2)]
    [InlineData(5, 33, 2)]
    [InlineData(4, 300, 3)]
    [InlineData(2, 257, 4)]
    [InlineData(6, 64, 1)]
    [InlineData(3, 129, 7)]
    public void Codes_with_overflow_round_trip_through_base_codes_and_lists(int rows, int cols, int r)
    {
        var rng = new Random(rows * 1000 + cols * 10 + r);
        foreach (double p in new[] { 0.0, 0.02, 0.3, 1.0 })
        {
            var codes = new byte[rows * cols];
            for (int i = 0; i < codes.Length; i++) codes[i] = rng.NextDouble() < p ? (byte)(1 << r) : (byte)rng.Next(1 << r);
            var list = SparseOverflowList.Encode(codes, rows, cols, r);
            Assert.Equal((list.ListBits + 7) / 8, list.Stream.Length);
            long expected = 0;
            for (int row = 0; row < rows; row++)
                expected += SparseOverflowList.RowBits(cols, Enumerable.Range(0, cols).Where(i => codes[row * cols + i] == 1 << r).ToArray()).Bits;
            Assert.Equal(expected, list.ListBits);
            var baseCodes = codes.Select(c => (byte)Math.Min(c, (1 << r) - 1)).ToArray();
            Assert.Equal(codes, SparseOverflowList.Decode(baseCodes, rows, cols, r, list.Stream));
        }
    }

    [Fact]
    public void Tensor_slice_accounts_the_same_list_bits_and_reports_paper_and_stored_bits()
    {
        manual_seed(2);
        var codes = randint(0, 256, new long[] { 9, 70 }).to(ScalarType.Byte);
        var extra = TensorNestedSlice.SliceExtra(codes, 8, 2);
        var sliced = extra.Codes.contiguous().data<byte>().ToArray();
        var list = SparseOverflowList.Encode(sliced, 9, 70, 2);
        Assert.Equal(list.ListBits, extra.SparseListBits);
        Assert.Equal(list.OverflowCount, extra.OverflowCount);
        Assert.Equal(2 + (double)extra.OverflowCount / 630, extra.PaperBits);
        Assert.Equal(2 + (double)list.ListBits / 630, extra.SparseBits);
        Assert.True(extra.PaperBits < extra.SparseBits, "a stored encoding costs more than the paper's count");
    }

    [Fact]
    public void Corrupt_streams_are_errors()
    {
        byte[] codes = [0, 4, 3, 1];
        var list = SparseOverflowList.Encode(codes, 1, 4, 2);
        Assert.Throws<ArgumentException>(() => SparseOverflowList.Decode([0, 2, 3, 1], 1, 4, 2, list.Stream));   // listed position not top
        Assert.Throws<ArgumentException>(() => SparseOverflowList.Decode([0, 3, 3, 1], 1, 4, 2, []));             // stream ends early
        Assert.Throws<ArgumentOutOfRangeException>(() => SparseOverflowList.Encode([0, 5, 3, 1], 1, 4, 2));      // beyond the bucket
        Assert.Throws<ArgumentException>(() => SparseOverflowList.Encode(codes, 2, 4, 2));                        // shape
    }
}
