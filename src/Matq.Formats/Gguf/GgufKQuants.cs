// Contract: ggml's k-quant super-blocks (QK_K = 256 values), written and read from the public GGUF/ggml block layouts,
// and the 5-bit 32-blocks llama.cpp's quantizer falls back to (q5_0, q5_1). All little-endian, f16 = IEEE half.
//   Q2_K  84 B: u8 scales[16] (sc | m << 4) | u8 qs[64] | f16 d | f16 dmin       16-wide sub-blocks, q 0..3
//   Q3_K 110 B: u8 hmask[32] | u8 qs[64] | u8 scales[12] (16 × 6 bit, −32 bias) | f16 d     q = low2 + 4·high − 4
//   Q4_K 144 B: f16 d | f16 dmin | u8 scales[12] (8 × 6-bit sc, 8 × 6-bit m) | u8 qs[128]      32-wide, q 0..15
//   Q5_K 176 B: f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]                         32-wide, q 0..31
//   Q6_K 210 B: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d                                    16-wide, q − 32
// value i of a super-block, j = its sub-block: asymmetric (q2/q4/q5) (d·sc_j)·q_i − dmin·m_j; symmetric (q3/q6)
// (d·sc_j)·(q_i − offset). Bit positions, for i = 0..255:
//   q2: qs[32·(i/128) + i%32] bits 2·((i%128)/32)           q3: low 2 bits as q2; high bit hmask[i%32] bit 4·(i/128) + (i%128)/32
//   q4: qs[32·(i/64) + i%32], low nibble when i%64 < 32     q5: low 4 bits as q4; high bit qh[i%32] bit i/32
//   q6: low nibble ql[64·(i/128) + i%32 + 32·(k&1)] (high nibble when k ≥ 2), top 2 bits qh[32·(i/128) + i%32] bits 2k,
//       k = (i%128)/32; scale index i/16 (all types: sub-blocks are consecutive runs of 16 or 32 values)
//   q3 scales: 6-bit l_j = sc_j + 32; low nibble in byte j (j < 8) or the high nibble of byte j − 8; bits 4–5 of l_j in
//       byte 8 + j%4 at bits 2·(j/4).   q4/q5 scales: j < 4: byte j = sc_j, byte j+4 = m_j (6 bits each); j ≥ 4: byte
//       j+4 = sc_j & 15 | (m_j & 15) << 4, and their top 2 bits in bits 6–7 of bytes j−4 (sc) and j (m).
//   Q5_0 22 B: f16 d | u32 qh | u8 qs[16]: q_j = (qs[j] & 15 | bit j of qh << 4), q_{j+16} from the high nibble and bit
//   j+16; value d·(q − 16).   Q5_1 24 B: f16 d | f16 m | u32 qh | u8 qs[16]: value d·q + m.
// Decoding evaluates each value with the same float32 operations, in the same order, as ggml's reference dequantizer,
// so it matches ggml bit for bit (tests/Matq.Tests/Formats/GgufKQuantTests.cs checks against libggml itself).
namespace Matq.Formats.Gguf;

/// <summary>A k-quant super-block unpacked: d, dmin, per-sub-block integer scales and mins, and 256 unsigned codes.</summary>
public sealed class KBlock
{
    public float D, DMin;
    public int[] Sc { get; }
    public int[] M { get; }
    public byte[] Q { get; } = new byte[GgufKQuants.SuperBlock];
    public KBlock(int subBlocks) { Sc = new int[subBlocks]; M = new int[subBlocks]; }
}

/// <summary>Parameters of one k-quant type: code bits, sub-block width, symmetric (offset) or with mins, integer ranges.</summary>
public sealed record KSpec(GgmlType Type, int Bits, int Sub, bool Symmetric, int ScLo, int ScHi, int MHi, int Offset, int Bytes)
{
    public int QMax => (1 << Bits) - 1;
    public int SubBlocks => GgufKQuants.SuperBlock / Sub;
}

public static class GgufKQuants
{
    public const int SuperBlock = 256;

    private static readonly KSpec Q2 = new(GgmlType.Q2_K, 2, 16, false, 0, 15, 15, 0, 84);
    private static readonly KSpec Q3 = new(GgmlType.Q3_K, 3, 16, true, -32, 31, 0, 4, 110);
    private static readonly KSpec Q4 = new(GgmlType.Q4_K, 4, 32, false, 0, 63, 63, 0, 144);
    private static readonly KSpec Q5 = new(GgmlType.Q5_K, 5, 32, false, 0, 63, 63, 0, 176);
    private static readonly KSpec Q6 = new(GgmlType.Q6_K, 6, 16, true, -128, 127, 0, 32, 210);

