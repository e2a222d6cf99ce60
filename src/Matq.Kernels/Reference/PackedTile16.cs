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
// Each width is one codec struct below (IPackedTileCodec); Packed/PackedWidths has one row per codec, and the
// width-taking methods here dispatch through that row.
using Matq.Kernels.Packed;

namespace Matq.Kernels.Reference;

/// <summary>One width's reference codec of a chunk (16 lanes × 32 codes): where code i of lane l lives.</summary>
public interface IPackedTileCodec
{
    /// <summary>Bits per code.</summary>
    static abstract int Bits { get; }
    /// <summary>ORs code c (&lt; 2^Bits) of lane l, column i into a chunk that starts cleared.</summary>
    static abstract void Put(Span<byte> chunk, int l, int i, int c);
    /// <summary>Code i of lane l.</summary>
    static abstract byte Get(ReadOnlySpan<byte> chunk, int l, int i);
}

/// <summary>Pack/unpack of one 16-row × 32-column chunk of the packed layout; names carry width and container.</summary>
public static class PackedTile16
{
    /// <summary>Rows per tile (int32 lanes of a 512-bit register).</summary>
    public const int Rows = 16;
    /// <summary>Columns per chunk: groups are whole chunks.</summary>
    public const int Codes = 32;

    /// <summary>Widths with a packed layout (the rows of PackedWidths).</summary>
    public static IReadOnlyList<int> SupportedBits => PackedWidths.Bits;

    /// <summary>The 3-bit layout's 1-bit-plane position of quad q (codes 4q..4q+3 of a chunk).</summary>
    public static ReadOnlySpan<byte> HighBit3 => [2, 4, 6, 5, 3, 0, 7, 1];

    /// <summary>True when quad q's pair in the 2-bit plane holds a 3-bit code's top two bits (pair 3), not its low two.</summary>
    public static bool TopPair3(int q) => (q & 3) == 3;

    /// <summary>Bytes per chunk (16 rows × 32 codes): the row's ChunkBytes, 64·r.</summary>
    public static int ChunkBytes(int bits) => PackedWidths.Get(bits).ChunkBytes;

    /// <summary>Throws unless <paramref name="bits"/> is a row of PackedWidths.</summary>
    public static void CheckBits(int bits) => PackedWidths.CheckBits(bits);

    /// <summary>Packs codes [16 rows][32] (row-major, each &lt; 2^bits) into one chunk (ChunkBytes(bits) bytes).</summary>
    public static void Pack(ReadOnlySpan<byte> codes, int bits, Span<byte> chunk)
    {
        if (codes.Length != Rows * Codes) throw new ArgumentException("a chunk holds exactly 16×32 codes");
        if (chunk.Length != ChunkBytes(bits)) throw new ArgumentException($"a {bits}-bit chunk is {ChunkBytes(bits)} bytes");
        for (int i = 0; i < codes.Length; i++)
            if (codes[i] >> bits != 0) throw new ArgumentOutOfRangeException(nameof(codes), $"code {codes[i]} at {i} does not fit {bits} bits");
        PackedWidths.Get(bits).PackChunk(codes, chunk);
    }

    /// <summary>Unpacks a chunk into codes [16 rows][32].</summary>
    public static void Unpack(ReadOnlySpan<byte> chunk, int bits, Span<byte> codes)
    {
        if (codes.Length != Rows * Codes) throw new ArgumentException("a chunk holds exactly 16×32 codes");
        if (chunk.Length != ChunkBytes(bits)) throw new ArgumentException($"a {bits}-bit chunk is {ChunkBytes(bits)} bytes");
        var row = PackedWidths.Get(bits);
        for (int l = 0; l < Rows; l++)
            for (int i = 0; i < Codes; i++) codes[l * Codes + i] = row.CodeAt(chunk, l, i);
    }

    /// <summary>Code i (0..31) of lane l (0..15) of a chunk: the definition of every layout above.</summary>
    public static byte CodeAt(ReadOnlySpan<byte> chunk, int bits, int l, int i) => PackedWidths.Get(bits).CodeAt(chunk, l, i);

