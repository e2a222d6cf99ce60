// Tests bit packing against an independent bit-by-bit oracle of the documented little-endian bit stream,
// and pack∘unpack identity for every width over many (odd) lengths.
using FsCheck.Xunit;
using Matq.Kernels.Packing;

namespace Matq.Kernels.Tests.Packing;

public class BitPackingTests
{
    private static readonly int[] Lengths = { 0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 100, 1001, 1024, 4099 };

    [Fact]
    public void PackThenUnpackIsIdentityForEveryWidthAndLength()
    {
        var rng = new Random(3);
        for (int w = 1; w <= 8; w++)
            foreach (int n in Lengths)
            {
                byte[] codes = RandomCodes(rng, n, w);
                byte[] packed = BitPacking.PackU8(codes, w);
                Assert.Equal((n * w + 7) / 8, packed.Length);
                Assert.Equal(Oracle(codes, w), packed);
                Assert.Equal(codes, BitPacking.UnpackU8(packed, w, n));
            }
    }

    [Fact]
    public void NamedWidthsAgreeWithTheGenericForm()
    {
        var rng = new Random(4);
        var pairs = new (int W, Action<byte[], byte[]> Pack, Action<byte[], byte[]> Unpack)[]
        {
            (2, (c, d) => BitPacking.Pack2BitU8(c, d), (p, d) => BitPacking.Unpack2BitU8(p, d)),
            (3, (c, d) => BitPacking.Pack3BitU8(c, d), (p, d) => BitPacking.Unpack3BitU8(p, d)),
            (4, (c, d) => BitPacking.Pack4BitU8(c, d), (p, d) => BitPacking.Unpack4BitU8(p, d)),
            (5, (c, d) => BitPacking.Pack5BitU8(c, d), (p, d) => BitPacking.Unpack5BitU8(p, d)),
            (6, (c, d) => BitPacking.Pack6BitU8(c, d), (p, d) => BitPacking.Unpack6BitU8(p, d)),
            (8, (c, d) => BitPacking.Pack8BitU8(c, d), (p, d) => BitPacking.Unpack8BitU8(p, d)),
        };
        foreach (var (w, pack, unpack) in pairs)
            foreach (int n in new[] { 0, 1, 7, 13, 1001 })
            {
                byte[] codes = RandomCodes(rng, n, w);
                var packed = new byte[BitPacking.PackedLength(n, w)];
                pack(codes, packed);
                Assert.Equal(Oracle(codes, w), packed);
                var back = new byte[n];
                unpack(packed, back);
                Assert.Equal(codes, back);
            }
    }

    [Fact]
    public void HandPackedBytes()
    {
        // w = 2: 1 | 2<<2 | 3<<4 | 0<<6 = 0x39; fifth code alone in the low bits of byte 1
        Assert.Equal(new byte[] { 0x39, 0x01 }, BitPacking.PackU8(new byte[] { 1, 2, 3, 0, 1 }, 2));
        // w = 3: 7 → bits 0..2, 0 → bits 3..5, 5 = 0b101 → bits 6..8 (bit 6 = 1, bit 7 = 0, bit 8 = 1)
        Assert.Equal(new byte[] { 0x47, 0x01 }, BitPacking.PackU8(new byte[] { 7, 0, 5 }, 3));
        // w = 4: low nibble first
        Assert.Equal(new byte[] { 0x21, 0x03 }, BitPacking.PackU8(new byte[] { 1, 2, 3 }, 4));
        Assert.Equal(5, BitPacking.PackedLength(13, 3));
        Assert.Equal(251, BitPacking.PackedLength(1001, 2));
        Assert.Equal(0, BitPacking.PackedLength(0, 6));
    }

    [Fact]
    public void CodesThatDoNotFitAndBadWidthsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BitPacking.PackU8(new byte[] { 4 }, 2));
        var ex = Assert.Throws<MatqException>(() => BitPacking.PackedLength(3, 9));
        Assert.Contains("width = 9", ex.Message);
        Assert.Throws<MatqException>(() => BitPacking.PackU8(new byte[1], 0));
        Assert.Throws<ArgumentException>(() => BitPacking.UnpackU8(new byte[2], 4, 5));
    }

    [Property(MaxTest = 300)]
    public bool RoundTripProperty(byte[] raw, byte widthRaw)
    {
        int w = widthRaw % 8 + 1;
        byte[] codes = raw.Select(b => (byte)(b & ((1 << w) - 1))).ToArray();
        byte[] packed = BitPacking.PackU8(codes, w);
        return packed.AsSpan().SequenceEqual(Oracle(codes, w)) && BitPacking.UnpackU8(packed, w, codes.Length).AsSpan().SequenceEqual(codes);
    }

    // Independent definition: write every code's bits LSB first into a bool stream, then gather 8 bits per byte.
    private static byte[] Oracle(byte[] codes, int w)
    {
        var bits = new List<bool>();
        foreach (byte c in codes)
            for (int j = 0; j < w; j++) bits.Add((c >> j & 1) == 1);
        var bytes = new byte[(bits.Count + 7) / 8];
        for (int b = 0; b < bits.Count; b++)
            if (bits[b]) bytes[b / 8] |= (byte)(1 << (b % 8));
        return bytes;
    }

    private static byte[] RandomCodes(Random rng, int n, int w)
    {
        var c = new byte[n];
        for (int i = 0; i < n; i++) c[i] = (byte)rng.Next(0, 1 << w);
        return c;
    }
}