    public static bool IsKQuant(GgmlType t) => t is GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    public static KSpec Spec(GgmlType t) => t switch
    {
        GgmlType.Q2_K => Q2, GgmlType.Q3_K => Q3, GgmlType.Q4_K => Q4, GgmlType.Q5_K => Q5, GgmlType.Q6_K => Q6,
        _ => throw new MatqException($"{t} is not a k-quant type"),
    };

    /// <summary>
    /// The type llama.cpp's quantizer writes instead of a k-quant when a row is not a multiple of 256 values:
    /// q2_K/q3_K → q4_0 (llama.cpp before IQ4_NL), q4_K → q5_0, q5_K → q5_1, q6_K → q8_0.
    /// </summary>
    public static GgmlType Fallback(GgmlType t) => t switch
    {
        GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0, GgmlType.Q4_K => GgmlType.Q5_0, GgmlType.Q5_K => GgmlType.Q5_1,
        GgmlType.Q6_K => GgmlType.Q8_0, _ => t,
    };

    // ---- values of an unpacked block, in ggml's float order ----

    public static void Values(KSpec s, KBlock b, Span<float> y)
    {
        for (int j = 0; j < s.SubBlocks; j++)
        {
            float dl = b.D * b.Sc[j];
            float ml = s.Symmetric ? 0f : b.DMin * b.M[j];
            for (int l = 0; l < s.Sub; l++)
            {
                int i = j * s.Sub + l;
                y[i] = s.Symmetric ? dl * (b.Q[i] - s.Offset) : dl * b.Q[i] - ml;
            }
        }
    }

    // ---- packing ----

    public static void Pack(KSpec s, KBlock b, Span<byte> dst)
    {
        dst[..s.Bytes].Clear();
        var q = b.Q;
        switch (s.Type)
        {
            case GgmlType.Q2_K:
                for (int j = 0; j < 16; j++) dst[j] = (byte)(b.Sc[j] & 15 | (b.M[j] & 15) << 4);
                for (int i = 0; i < 256; i++) dst[16 + 32 * (i / 128) + i % 32] |= (byte)((q[i] & 3) << 2 * (i % 128 / 32));
                GgufBlocks.WriteHalf(dst[80..], b.D);
                GgufBlocks.WriteHalf(dst[82..], b.DMin);
                break;
            case GgmlType.Q3_K:
                for (int i = 0; i < 256; i++)
                {
                    dst[32 + 32 * (i / 128) + i % 32] |= (byte)((q[i] & 3) << 2 * (i % 128 / 32));
                    dst[i % 32] |= (byte)((q[i] >> 2 & 1) << 4 * (i / 128) + i % 128 / 32);
                }
                for (int j = 0; j < 16; j++)
                {
                    int l = b.Sc[j] + 32;
                    if (j < 8) dst[96 + j] |= (byte)(l & 15); else dst[96 + j - 8] |= (byte)((l & 15) << 4);
                    dst[96 + 8 + j % 4] |= (byte)((l >> 4 & 3) << 2 * (j / 4));
                }
                GgufBlocks.WriteHalf(dst[108..], b.D);
                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                GgufBlocks.WriteHalf(dst, b.D);
                GgufBlocks.WriteHalf(dst[2..], b.DMin);
                PackScales6(b.Sc, b.M, dst.Slice(4, 12));
                int qs = s.Type == GgmlType.Q4_K ? 16 : 48;
                for (int i = 0; i < 256; i++)
                {
                    dst[qs + 32 * (i / 64) + i % 32] |= (byte)((q[i] & 15) << 4 * (i % 64 / 32));
                    if (s.Type == GgmlType.Q5_K) dst[16 + i % 32] |= (byte)((q[i] >> 4 & 1) << i / 32);
                }
                break;
            case GgmlType.Q6_K:
                for (int i = 0; i < 256; i++)
                {
                    int c = i / 128, k = i % 128 / 32, l = i % 32;
                    dst[64 * c + l + 32 * (k & 1)] |= (byte)((q[i] & 15) << (k >= 2 ? 4 : 0));
                    dst[128 + 32 * c + l] |= (byte)((q[i] >> 4 & 3) << 2 * k);
                }
                for (int j = 0; j < 16; j++) dst[192 + j] = (byte)(sbyte)b.Sc[j];
                GgufBlocks.WriteHalf(dst[208..], b.D);
                break;
        }
    }