    /// <summary>A 3-bit code from its pair and its spare bit.</summary>
    public static byte Code3(int pair, int bit, bool top) => (byte)(top ? pair << 1 | bit : pair | bit << 2);

    // The width table's entry points: one codec's loop over a whole chunk (dispatched once per chunk, not per code).
    internal static void PackChunk<TC>(ReadOnlySpan<byte> codes, Span<byte> chunk) where TC : IPackedTileCodec
    {
        chunk.Clear();
        for (int l = 0; l < Rows; l++)
            for (int i = 0; i < Codes; i++) TC.Put(chunk, l, i, codes[l * Codes + i]);
    }

    internal static byte CodeAt<TC>(ReadOnlySpan<byte> chunk, int l, int i) where TC : IPackedTileCodec => TC.Get(chunk, l, i);

    /// <summary>r = 8: sub-step i/4, byte i mod 4.</summary>
    public readonly struct Codec8 : IPackedTileCodec
    {
        public static int Bits => 8;
        public static void Put(Span<byte> chunk, int l, int i, int c) => chunk[Byte8(l, i)] = (byte)c;
        public static byte Get(ReadOnlySpan<byte> chunk, int l, int i) => chunk[Byte8(l, i)];
    }

    /// <summary>r = 4: sub-step i/8; nibble (i/4) mod 2.</summary>
    public readonly struct Codec4 : IPackedTileCodec
    {
        public static int Bits => 4;
        public static void Put(Span<byte> chunk, int l, int i, int c) => chunk[Byte4(l, i)] |= (byte)(c << Shift4(i));
        public static byte Get(ReadOnlySpan<byte> chunk, int l, int i) => (byte)((chunk[Byte4(l, i)] >> Shift4(i)) & 15);
    }

    /// <summary>r = 2: sub-step i/16; bit pair (i/4) mod 4.</summary>
    public readonly struct Codec2 : IPackedTileCodec
    {
        public static int Bits => 2;
        public static void Put(Span<byte> chunk, int l, int i, int c) => chunk[Byte2(l, i)] |= (byte)(c << Shift2(i));
        public static byte Get(ReadOnlySpan<byte> chunk, int l, int i) => (byte)((chunk[Byte2(l, i)] >> Shift2(i)) & 3);
    }

    /// <summary>r = 3: the 2-bit plane (low pair, or the top pair for pair 3) and the 1-bit plane at bit J[q] of byte 128 + 4l + b.</summary>
    public readonly struct Codec3 : IPackedTileCodec
    {
        public static int Bits => 3;
        public static void Put(Span<byte> chunk, int l, int i, int c)
        {
            bool top = TopPair3(i >> 2);
            chunk[Byte2(l, i)] |= (byte)((top ? c >> 1 : c & 3) << Shift2(i));
            chunk[128 + 4 * l + (i & 3)] |= (byte)((top ? c & 1 : c >> 2) << HighBit3[i >> 2]);
        }

        public static byte Get(ReadOnlySpan<byte> chunk, int l, int i) =>
            Code3((chunk[Byte2(l, i)] >> Shift2(i)) & 3, (chunk[128 + 4 * l + (i & 3)] >> HighBit3[i >> 2]) & 1, TopPair3(i >> 2));
    }

    // r = 8: sub-step i/4, byte i mod 4
    private static int Byte8(int l, int i) => 64 * (i >> 2) + 4 * l + (i & 3);
    // r = 4: sub-step i/8; nibble (i/4) mod 2
    private static int Byte4(int l, int i) => 64 * (i >> 3) + 4 * l + (i & 3);
    private static int Shift4(int i) => 4 * ((i >> 2) & 1);
    // r = 2 (and the low plane of r = 3): sub-step i/16; bit pair (i/4) mod 4
    private static int Byte2(int l, int i) => 64 * (i >> 4) + 4 * l + (i & 3);
    private static int Shift2(int i) => 2 * ((i >> 2) & 3);
}
