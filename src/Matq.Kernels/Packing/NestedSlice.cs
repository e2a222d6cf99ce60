// Contract: Matryoshka slicing of c-bit master codes to their r most-significant bits (scalar reference, it
// DEFINES sliced codes): S(q, r) = clamp(⌊q/2^(c−r) + ½⌋, 0, 2^r − 1), served as ŵ_r = α·(S·2^(c−r) − z).
// The extra-precision variant drops the upper clamp, so S may reach the overflow bucket 2^r (see ExtraPrecisionSlice).
using Matq.Kernels.Quantization;

namespace Matq.Kernels.Packing;

/// <summary>Nested (Matryoshka) slicing of raw master codes and dequantization of sliced codes.</summary>
public static class NestedSlice
{
    /// <summary>S(q, c, r): round half up at bit (c−r), then clamp to the r-bit range. r = c is the identity.</summary>
    public static byte Slice(byte q, int masterBits, int sliceBits)
    {
        int s = SliceUnclamped(q, masterBits, sliceBits);
        int top = (1 << sliceBits) - 1;
        return (byte)(s > top ? top : s);
    }

    /// <summary>⌊q/2^(c−r) + ½⌋ without the upper clamp: 0..2^r (2^r only when r &lt; c and q ≥ 2^c − 2^(c−r−1)).</summary>
    public static int SliceUnclamped(byte q, int masterBits, int sliceBits)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        if (q >> masterBits != 0) throw new ArgumentOutOfRangeException(nameof(q), $"code {q} does not fit {masterBits} master bits");
        int k = masterBits - sliceBits;
        // ⌊q/2^k + ½⌋ = ⌊(q + 2^(k−1)) / 2^k⌋ in integers; q is non-negative so the shift is a floor.
        return k == 0 ? q : (q + (1 << (k - 1))) >> k;
    }

    /// <summary>Slices every code of <paramref name="codes"/> into <paramref name="dst"/> (same length).</summary>
    public static void Slice(ReadOnlySpan<byte> codes, int masterBits, int sliceBits, Span<byte> dst)
    {
        if (dst.Length != codes.Length) throw new ArgumentException("destination length must equal the number of codes");
        for (int i = 0; i < codes.Length; i++) dst[i] = Slice(codes[i], masterBits, sliceBits);
    }

    /// <summary>Slices into a new array.</summary>
    public static byte[] Slice(ReadOnlySpan<byte> codes, int masterBits, int sliceBits)
    {
        var dst = new byte[codes.Length];
        Slice(codes, masterBits, sliceBits, dst);
        return dst;
    }

    /// <summary>Extra-precision slice: codes in 0..2^r, the overflow positions and the effective bits of its storage.</summary>
    public static ExtraPrecisionSlice SliceExtra(ReadOnlySpan<byte> codes, int masterBits, int sliceBits)
    {
        var ext = new byte[codes.Length];
        for (int i = 0; i < codes.Length; i++) ext[i] = (byte)SliceUnclamped(codes[i], masterBits, sliceBits);
        return new ExtraPrecisionSlice(masterBits, sliceBits, ext);
    }

    /// <summary>ŵ_r = α·(S·2^(c−r) − z) with the master α and z of <paramref name="p"/> (c = p.Bits) for row-major
    /// sliced codes [Rows, Cols]. Accepts extra-precision codes (S = 2^r) as well.</summary>
    public static void Dequantize(ReadOnlySpan<byte> sliced, QuantParams p, int sliceBits, Span<float> dst)
    {
        ArgumentNullException.ThrowIfNull(p);
        QuantSpec.ValidateSliceBits(p.Bits, sliceBits);
        int n = p.Rows * p.Cols;
        if (sliced.Length != n || dst.Length != n) throw new ArgumentException($"sliced codes and destination must hold {p.Rows}×{p.Cols} elements");
        int k = p.Bits - sliceBits;
        for (int r = 0; r < p.Rows; r++)
            for (int c = 0; c < p.Cols; c++)
            {
                int i = r * p.Cols + c, j = p.ParamIndex(r, c);
                if (sliced[i] > 1 << sliceBits) throw new ArgumentOutOfRangeException(nameof(sliced), $"sliced code {sliced[i]} exceeds 2^{sliceBits}");
                dst[i] = AffineQuantizer.DequantizeValue(sliced[i] << k, p.Scales[j], p.Zeros[j]);
            }
    }

    /// <summary>Dequantizes sliced codes into a new array.</summary>
    public static float[] Dequantize(ReadOnlySpan<byte> sliced, QuantParams p, int sliceBits)
    {
        ArgumentNullException.ThrowIfNull(p);
        var dst = new float[sliced.Length];
        Dequantize(sliced, p, sliceBits, dst);
        return dst;
    }
}