    public static KBlock Unpack(KSpec s, ReadOnlySpan<byte> src)
    {
        var b = new KBlock(s.SubBlocks);
        var q = b.Q;
        switch (s.Type)
        {
            case GgmlType.Q2_K:
                for (int j = 0; j < 16; j++) { b.Sc[j] = src[j] & 15; b.M[j] = src[j] >> 4; }
                for (int i = 0; i < 256; i++) q[i] = (byte)(src[16 + 32 * (i / 128) + i % 32] >> 2 * (i % 128 / 32) & 3);
                b.D = GgufBlocks.ReadHalf(src[80..]);
                b.DMin = GgufBlocks.ReadHalf(src[82..]);
                break;
            case GgmlType.Q3_K:
                for (int i = 0; i < 256; i++)
                {
                    int low = src[32 + 32 * (i / 128) + i % 32] >> 2 * (i % 128 / 32) & 3;
                    int high = src[i % 32] >> 4 * (i / 128) + i % 128 / 32 & 1;
                    q[i] = (byte)(low | high << 2);
                }
                for (int j = 0; j < 16; j++)
                {
                    int low = j < 8 ? src[96 + j] & 15 : src[96 + j - 8] >> 4;
                    int high = src[96 + 8 + j % 4] >> 2 * (j / 4) & 3;
                    b.Sc[j] = (low | high << 4) - 32;
                }
                b.D = GgufBlocks.ReadHalf(src[108..]);
                break;
            case GgmlType.Q4_K:
            case GgmlType.Q5_K:
                b.D = GgufBlocks.ReadHalf(src);
                b.DMin = GgufBlocks.ReadHalf(src[2..]);
                UnpackScales6(src.Slice(4, 12), b.Sc, b.M);
                int qs = s.Type == GgmlType.Q4_K ? 16 : 48;
                for (int i = 0; i < 256; i++)
                {
                    int v = src[qs + 32 * (i / 64) + i % 32] >> 4 * (i % 64 / 32) & 15;
                    if (s.Type == GgmlType.Q5_K) v |= (src[16 + i % 32] >> i / 32 & 1) << 4;
                    q[i] = (byte)v;
                }
                break;
            case GgmlType.Q6_K:
                for (int i = 0; i < 256; i++)
                {
                    int c = i / 128, k = i % 128 / 32, l = i % 32;
                    int low = src[64 * c + l + 32 * (k & 1)] >> (k >= 2 ? 4 : 0) & 15;
                    int high = src[128 + 32 * c + l] >> 2 * k & 3;
                    q[i] = (byte)(low | high << 4);
                }
                for (int j = 0; j < 16; j++) b.Sc[j] = (sbyte)src[192 + j];
                b.D = GgufBlocks.ReadHalf(src[208..]);
                break;
        }
        return b;
    }

    private static void PackScales6(int[] sc, int[] m, Span<byte> dst)
    {
        for (int j = 0; j < 8; j++)
        {
            int ls = sc[j] & 63, lm = m[j] & 63;
            if (j < 4) { dst[j] |= (byte)ls; dst[j + 4] |= (byte)lm; }
            else
            {
                dst[j + 4] = (byte)(ls & 15 | (lm & 15) << 4);
                dst[j - 4] |= (byte)(ls >> 4 << 6);
                dst[j] |= (byte)(lm >> 4 << 6);
            }
        }
    }

    private static void UnpackScales6(ReadOnlySpan<byte> s, int[] sc, int[] m)
    {
        for (int j = 0; j < 8; j++)
        {
            if (j < 4) { sc[j] = s[j] & 63; m[j] = s[j + 4] & 63; }
            else { sc[j] = s[j + 4] & 15 | s[j - 4] >> 6 << 4; m[j] = s[j + 4] >> 4 | s[j] >> 6 << 4; }
        }
    }

    // ---- exact representation of a given grid ----

