// Contract: result and storage scheme of an extra-precision slice (codes 0..2^r, the top bucket left unclamped).
// Storage: the base stream packs min(S, 2^r − 1) at r bits; an escape stream then holds ONE bit for every position
// whose base code is the top code 2^r − 1, in position order (1 = the true code is the overflow bucket 2^r,
// 0 = it is 2^r − 1), packed with BitPacking's little-endian bit order. Decoding needs no index list: each top code
// consumes the next escape bit. When r = c overflow cannot happen and no escape stream is stored.
// Effective bits = (r·N + E)/N = r + E/N, E = number of top-code positions (escape bits), N = number of codes.
namespace Matq.Kernels.Packing;

/// <summary>An extra-precision slice of N master codes and its storage accounting.</summary>
public sealed class ExtraPrecisionSlice
{
    public int MasterBits { get; }
    public int SliceBits { get; }

    /// <summary>Sliced codes, 0..2^r (2^r is the overflow bucket).</summary>
    public byte[] Codes { get; }

    /// <summary>Positions whose code is the overflow bucket 2^r.</summary>
    public int OverflowCount { get; }

    /// <summary>Bit i (little-endian bit order) is 1 when position i overflowed; ceil(N/8) bytes.</summary>
    public byte[] OverflowMask { get; }

    /// <summary>E: escape bits stored (positions whose clamped code is 2^r − 1); 0 when r = c.</summary>
    public int EscapeBitCount { get; }

    /// <summary>The escape stream, PackedLength(E, 1) bytes.</summary>
    public byte[] EscapeStream { get; }

    internal ExtraPrecisionSlice(int masterBits, int sliceBits, byte[] codes)
    {
        MasterBits = masterBits;
        SliceBits = sliceBits;
        Codes = codes;
        OverflowMask = new byte[(codes.Length + 7) / 8];
        int top = (1 << sliceBits) - 1;
        var escapes = new List<byte>();
        for (int i = 0; i < codes.Length; i++)
        {
            if (codes[i] > top)
            {
                OverflowCount++;
                OverflowMask[i >> 3] |= (byte)(1 << (i & 7));
            }
            if (sliceBits < masterBits && codes[i] >= top) escapes.Add(codes[i] > top ? (byte)1 : (byte)0);
        }
        EscapeBitCount = escapes.Count;
        EscapeStream = BitPacking.PackU8(escapes.ToArray(), 1);
    }

    public int Length => Codes.Length;

    /// <summary>Fraction of positions in the overflow bucket.</summary>
    public double OverflowFraction => Length == 0 ? 0 : (double)OverflowCount / Length;

    /// <summary>Measured bits per weight of the stored form: r + E/N (r when N = 0).</summary>
    public double EffectiveBits => EffectiveBitsFor(SliceBits, EscapeBitCount, Length);

    /// <summary>r + escapeBits/count: the documented cost of the base stream plus the escape stream.</summary>
    public static double EffectiveBitsFor(int sliceBits, long escapeBits, long count) =>
        count == 0 ? sliceBits : sliceBits + (double)escapeBits / count;

    /// <summary>The base stream's codes: min(S, 2^r − 1), i.e. the ordinary clamped slice.</summary>
    public byte[] BaseCodes()
    {
        byte top = (byte)((1 << SliceBits) - 1);
        return Array.ConvertAll(Codes, c => c > top ? top : c);
    }

    /// <summary>Rebuilds extra-precision codes from base codes (0..2^r − 1) and an escape stream of
    /// <paramref name="escapeBitCount"/> bits; the inverse of (BaseCodes, EscapeStream).</summary>
    public static byte[] Decode(ReadOnlySpan<byte> baseCodes, int masterBits, int sliceBits, ReadOnlySpan<byte> escapeStream, int escapeBitCount)
    {
        Quantization.QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        byte[] escapes = BitPacking.UnpackU8(escapeStream, 1, escapeBitCount);
        int top = (1 << sliceBits) - 1, e = 0;
        var codes = new byte[baseCodes.Length];
        for (int i = 0; i < baseCodes.Length; i++)
        {
            int c = baseCodes[i];
            if (c > top) throw new ArgumentOutOfRangeException(nameof(baseCodes), $"base code {c} does not fit {sliceBits} bits");
            if (sliceBits < masterBits && c == top)
            {
                if (e >= escapes.Length) throw new ArgumentException("escape stream is shorter than the number of top codes");
                c += escapes[e++];
            }
            codes[i] = (byte)c;
        }
        if (e != escapes.Length) throw new ArgumentException("escape stream is longer than the number of top codes");
        return codes;
    }
}
