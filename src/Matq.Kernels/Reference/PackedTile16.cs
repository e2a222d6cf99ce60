// Contract: scalar reference codec of the packed GEMV layout (it DEFINES the layout). Rows are packed in tiles of 16
// (row l of a tile is "lane" l) and columns in chunks of 32; one chunk of one tile is 16 rows × 32 codes of r bits,
// 64·r bytes, cut into sub-steps of 64 bytes. Byte 4l + b of a sub-step belongs to lane l (b = 0..3), so a 64-byte
// load puts each row's 4 bytes in one int32 lane: integer dot products (vpdpbusd, vpmaddubsw + vpmaddwd) then sum a
// row's products inside its own lane, against 4 activation bytes broadcast to every lane — no horizontal sums, and
// one vector holds 16 rows' results (a 256-bit register holds lanes 0..7, bytes 0..31, or 8..15, bytes 32..63).
// Code i (0..31) of lane l, per width r (s = sub-step, byte = chunk[64s + 4l + b]):
//   r = 8: 8 sub-steps; i = 4s + b.
//   r = 4: 4 sub-steps; low nibble i = 8s + b, high nibble i = 8s + 4 + b.
//   r = 2: 2 sub-steps; bit pair p (bits 2p, 2p+1) i = 16s + 4p + b.
//   r = 3: a 2-bit plane and a 1-bit plane. Code i = 4q + b (quad q = 4s + p, s = 0, 1): sub-step s, bit pair p holds
//          its low two bits (c & 3) for p = 0, 1, 2 and its top two bits (c >> 1) for p = 3; the remaining bit (c >> 2,
//          or c & 1 for p = 3) is bit J[q] of byte 128 + 4l + b (sub-step 2), J = [2, 4, 6, 5, 3, 0, 7, 1].
// Why the masks: one AND of a loaded register yields a code field in place (pair p scaled by 4^p, the high nibble by
// 16); kernels add scaled fields into scaled accumulators and shift the sums back exactly. For r = 3, one bitwise
// select of the two planes (low plane bits 0, 1, 4, 5 or 2, 3, 6, 7) and one AND give a whole scaled code: 1·c (bits
// 0..2), 4·c (bits 2..4), 16·c (bits 4..6) and, because pair 3 holds the top bits, 32·c (bits 5..7) — all ≤ 255.
// J puts the spare bits of quads 0..3 where the plane needs no shift, those of quads 4..7 where a 16-bit shift right
// by 1 (quads 4, 6) or left by 4 (quads 5, 7) brings them.
namespace Matq.Kernels.Reference;

/// <summary>Pack/unpack of one 16-row × 32-column chunk of the packed layout; names carry width and container.</summary>
public static class PackedTile16
{
    /// <summary>Rows per tile (int32 lanes of a 512-bit register).</summary>
    public const int Rows = 16;
    /// <summary>Columns per chunk: groups are whole chunks.</summary>
    public const int Codes = 32;

    /// <summary>Widths with a packed layout.</summary>
    public static readonly IReadOnlyList<int> SupportedBits = [2, 3, 4, 8];

    /// <summary>The 3-bit layout's 1-bit-plane position of quad q (codes 4q..4q+3 of a chunk).</summary>
    public static ReadOnlySpan<byte> HighBit3 => [2, 4, 6, 5, 3, 0, 7, 1];

    /// <summary>True when quad q's pair in the 2-bit plane holds a 3-bit code's top two bits (pair 3), not its low two.</summary>
    public static bool TopPair3(int q) => (q & 3) == 3;

    /// <summary>Bytes per chunk (16 rows × 32 codes): 64·r.</summary>
    public static int ChunkBytes(int bits)
    {
        CheckBits(bits);
        return 64 * bits;
    }

    public static void CheckBits(int bits)
    {
        if (bits is not (2 or 3 or 4 or 8))
            throw new MatqException($"bits = {bits} has no packed GEMV layout: supported widths are 2, 3, 4 and 8.");
    }