    /// <summary>
    /// The super-block that holds exactly the grid value_i = subScale_j·(code_i − offset) (symmetric types, offset =
    /// 2^(bits−1)) or subScale_j·code_i − subMin_j (the others), codes 0..2^bits − 1: d (and dmin) fp16 with integer
    /// sub-block scales (mins) in the type's range such that d·sc_j equals subScale_j to fp16 precision (|error| ≤ 2^−10
    /// relative); null when no such d exists.
    /// </summary>
    public static KBlock? TryExact(KSpec s, ReadOnlySpan<byte> codes, ReadOnlySpan<float> subScale, ReadOnlySpan<float> subMin)
    {
        var b = new KBlock(s.SubBlocks);
        for (int i = 0; i < SuperBlock; i++) { if (codes[i] > s.QMax) return null; b.Q[i] = codes[i]; }
        if (!FitInts(subScale, s.ScLo, s.ScHi, out b.D, b.Sc)) return null;
        if (!s.Symmetric && !FitInts(subMin, 0, s.MHi, out b.DMin, b.M)) return null;
        return b;
    }

    private static bool FitInts(ReadOnlySpan<float> t, int lo, int hi, out float d, int[] k)
    {
        d = 0;
        float tmax = 0;
        foreach (var v in t) { if (!float.IsFinite(v)) return false; if (Math.Abs(v) > Math.Abs(tmax)) tmax = v; }
        if (tmax == 0) { Array.Clear(k); return true; }
        int top = Math.Max(-lo, hi);
        for (int n = 1; n <= top; n++)
        {
            foreach (int nn in new[] { n, -n })
            {
                if (nn < lo || nn > hi) continue;
                float cand = (float)(Half)(tmax / nn);
                if (cand == 0 || !float.IsFinite(cand)) continue;
                bool ok = true;
                for (int j = 0; j < t.Length && ok; j++)
                {
                    float r = MathF.Round(t[j] / cand);
                    ok = r >= lo && r <= hi && Math.Abs(cand * r - t[j]) <= Math.Abs(t[j]) / 1024f;
                    if (ok) k[j] = (int)r;
                }
                if (ok) { d = cand; return true; }
            }
        }
        return false;
    }

    // ---- quantization from values ----

    /// <summary>
    /// Quantizes 256 values: each sub-block gets a least-squares scale (and min ≤ 0 for the asymmetric types) searched
    /// over candidate grids — and, when <paramref name="hintScale"/> gives one (NaN: none), also the grid
    /// hintScale·q + hintMin the values came from; the sub-block scales and mins are then rounded to the type's integer
    /// range under fp16 d and dmin, and the codes recomputed against the rounded scales (as ggml's reference quantizer does).
    /// </summary>
    public static KBlock Quantize(KSpec s, ReadOnlySpan<float> x, ReadOnlySpan<float> hintScale = default, ReadOnlySpan<float> hintMin = default)
    {
        int nsb = s.SubBlocks;
        Span<float> sc = stackalloc float[nsb], mn = stackalloc float[nsb];
        for (int j = 0; j < nsb; j++)
        {
            var xs = x.Slice(j * s.Sub, s.Sub);
            float hs = hintScale.IsEmpty ? float.NaN : hintScale[j], hm = hintMin.IsEmpty ? 0f : hintMin[j];
            (sc[j], mn[j]) = s.Symmetric ? FitSym(xs, s.Offset, s.QMax - s.Offset, hs) : FitAsym(xs, s.QMax, hs, hm);
        }
        var b = new KBlock(nsb);
        if (s.Symmetric)
        {
            float big = 0;
            foreach (var v in sc) if (Math.Abs(v) > Math.Abs(big)) big = v;
            b.D = big == 0 ? 0f : (float)(Half)(big / s.ScLo);
            for (int j = 0; j < nsb; j++) b.Sc[j] = b.D == 0 ? 0 : Math.Clamp((int)MathF.Round(sc[j] / b.D), s.ScLo, s.ScHi);
        }
        else
        {
            float maxS = 0, maxM = 0;
            for (int j = 0; j < nsb; j++) { maxS = Math.Max(maxS, sc[j]); maxM = Math.Max(maxM, -mn[j]); }
            b.D = (float)(Half)(maxS / s.ScHi);
            b.DMin = (float)(Half)(maxM / s.MHi);
            for (int j = 0; j < nsb; j++)
            {
                b.Sc[j] = b.D == 0 ? 0 : Math.Clamp((int)MathF.Round(sc[j] / b.D), 0, s.ScHi);
                b.M[j] = b.DMin == 0 ? 0 : Math.Clamp((int)MathF.Round(-mn[j] / b.DMin), 0, s.MHi);
            }
        }
        for (int j = 0; j < nsb; j++)
        {
            float dl = b.D * b.Sc[j], ml = s.Symmetric ? 0f : b.DMin * b.M[j];
            for (int l = 0; l < s.Sub; l++)
            {
                int i = j * s.Sub + l;
                int q = dl == 0 ? (s.Symmetric ? s.Offset : 0)
                    : s.Symmetric ? (int)MathF.Round(x[i] / dl) + s.Offset : (int)MathF.Round((x[i] + ml) / dl);
                b.Q[i] = (byte)Math.Clamp(q, 0, s.QMax);
            }
        }
        return b;
    }

