// Contract: encoders of the GGUF/ggml tensor types matq writes, from the public GGUF spec (ggml block layouts):
//   Q8_0 (34 B / 32 values): f16 d | int8 qs[32]                  value i = d·qs[i]
//   Q4_0 (18 B / 32 values): f16 d | u8 qs[16]                    value i = d·(q_i − 8)
//   Q4_1 (20 B / 32 values): f16 d | f16 m | u8 qs[16]            value i = d·q_i + m
//   Q4_x nibbles: qs[j] = q_j | q_{j+16} << 4 (low nibbles values 0..15, high nibbles 16..31). All little-endian.
//   Q5_0, Q5_1 and the k-quants Q2_K..Q6_K (256-value super-blocks): GgufKQuants.
// A row of ne0 values is ne0/32 (k-quants: ne0/256) consecutive blocks; rows follow each other.
namespace Matq.Formats.Gguf;

public enum GgmlType : uint { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14 }

public static class GgufBlocks
{
    public const int BlockValues = 32;

    public static int BlockBytes(GgmlType t) => t switch
    {
        GgmlType.Q8_0 => 34, GgmlType.Q4_0 => 18, GgmlType.Q4_1 => 20, GgmlType.F16 => 64, GgmlType.F32 => 128,
        GgmlType.Q5_0 => 22, GgmlType.Q5_1 => 24,
        _ when GgufKQuants.IsKQuant(t) => GgufKQuants.Spec(t).Bytes,
        _ => throw new MatqException($"ggml type {t} is not written by matq"),
    };

    public static bool IsBlockType(GgmlType t) => t is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 || GgufKQuants.IsKQuant(t);

    /// <summary>Values per block of a block type: 256 for the k-quants, 32 for the others (1 for f32/f16).</summary>
    public static int BlockValuesOf(GgmlType t) => GgufKQuants.IsKQuant(t) ? GgufKQuants.SuperBlock : IsBlockType(t) ? BlockValues : 1;

    /// <summary>Bytes of a tensor of <paramref name="count"/> values of type t (count a multiple of 32 for block types).</summary>
    public static long ByteLength(GgmlType t, long count) => t switch
    {
        GgmlType.F32 => checked(4 * count), GgmlType.F16 => checked(2 * count),
        _ => count % BlockValuesOf(t) == 0 ? checked(count / BlockValuesOf(t) * BlockBytes(t))
            : throw new MatqException($"{t} needs a multiple of {BlockValuesOf(t)} values per row, got {count}"),
    };