    /// <summary>Packs codes [16 rows][32] (row-major, each &lt; 2^bits) into one chunk (ChunkBytes(bits) bytes).</summary>
    public static void Pack(ReadOnlySpan<byte> codes, int bits, Span<byte> chunk)
    {
        if (codes.Length != Rows * Codes) throw new ArgumentException("a chunk holds exactly 16×32 codes");
        if (chunk.Length != ChunkBytes(bits)) throw new ArgumentException($"a {bits}-bit chunk is {ChunkBytes(bits)} bytes");
        for (int i = 0; i < codes.Length; i++)
            if (codes[i] >> bits != 0) throw new ArgumentOutOfRangeException(nameof(codes), $"code {codes[i]} at {i} does not fit {bits} bits");
        chunk.Clear();
        for (int l = 0; l < Rows; l++)
            for (int i = 0; i < Codes; i++)
            {
                int c = codes[l * Codes + i];
                switch (bits)
                {
                    case 8: chunk[Byte8(l, i)] = (byte)c; break;
                    case 4: chunk[Byte4(l, i)] |= (byte)(c << Shift4(i)); break;
                    case 2: chunk[Byte2(l, i)] |= (byte)(c << Shift2(i)); break;
                    case 3:
                        bool top = TopPair3(i >> 2);
                        chunk[Byte2(l, i)] |= (byte)((top ? c >> 1 : c & 3) << Shift2(i));
                        chunk[128 + 4 * l + (i & 3)] |= (byte)((top ? c & 1 : c >> 2) << HighBit3[i >> 2]);
                        break;
                }
            }
    }

    /// <summary>Unpacks a chunk into codes [16 rows][32].</summary>
    public static void Unpack(ReadOnlySpan<byte> chunk, int bits, Span<byte> codes)
    {
        if (codes.Length != Rows * Codes) throw new ArgumentException("a chunk holds exactly 16×32 codes");
        if (chunk.Length != ChunkBytes(bits)) throw new ArgumentException($"a {bits}-bit chunk is {ChunkBytes(bits)} bytes");
        for (int l = 0; l < Rows; l++)
            for (int i = 0; i < Codes; i++) codes[l * Codes + i] = CodeAt(chunk, bits, l, i);
    }

    /// <summary>Code i (0..31) of lane l (0..15) of a chunk: the definition of every layout above.</summary>
    public static byte CodeAt(ReadOnlySpan<byte> chunk, int bits, int l, int i) => bits switch
    {
        8 => chunk[Byte8(l, i)],
        4 => (byte)((chunk[Byte4(l, i)] >> Shift4(i)) & 15),
        2 => (byte)((chunk[Byte2(l, i)] >> Shift2(i)) & 3),
        3 => Code3((chunk[Byte2(l, i)] >> Shift2(i)) & 3, (chunk[128 + 4 * l + (i & 3)] >> HighBit3[i >> 2]) & 1, TopPair3(i >> 2)),
        _ => throw new MatqException($"bits = {bits} has no packed GEMV layout: supported widths are 2, 3, 4 and 8."),
    };

    /// <summary>A 3-bit code from its pair and its spare bit.</summary>
    public static byte Code3(int pair, int bit, bool top) => (byte)(top ? pair << 1 | bit : pair | bit << 2);

    // r = 8: sub-step i/4, byte i mod 4
    private static int Byte8(int l, int i) => 64 * (i >> 2) + 4 * l + (i & 3);
    // r = 4: sub-step i/8; nibble (i/4) mod 2
    private static int Byte4(int l, int i) => 64 * (i >> 3) + 4 * l + (i & 3);
    private static int Shift4(int i) => 4 * ((i >> 2) & 1);
    // r = 2 (and the low plane of r = 3): sub-step i/16; bit pair (i/4) mod 4
    private static int Byte2(int l, int i) => 64 * (i >> 4) + 4 * l + (i & 3);
    private static int Shift2(int i) => 2 * ((i >> 2) & 3);
}