    // value ≈ s·q + m, q in 0..nmax, m ≤ 0, s ≥ 0
    private static (float S, float M) FitAsym(ReadOnlySpan<float> x, int nmax, float hintS, float hintM)
    {
        float lo = 0, hi = float.MinValue;
        foreach (var v in x) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
        if (hi <= lo) return (0f, lo);
        (float S, float M) best = ((hi - lo) / nmax, lo);
        double bestErr = ErrAsym(x, nmax, best.S, best.M);
        for (int step = -8; step <= 12; step++) TryAsym(x, nmax, (hi - lo) / (nmax + 0.1f * step), lo, ref best, ref bestErr);
        if (!float.IsNaN(hintS)) TryAsym(x, nmax, hintS, Math.Min(hintM, 0f), ref best, ref bestErr);
        return best;
    }

    // codes from the grid (s0, m0), then the least-squares (s, m) for those codes (m clamped to ≤ 0)
    private static void TryAsym(ReadOnlySpan<float> x, int nmax, float s0, float m0, ref (float S, float M) best, ref double bestErr)
    {
        if (!(s0 > 0) || !float.IsFinite(m0)) return;
        double n = x.Length, sq = 0, sqq = 0, sx = 0, sqx = 0;
        foreach (var v in x)
        {
            int q = Math.Clamp((int)MathF.Round((v - m0) / s0), 0, nmax);
            sq += q; sqq += (double)q * q; sx += v; sqx += (double)q * v;
        }
        double det = n * sqq - sq * sq, s, m;
        if (det > 0) { s = (n * sqx - sq * sx) / det; m = (sqq * sx - sq * sqx) / det; } else { s = s0; m = m0; }
        if (m > 0) { m = 0; s = sqq > 0 ? sqx / sqq : 0; }
        if (!(s > 0)) return;
        double e = ErrAsym(x, nmax, (float)s, (float)m);
        if (e < bestErr) { bestErr = e; best = ((float)s, (float)m); }
    }

    private static double ErrAsym(ReadOnlySpan<float> x, int nmax, float s, float m)
    {
        double e = 0;
        foreach (var v in x) { double d = s * Math.Clamp(MathF.Round((v - m) / s), 0, nmax) + m - v; e += d * d; }
        return e;
    }

    // value ≈ s·q, q in −neg..pos
    private static (float S, float M) FitSym(ReadOnlySpan<float> x, int neg, int pos, float hintS)
    {
        float big = 0;
        foreach (var v in x) if (Math.Abs(v) > Math.Abs(big)) big = v;
        if (big == 0) return (0f, 0f);
        float best = big / -neg;
        double bestErr = ErrSym(x, neg, pos, best);
        for (int step = -8; step <= 8; step++)
        {
            TrySym(x, neg, pos, big / -(neg + 0.1f * step), ref best, ref bestErr);
            TrySym(x, neg, pos, big / (pos + 0.1f * step), ref best, ref bestErr);
        }
        if (!float.IsNaN(hintS)) TrySym(x, neg, pos, hintS, ref best, ref bestErr);
        return (best, 0f);
    }

    private static void TrySym(ReadOnlySpan<float> x, int neg, int pos, float s0, ref float best, ref double bestErr)
    {
        if (s0 == 0 || !float.IsFinite(s0)) return;
        double sqq = 0, sqx = 0;
        foreach (var v in x) { int q = Math.Clamp((int)MathF.Round(v / s0), -neg, pos); sqq += (double)q * q; sqx += (double)q * v; }
        if (sqq == 0) return;
        float s = (float)(sqx / sqq);
        double e = ErrSym(x, neg, pos, s);
        if (e < bestErr) { bestErr = e; best = s; }
    }