    /// <summary>Q8_0 from floats: d = max|x|/127, qs = round(x/d) (d = 0 gives qs = 0).</summary>
    public static void EncodeQ8_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float amax = 0;
        foreach (var v in x[..32]) amax = Math.Max(amax, Math.Abs(v));
        float d = amax / 127f;
        var qs = new sbyte[32];
        for (int i = 0; i < 32; i++) qs[i] = d == 0 ? (sbyte)0 : (sbyte)Math.Clamp(MathF.Round(x[i] / d), -127, 127);
        WriteQ8_0(d, qs, dst);
    }

    /// <summary>Q8_0 from given parts (lossless codes path).</summary>
    public static void WriteQ8_0(float d, ReadOnlySpan<sbyte> qs, Span<byte> dst)
    {
        WriteHalf(dst, d);
        for (int i = 0; i < 32; i++) dst[2 + i] = (byte)qs[i];
    }

    /// <summary>Q4_0 from floats: the value of largest magnitude m maps to −8, d = m/−8, q = clamp(round(x/d) + 8, 0, 15).</summary>
    public static void EncodeQ4_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float max = 0;
        foreach (var v in x[..32]) if (Math.Abs(v) > Math.Abs(max)) max = v;
        float d = max / -8f;
        var q = new byte[32];
        for (int i = 0; i < 32; i++) q[i] = d == 0 ? (byte)8 : (byte)Math.Clamp(MathF.Round(x[i] / d) + 8, 0, 15);
        WriteQ4_0(d, q, dst);
    }

    public static void WriteQ4_0(float d, ReadOnlySpan<byte> q, Span<byte> dst)
    {
        WriteHalf(dst, d);
        PackNibbles(q, dst.Slice(2, 16));
    }

    /// <summary>Q4_1 from floats: m = min, d = (max − min)/15, q = clamp(round((x − m)/d), 0, 15).</summary>
    public static void EncodeQ4_1(ReadOnlySpan<float> x, Span<byte> dst)
    {
        float min = float.MaxValue, max = float.MinValue;
        foreach (var v in x[..32]) { min = Math.Min(min, v); max = Math.Max(max, v); }
        float d = (max - min) / 15f;
        var q = new byte[32];
        for (int i = 0; i < 32; i++) q[i] = d == 0 ? (byte)0 : (byte)Math.Clamp(MathF.Round((x[i] - min) / d), 0, 15);
        WriteQ4_1(d, min, q, dst);
    }

    public static void WriteQ4_1(float d, float m, ReadOnlySpan<byte> q, Span<byte> dst)
    {
        WriteHalf(dst, d);
        WriteHalf(dst[2..], m);
        PackNibbles(q, dst.Slice(4, 16));
    }

    /// <summary>Encodes rows of floats (length a multiple of 32 for block types, 256 for k-quants) into type t.</summary>
    public static byte[] Encode(GgmlType t, ReadOnlySpan<float> values)
    {
        var dst = new byte[ByteLength(t, values.Length)];
        switch (t)
        {
            case GgmlType.F32: System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).CopyTo(dst); break;
            case GgmlType.F16: for (int i = 0; i < values.Length; i++) WriteHalf(dst.AsSpan(2 * i), values[i]); break;
            case var k when GgufKQuants.IsKQuant(k): GgufKQuants.Encode(k, values, dst); break;
            case GgmlType.Q5_0 or GgmlType.Q5_1:
                for (int b = 0; b < values.Length / 32; b++)
                {
                    if (t == GgmlType.Q5_0) GgufKQuants.EncodeQ5_0(values.Slice(b * 32, 32), dst.AsSpan(b * 22, 22));
                    else GgufKQuants.EncodeQ5_1(values.Slice(b * 32, 32), dst.AsSpan(b * 24, 24));
                }
                break;
            default:
                int bb = BlockBytes(t);
                for (int b = 0; b < values.Length / 32; b++)
                {
                    var x = values.Slice(b * 32, 32);
                    var o = dst.AsSpan(b * bb, bb);
                    if (t == GgmlType.Q8_0) EncodeQ8_0(x, o); else if (t == GgmlType.Q4_0) EncodeQ4_0(x, o); else EncodeQ4_1(x, o);
                }
                break;
        }
        return dst;
    }

    /// <summary>Decodes type t back to floats (the inverse the spec defines; used by tests and the reader's checks).</summary>
    public static float[] Decode(GgmlType t, ReadOnlySpan<byte> data, long count)
    {
        var y = new float[count];
        if (t == GgmlType.F32) { System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(data).Slice(0, (int)count).CopyTo(y); return y; }
        if (t == GgmlType.F16) { for (int i = 0; i < count; i++) y[i] = ReadHalf(data[(2 * i)..]); return y; }
        if (GgufKQuants.IsKQuant(t)) { GgufKQuants.Decode(t, data, y); return y; }
        int bb = BlockBytes(t);
        if (t is GgmlType.Q5_0 or GgmlType.Q5_1)
        {
            for (int b = 0; b < count / 32; b++) GgufKQuants.DecodeQ5(t, data.Slice(b * bb, bb), y.AsSpan(b * 32, 32));
            return y;
        }
        for (int b = 0; b < count / 32; b++)
        {
            var s = data.Slice(b * bb, bb);
            float d = ReadHalf(s);
            for (int i = 0; i < 32; i++)
            {
                int q4 = t == GgmlType.Q8_0 ? 0 : (i < 16 ? s[(t == GgmlType.Q4_1 ? 4 : 2) + i] & 15 : s[(t == GgmlType.Q4_1 ? 4 : 2) + i - 16] >> 4);
                y[b * 32 + i] = t switch
                {
                    GgmlType.Q8_0 => d * (sbyte)s[2 + i],
                    GgmlType.Q4_0 => d * (q4 - 8),
                    _ => d * q4 + ReadHalf(s[2..]),
                };
            }
        }
        return y;
    }

    private static void PackNibbles(ReadOnlySpan<byte> q, Span<byte> dst)
    {
        for (int j = 0; j < 16; j++) dst[j] = (byte)((q[j] & 15) | (q[j + 16] & 15) << 4);
    }

    public static void WriteHalf(Span<byte> dst, float v) =>
        System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)v);

    public static float ReadHalf(ReadOnlySpan<byte> src) => (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(src);
}
