// Element types of the safetensors format (names as they appear in the JSON header) and their sizes.
namespace Matq.Formats.Safetensors;

public enum SafetensorsDtype
{
    Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
}

public static class SafetensorsDtypes
{
    public static int SizeOf(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool or SafetensorsDtype.U8 or SafetensorsDtype.I8 => 1,
        SafetensorsDtype.I16 or SafetensorsDtype.U16 or SafetensorsDtype.F16 or SafetensorsDtype.BF16 => 2,
        SafetensorsDtype.I32 or SafetensorsDtype.U32 or SafetensorsDtype.F32 => 4,
        SafetensorsDtype.F64 or SafetensorsDtype.I64 or SafetensorsDtype.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    public static string ToName(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool => "BOOL",
        _ => dtype.ToString().ToUpperInvariant(),
    };

    public static bool TryParse(string name, out SafetensorsDtype dtype)
    {
        switch (name)
        {
            case "BOOL": dtype = SafetensorsDtype.Bool; return true;
            case "U8": dtype = SafetensorsDtype.U8; return true;
            case "I8": dtype = SafetensorsDtype.I8; return true;
            case "I16": dtype = SafetensorsDtype.I16; return true;
            case "U16": dtype = SafetensorsDtype.U16; return true;
            case "F16": dtype = SafetensorsDtype.F16; return true;
            case "BF16": dtype = SafetensorsDtype.BF16; return true;
            case "I32": dtype = SafetensorsDtype.I32; return true;
            case "U32": dtype = SafetensorsDtype.U32; return true;
            case "F32": dtype = SafetensorsDtype.F32; return true;
            case "F64": dtype = SafetensorsDtype.F64; return true;
            case "I64": dtype = SafetensorsDtype.I64; return true;
            case "U64": dtype = SafetensorsDtype.U64; return true;
            default: dtype = default; return false;
        }
    }

    public static bool IsFloat(SafetensorsDtype dtype) =>
        dtype is SafetensorsDtype.F16 or SafetensorsDtype.BF16 or SafetensorsDtype.F32 or SafetensorsDtype.F64;

    /// <summary>Widens any float dtype to fp32 (bf16 is the top half of an fp32; f16 via Half).</summary>
    public static float[] ToFloat32(SafetensorsDtype dtype, ReadOnlySpan<byte> raw, string tensorName)
    {
        var result = new float[raw.Length / SizeOf(dtype)];
        ToFloat32(dtype, raw, result, tensorName);
        return result;
    }

    /// <summary>Widens <paramref name="raw"/> into the first raw.Length / size(dtype) elements of <paramref name="result"/>
    /// (a reused buffer: no allocation); <paramref name="tensorName"/> names the tensor when the dtype is not a float.</summary>
    public static void ToFloat32(SafetensorsDtype dtype, ReadOnlySpan<byte> raw, Span<float> result, string tensorName = "tensor")
    {
        int n = raw.Length / SizeOf(dtype);
        if (result.Length < n) throw new ArgumentException($"the destination holds {result.Length} values, {n} are needed", nameof(result));
        switch (dtype)
        {
            case SafetensorsDtype.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).CopyTo(result);
                break;
            case SafetensorsDtype.F16:
                var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(raw);
                for (int i = 0; i < n; i++) result[i] = (float)halves[i];
                break;
            case SafetensorsDtype.BF16:
                var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(raw);
                for (int i = 0; i < n; i++) result[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
                break;
            case SafetensorsDtype.F64:
                var doubles = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(raw);
                for (int i = 0; i < n; i++) result[i] = (float)doubles[i];
                break;
            default:
                throw new MatqException($"tensor {SafeText.Quote(tensorName)} has dtype {ToName(dtype)}, expected a float type (F32, F16, BF16, F64)");
        }
    }

    /// <summary>Narrows fp32 to bf16 with round-to-nearest-even (NaN stays NaN).</summary>
    public static byte[] Float32ToBf16(ReadOnlySpan<float> values)
    {
        var result = new byte[values.Length * 2];
        var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(result.AsSpan());
        for (int i = 0; i < values.Length; i++)
        {
            uint u = BitConverter.SingleToUInt32Bits(values[i]);
            if (float.IsNaN(values[i])) { dst[i] = (ushort)((u >> 16) | 0x40); continue; }
            uint rounding = 0x7FFF + ((u >> 16) & 1);
            dst[i] = (ushort)((u + rounding) >> 16);
        }
        return result;
    }
}
