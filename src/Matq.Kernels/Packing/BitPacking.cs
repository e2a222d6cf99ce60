// Contract: scalar reference bit packing of unsigned codes into bytes (it DEFINES the packed layout).
// Bit order (little-endian bit stream): the stream's bit b is bit (b mod 8) of byte ⌊b/8⌋, and code i occupies
// stream bits [i·w, i·w + w), least-significant bit first. A code may straddle two bytes (w = 3, 5, 6, 7).
// Packed length = ceil(n·w/8) bytes; unused high bits of the last byte are zero. Any n ≥ 0 is allowed.
// Example, w = 2: codes [1, 2, 3, 0, 1] → byte0 = 1 | 2<<2 | 3<<4 | 0<<6 = 0x39, byte1 = 0x01.
namespace Matq.Kernels.Packing;

/// <summary>Pack/unpack of w-bit codes (w = 1..8) into a byte container; names carry width and container.</summary>
public static class BitPacking
{
    /// <summary>Bytes needed for <paramref name="count"/> codes of <paramref name="width"/> bits: ceil(count·width/8).</summary>
    public static int PackedLength(int count, int width)
    {
        CheckWidth(width);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return (int)(((long)count * width + 7) / 8);
    }

    /// <summary>Packs <paramref name="codes"/> (each &lt; 2^width) into <paramref name="dst"/> (exactly PackedLength bytes).</summary>
    public static void PackU8(ReadOnlySpan<byte> codes, int width, Span<byte> dst)
    {
        int len = PackedLength(codes.Length, width);
        if (dst.Length != len) throw new ArgumentException($"destination must be {len} bytes for {codes.Length} codes of {width} bits, got {dst.Length}");
        dst.Clear();
        int limit = 1 << width;
        for (int i = 0; i < codes.Length; i++)
        {
            int code = codes[i];
            if (code >= limit) throw new ArgumentOutOfRangeException(nameof(codes), $"code {code} at index {i} does not fit {width} bits");
            long bit = (long)i * width;
            int at = (int)(bit >> 3), shift = (int)(bit & 7);
            int v = code << shift;                       // at most 7 + 8 = 15 bits wide
            dst[at] |= (byte)v;
            if (shift + width > 8) dst[at + 1] |= (byte)(v >> 8);
        }
    }

    /// <summary>Unpacks <paramref name="dst"/>.Length codes of <paramref name="width"/> bits from <paramref name="packed"/>.</summary>
    public static void UnpackU8(ReadOnlySpan<byte> packed, int width, Span<byte> dst)
    {
        int len = PackedLength(dst.Length, width);
        if (packed.Length != len) throw new ArgumentException($"packed input must be {len} bytes for {dst.Length} codes of {width} bits, got {packed.Length}");
        int mask = (1 << width) - 1;
        for (int i = 0; i < dst.Length; i++)
        {
            long bit = (long)i * width;
            int at = (int)(bit >> 3), shift = (int)(bit & 7);
            int v = packed[at];
            if (shift + width > 8) v |= packed[at + 1] << 8;
            dst[i] = (byte)((v >> shift) & mask);
        }
    }

    /// <summary>Packs into a new array.</summary>
    public static byte[] PackU8(ReadOnlySpan<byte> codes, int width)
    {
        var dst = new byte[PackedLength(codes.Length, width)];
        PackU8(codes, width, dst);
        return dst;
    }

    /// <summary>Unpacks <paramref name="count"/> codes into a new array.</summary>
    public static byte[] UnpackU8(ReadOnlySpan<byte> packed, int width, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var dst = new byte[count];
        UnpackU8(packed, width, dst);
        return dst;
    }

    public static void Pack1BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 1, dst);
    public static void Unpack1BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 1, dst);
    public static void Pack2BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 2, dst);
    public static void Unpack2BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 2, dst);
    public static void Pack3BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 3, dst);
    public static void Unpack3BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 3, dst);
    public static void Pack4BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 4, dst);
    public static void Unpack4BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 4, dst);
    public static void Pack5BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 5, dst);
    public static void Unpack5BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 5, dst);
    public static void Pack6BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 6, dst);
    public static void Unpack6BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 6, dst);
    public static void Pack7BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 7, dst);
    public static void Unpack7BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 7, dst);
    public static void Pack8BitU8(ReadOnlySpan<byte> codes, Span<byte> dst) => PackU8(codes, 8, dst);
    public static void Unpack8BitU8(ReadOnlySpan<byte> packed, Span<byte> dst) => UnpackU8(packed, 8, dst);

    private static void CheckWidth(int width)
    {
        if (width < 1 || width > 8)
            throw new MatqException($"width = {width} is out of range: packed code widths are 1..8 bits; use a width from 1 to 8.");
    }
}
