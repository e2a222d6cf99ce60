// Contract: the sparse encoding of an extra-precision slice: the r-bit base codes min(S, 2^r − 1) plus, per row, the
// list of positions whose code is the overflow bucket 2^r. Its exact size is what the paper's "r + overflow fraction"
// approaches (the escape stream of ExtraPrecisionSlice instead costs one bit per top-code position, overflow or not).
//
// Stream, per row in order, bits LSB-first within each byte (BitPacking's order), rows not byte-aligned:
//   n        ⌈log2(cols + 1)⌉ bits        overflow count of the row (0..cols)
//   k        3 bits, only when n > 0      Golomb-Rice parameter 0..7 of the row, chosen to minimize its bits (ties: smaller k)
//   gaps     n Rice codes                 d_1 = i_1, d_j = i_j − i_{j−1} − 1 (i ascending): ⌊d/2^k⌋ one-bits, a zero bit,
//                                         then the k low bits of d (LSB first)
// Bits of a row: B = ⌈log2(cols + 1)⌉ + [n > 0]·(3 + Σ_j (⌊d_j/2^k⌋ + 1 + k)); stored bits per weight of the slice
// = r + Σ_rows B / N. Decoding adds 1 to the base code at every listed position (which must hold the top code 2^r − 1).
namespace Matq.Quantization;

/// <summary>Per-row overflow position lists of an extra-precision slice: the encoded stream and its exact size.</summary>
public sealed class SparseOverflowList
{
    public const int KBits = 3, MaxK = (1 << KBits) - 1;

    private SparseOverflowList(int rows, int cols, int sliceBits, byte[] stream, long bits, long overflow)
    {
        Rows = rows; Cols = cols; SliceBits = sliceBits; Stream = stream; ListBits = bits; OverflowCount = overflow;
    }

    public int Rows { get; }
    public int Cols { get; }
    public int SliceBits { get; }
    /// <summary>The encoded lists, ⌈ListBits/8⌉ bytes.</summary>
    public byte[] Stream { get; }
    /// <summary>Exact bits of the lists (the header's Σ_rows B).</summary>
    public long ListBits { get; }
    public long OverflowCount { get; }

    /// <summary>True stored bits per weight of base codes + lists: r + ListBits/N.</summary>
    public double StoredBitsPerWeight => StoredBitsFor(SliceBits, ListBits, (long)Rows * Cols);

    /// <summary>The paper's metric for the same slice: r + overflow/N.</summary>
    public double PaperBitsPerWeight => PaperBitsFor(SliceBits, OverflowCount, (long)Rows * Cols);

    public static double StoredBitsFor(int sliceBits, long listBits, long count) => count == 0 ? sliceBits : sliceBits + (double)listBits / count;

    public static double PaperBitsFor(int sliceBits, long overflow, long count) => count == 0 ? sliceBits : sliceBits + (double)overflow / count;

    /// <summary>⌈log2(cols + 1)⌉: bits of a row's count field.</summary>
    public static int CountBits(int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int b = 0;
        while ((1L << b) < (long)cols + 1) b++;
        return b;
    }

    /// <summary>Bits of one row with ascending overflow <paramref name="positions"/>, and the k that achieves them.</summary>
    public static (long Bits, int K) RowBits(int cols, ReadOnlySpan<int> positions)
    {
        long head = CountBits(cols);
        if (positions.Length == 0) return (head, 0);
        long best = long.MaxValue;
        int bestK = 0;
        for (int k = 0; k <= MaxK; k++)
        {
            long bits = 0;
            int prev = -1;
            foreach (var p in positions) { bits += ((long)(p - prev - 1) >> k) + 1 + k; prev = p; }
            if (bits < best) { best = bits; bestK = k; }
        }
        return (head + KBits + best, bestK);
    }

