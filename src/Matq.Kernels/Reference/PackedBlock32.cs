// Contract: scalar reference codec of one 32-code block of the packed GEMV layout (it DEFINES the layout); codes are
// r-bit sliced Matryoshka codes, r ∈ {2, 3, 4, 8}. Lane numbering: code i = 8·k + j (k = 0..3 sub-vector, j = 0..7 lane).
//   r = 8 (32 B): byte i = code i.
//   r = 4 (16 B): byte j (0..15) = code j | code (j+16) << 4   (low nibbles: codes 0..15, high nibbles: codes 16..31).
//   r = 2 ( 8 B): byte j (0..7)  = Σ_k code(8k+j) << 2k        (bit pair k of byte j is code 8k+j).
//   r = 3 (12 B): bytes 0..7 = the r = 2 layout of (code & 3); byte 8+k, bit j = bit 2 of code 8k+j.
// Why: one AND/shift of a 16- or 8-byte register yields 8 or 16 consecutive codes in order, so SIMD zero-extends them
// straight to int32 lanes beside 8 consecutive activations (no shuffles).
namespace Matq.Kernels.Reference;

/// <summary>Pack/unpack of one block of 32 codes for the packed GEMV layout; names carry width and container.</summary>
public static class PackedBlock32
{
    public const int Codes = 32;

    /// <summary>Widths with a packed GEMV layout.</summary>
    public static readonly IReadOnlyList<int> SupportedBits = [2, 3, 4, 8];

    /// <summary>Bytes per 32-code block: 4·r.</summary>
    public static int BlockBytes(int bits)
    {
        CheckBits(bits);
        return 4 * bits;
    }

    public static void CheckBits(int bits)
    {
        if (bits is not (2 or 3 or 4 or 8))
            throw new MatqException($"bits = {bits} has no packed GEMV layout: supported widths are 2, 3, 4 and 8.");
    }

    /// <summary>Packs 32 codes (each &lt; 2^bits) into <paramref name="dst"/> (BlockBytes(bits) bytes).</summary>
    public static void Pack(ReadOnlySpan<byte> codes, int bits, Span<byte> dst)
    {
        if (codes.Length != Codes) throw new ArgumentException("a block holds exactly 32 codes");
        if (dst.Length != BlockBytes(bits)) throw new ArgumentException($"a {bits}-bit block is {BlockBytes(bits)} bytes");
        for (int i = 0; i < Codes; i++)
            if (codes[i] >> bits != 0) throw new ArgumentOutOfRangeException(nameof(codes), $"code {codes[i]} at {i} does not fit {bits} bits");
        dst.Clear();
        switch (bits)
        {
            case 8: codes.CopyTo(dst); break;
            case 4: Pack4BitU8(codes, dst); break;
            case 2: Pack2BitU8(codes, dst); break;
            case 3: Pack3BitU8(codes, dst); break;
        }
    }

    /// <summary>Unpacks the 32 codes of one block.</summary>
    public static void Unpack(ReadOnlySpan<byte> block, int bits, Span<byte> codes)
    {
        if (codes.Length != Codes) throw new ArgumentException("a block holds exactly 32 codes");
        if (block.Length != BlockBytes(bits)) throw new ArgumentException($"a {bits}-bit block is {BlockBytes(bits)} bytes");
        for (int i = 0; i < Codes; i++) codes[i] = CodeAt(block, bits, i);
    }

    /// <summary>Code i (0..31) of a block: the definition of every layout above.</summary>
    public static byte CodeAt(ReadOnlySpan<byte> block, int bits, int i)
    {
        int k = i >> 3, j = i & 7;
        return bits switch
        {
            8 => block[i],
            4 => (byte)(i < 16 ? block[i] & 0xF : block[i - 16] >> 4),
            2 => (byte)((block[j] >> (2 * k)) & 3),
            3 => (byte)(((block[j] >> (2 * k)) & 3) | (((block[8 + k] >> j) & 1) << 2)),
            _ => throw new MatqException($"bits = {bits} has no packed GEMV layout: supported widths are 2, 3, 4 and 8."),
        };
    }

    private static void Pack4BitU8(ReadOnlySpan<byte> codes, Span<byte> dst)
    {
        for (int j = 0; j < 16; j++) dst[j] = (byte)(codes[j] | codes[j + 16] << 4);
    }

    private static void Pack2BitU8(ReadOnlySpan<byte> codes, Span<byte> dst)
    {
        for (int i = 0; i < Codes; i++) dst[i & 7] |= (byte)(codes[i] << (2 * (i >> 3)));
    }

    private static void Pack3BitU8(ReadOnlySpan<byte> codes, Span<byte> dst)
    {
        for (int i = 0; i < Codes; i++)
        {
            dst[i & 7] |= (byte)((codes[i] & 3) << (2 * (i >> 3)));
            dst[8 + (i >> 3)] |= (byte)(((codes[i] >> 2) & 1) << (i & 7));
        }
    }
}