    private static double ErrSym(ReadOnlySpan<float> x, int neg, int pos, float s)
    {
        if (s == 0) return double.MaxValue;
        double e = 0;
        foreach (var v in x) { double d = s * Math.Clamp(MathF.Round(v / s), -neg, pos) - v; e += d * d; }
        return e;
    }

    /// <summary>Rows of floats (length a multiple of 256) quantized to k-quant type t from their values.</summary>
    public static void Encode(GgmlType t, ReadOnlySpan<float> values, Span<byte> dst)
    {
        var s = Spec(t);
        if (values.Length >= 64 * SuperBlock)
        {
            // large tensors (embeddings, HF-folder weights): super-blocks are independent, quantize them in parallel
            var x = values.ToArray();
            var outBytes = new byte[dst.Length];
            Parallel.For(0, x.Length / SuperBlock, b =>
                Pack(s, Quantize(s, x.AsSpan(b * SuperBlock, SuperBlock)), outBytes.AsSpan(b * s.Bytes, s.Bytes)));
            outBytes.CopyTo(dst);
            return;
        }
        for (int b = 0; b < values.Length / SuperBlock; b++)
            Pack(s, Quantize(s, values.Slice(b * SuperBlock, SuperBlock)), dst.Slice(b * s.Bytes, s.Bytes));
    }

    public static void Decode(GgmlType t, ReadOnlySpan<byte> data, Span<float> y)
    {
        var s = Spec(t);
        for (int b = 0; b < y.Length / SuperBlock; b++)
            Values(s, Unpack(s, data.Slice(b * s.Bytes, s.Bytes)), y.Slice(b * SuperBlock, SuperBlock));
    }

    // ---- q5_0 / q5_1 (32-value blocks) ----

    /// <summary>Q5_0 from floats: the value of largest magnitude maps to −16, d = that / −16, q = clamp(round(x/d) + 16, 0, 31).</summary>
    public static void EncodeQ5_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float max = 0;
        foreach (var v in x[..32]) if (Math.Abs(v) > Math.Abs(max)) max = v;
        float d = max / -16f;
        Span<byte> q = stackalloc byte[32];
        for (int i = 0; i < 32; i++) q[i] = d == 0 ? (byte)16 : (byte)Math.Clamp(MathF.Round(x[i] / d) + 16, 0, 31);
        GgufBlocks.WriteHalf(dst, d);
        Pack5(q, dst.Slice(2, 20));
    }

    /// <summary>Q5_1 from floats: m = min, d = (max − min)/31, q = clamp(round((x − m)/d), 0, 31).</summary>
    public static void EncodeQ5_1(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float min = float.MaxValue, max = float.MinValue;
        foreach (var v in x[..32]) { min = Math.Min(min, v); max = Math.Max(max, v); }
        float d = (max - min) / 31f;
        Span<byte> q = stackalloc byte[32];
        for (int i = 0; i < 32; i++) q[i] = d == 0 ? (byte)0 : (byte)Math.Clamp(MathF.Round((x[i] - min) / d), 0, 31);
        GgufBlocks.WriteHalf(dst, d);
        GgufBlocks.WriteHalf(dst[2..], min);
        Pack5(q, dst.Slice(4, 20));
    }

    private static void Pack5(ReadOnlySpan<byte> q, Span<byte> dst)
    {
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            dst[4 + j] = (byte)(q[j] & 15 | (q[j + 16] & 15) << 4);
            qh |= (uint)(q[j] >> 4 & 1) << j | (uint)(q[j + 16] >> 4 & 1) << (j + 16);
        }
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(dst, qh);
    }

    public static void DecodeQ5(GgmlType t, ReadOnlySpan<byte> block, Span<float> y)
    {
        float d = GgufBlocks.ReadHalf(block);
        bool one = t == GgmlType.Q5_1;
        float m = one ? GgufBlocks.ReadHalf(block[2..]) : 0f;
        var rest = block[(one ? 4 : 2)..];
        uint qh = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(rest);
        for (int j = 0; j < 16; j++)
        {
            int x0 = rest[4 + j] & 15 | (int)(qh >> j & 1) << 4, x1 = rest[4 + j] >> 4 | (int)(qh >> (j + 16) & 1) << 4;
            if (one) { y[j] = x0 * d + m; y[j + 16] = x1 * d + m; }
            else { y[j] = (x0 - 16) * d; y[j + 16] = (x1 - 16) * d; }
        }
    }
}