    /// <summary>Encodes the overflow positions of extra-precision <paramref name="codes"/> [rows, cols] (0..2^r, row-major).</summary>
    public static SparseOverflowList Encode(ReadOnlySpan<byte> codes, int rows, int cols, int sliceBits)
    {
        Check(codes.Length, rows, cols, sliceBits);
        int top = (1 << sliceBits) - 1;
        var w = new BitWriter();
        var positions = new List<int>();
        long overflow = 0;
        int countBits = CountBits(cols);
        for (int r = 0; r < rows; r++)
        {
            positions.Clear();
            var row = codes.Slice(r * cols, cols);
            for (int i = 0; i < cols; i++)
            {
                if (row[i] > top + 1) throw new ArgumentOutOfRangeException(nameof(codes), $"code {row[i]} exceeds the overflow bucket {top + 1} of {sliceBits} bits");
                if (row[i] == top + 1) positions.Add(i);
            }
            overflow += positions.Count;
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(positions);
            var (_, k) = RowBits(cols, span);
            w.Write((ulong)positions.Count, countBits);
            if (positions.Count == 0) continue;
            w.Write((ulong)k, KBits);
            int prev = -1;
            foreach (var p in positions)
            {
                long d = p - prev - 1;
                for (long q = d >> k; q > 0; q--) w.Write(1, 1);
                w.Write(0, 1);
                w.Write((ulong)(d & ((1L << k) - 1)), k);
                prev = p;
            }
        }
        return new SparseOverflowList(rows, cols, sliceBits, w.ToArray(), w.Bits, overflow);
    }

    /// <summary>Rebuilds the extra-precision codes from base codes [rows, cols] (0..2^r − 1) and the lists.</summary>
    public static byte[] Decode(ReadOnlySpan<byte> baseCodes, int rows, int cols, int sliceBits, ReadOnlySpan<byte> stream)
    {
        Check(baseCodes.Length, rows, cols, sliceBits);
        int top = (1 << sliceBits) - 1, countBits = CountBits(cols);
        var codes = baseCodes.ToArray();
        var rd = new BitReader(stream);
        for (int r = 0; r < rows; r++)
        {
            long n = (long)rd.Read(countBits);
            if (n > cols) throw new ArgumentException($"row {r} lists {n} overflow positions, more than its {cols} columns");
            if (n == 0) continue;
            int k = (int)rd.Read(KBits);
            long p = -1;
            for (long j = 0; j < n; j++)
            {
                long q = 0;
                while (rd.Read(1) == 1) if (++q > cols) throw new ArgumentException($"row {r}: a gap runs past the row");
                p += (q << k) + (long)rd.Read(k) + 1;
                if (p >= cols) throw new ArgumentException($"row {r}: overflow position {p} is outside its {cols} columns");
                int at = r * cols + (int)p;
                if (codes[at] != top) throw new ArgumentException($"row {r}: position {p} overflows but its base code is {codes[at]}, not the top code {top}");
                codes[at] = (byte)(top + 1);
            }
        }
        return codes;
    }

    private static void Check(int length, int rows, int cols, int sliceBits)
    {
        if (sliceBits < 1 || sliceBits > 7) throw new ArgumentOutOfRangeException(nameof(sliceBits), sliceBits, "extra precision needs a slice of 1..7 bits (below the 8-bit master)");
        if (rows < 0 || cols < 0 || (long)rows * cols != length)
            throw new ArgumentException($"{length} codes are not [{rows}, {cols}]");
    }

    private sealed class BitWriter
    {
        private readonly List<byte> _bytes = [];
        public long Bits { get; private set; }

        public void Write(ulong value, int count)
        {
            for (int i = 0; i < count; i++)
            {
                if ((Bits & 7) == 0) _bytes.Add(0);
                if (((value >> i) & 1) != 0) _bytes[^1] |= (byte)(1 << (int)(Bits & 7));
                Bits++;
            }
        }

        public byte[] ToArray() => _bytes.ToArray();
    }

    private ref struct BitReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private long _bit;

        public ulong Read(int count)
        {
            ulong v = 0;
            for (int i = 0; i < count; i++, _bit++)
            {
                if ((_bit >> 3) >= _data.Length) throw new ArgumentException("overflow list stream ends early");
                v |= (ulong)((_data[(int)(_bit >> 3)] >> (int)(_bit & 7)) & 1) << i;
            }
            return v;
        }
    }
}
