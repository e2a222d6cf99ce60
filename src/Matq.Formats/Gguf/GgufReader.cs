// Contract: reads and validates a GGUF (v2/v3) header: magic, version, metadata KVs of every value type, tensor infos
// (ggml order ne[0] innermost), alignment (general.alignment, default 32) and the data start; tensor data on request.
// Anything malformed (bad magic/version, truncated header, offsets or sizes past the end) is one MatqException.
using System.Text;

namespace Matq.Formats.Gguf;

public sealed record GgufTensorInfo(string Name, long[] Ne, uint TypeId, long Offset)
{
    public GgmlType? Type => Enum.IsDefined(typeof(GgmlType), TypeId) ? (GgmlType)TypeId : null;
    public string TypeName => Type?.ToString() ?? $"ggml_type_{TypeId}";
    public long Count => Ne.Aggregate(1L, (a, b) => a * b);
    /// <summary>Bytes for types matq knows; −1 otherwise.</summary>
    public long ByteLength => Type is { } t ? GgufBlocks.ByteLength(t, Count) : -1;
    /// <summary>Shape in row-major (PyTorch) order: ne reversed.</summary>
    public long[] Shape => Ne.Reverse().ToArray();
}

public sealed class GgufFile
{
    public string Path { get; }
    public uint Version { get; }
    public IReadOnlyList<KeyValuePair<string, object>> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    public int Alignment { get; }
    public long DataOffset { get; }

    private GgufFile(string path, uint version, List<KeyValuePair<string, object>> md, List<GgufTensorInfo> tensors, int alignment, long dataOffset)
    {
        Path = path; Version = version; Metadata = md; Tensors = tensors; Alignment = alignment; DataOffset = dataOffset;
    }

    public object? Get(string key) => Metadata.FirstOrDefault(kv => kv.Key == key).Value;

    public static bool HasMagic(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using var h = File.OpenHandle(path);
        return RandomAccess.Read(h, magic, 0) == 4 && magic.SequenceEqual("GGUF"u8);
    }

    public static GgufFile Open(string path)
    {
        using var fs = File.OpenRead(path);
        using var r = new BinaryReader(fs, Encoding.UTF8);
        try
        {
            if (r.ReadUInt32() != GgufWriter.Magic) throw new MatqException($"{path}: not a GGUF file (bad magic)");
            uint version = r.ReadUInt32();
            if (version is not (2 or 3)) throw new MatqException($"{path}: GGUF version {version} is not supported (2 and 3 are)");
            long nTensors = checked((long)r.ReadUInt64()), nKv = checked((long)r.ReadUInt64());
            if (nTensors > 1 << 24 || nKv > 1 << 24) throw new MatqException($"{path}: GGUF header claims {nTensors} tensors and {nKv} keys; the file is corrupt");
            var md = new List<KeyValuePair<string, object>>();
            for (long i = 0; i < nKv; i++)
            {
                var key = ReadString(r, fs.Length);
                md.Add(new(key, ReadValue(r, (GgufValueType)r.ReadUInt32(), fs.Length, 0)));
            }
            var tensors = new List<GgufTensorInfo>();
            for (long i = 0; i < nTensors; i++)
            {
                var name = ReadString(r, fs.Length);
                uint nd = r.ReadUInt32();
                if (nd is 0 or > 4) throw new MatqException($"{path}: tensor '{name}' has {nd} dimensions (1..4 allowed)");
                var ne = new long[nd];
                for (int d = 0; d < nd; d++) ne[d] = checked((long)r.ReadUInt64());
                tensors.Add(new GgufTensorInfo(name, ne, r.ReadUInt32(), checked((long)r.ReadUInt64())));
            }
            int align = md.FirstOrDefault(kv => kv.Key == "general.alignment").Value is uint a ? (int)a : 32;
            long data = (fs.Position + align - 1) / align * align;
            foreach (var t in tensors)
            {
                if (t.Offset % align != 0) throw new MatqException($"{path}: tensor '{t.Name}' offset {t.Offset} is not a multiple of the alignment {align}");
                if (t.ByteLength >= 0 && data + t.Offset + t.ByteLength > fs.Length)
                    throw new MatqException($"{path}: tensor '{t.Name}' ({t.TypeName} [{string.Join(", ", t.Ne)}]) runs past the end of the file");
            }
            return new GgufFile(path, version, md, tensors, align, data);
        }
        catch (EndOfStreamException) { throw new MatqException($"{path}: GGUF header is truncated"); }
        catch (OverflowException) { throw new MatqException($"{path}: GGUF header holds an out-of-range size; the file is corrupt"); }
    }

    public byte[] ReadTensorBytes(GgufTensorInfo t)
    {
        if (t.ByteLength < 0) throw new MatqException($"{Path}: tensor '{t.Name}' has {t.TypeName}, which matq cannot read");
        var b = new byte[t.ByteLength];
        using var h = File.OpenHandle(Path);
        RandomAccess.Read(h, b, DataOffset + t.Offset);
        return b;
    }

    private static string ReadString(BinaryReader r, long fileLength)
    {
        long n = checked((long)r.ReadUInt64());
        if (n > fileLength) throw new MatqException("GGUF string length runs past the end of the file");
        return Encoding.UTF8.GetString(r.ReadBytes((int)n));
    }

    private static object ReadValue(BinaryReader r, GgufValueType t, long fileLength, int depth) => t switch
    {
        GgufValueType.UInt8 => r.ReadByte(), GgufValueType.Int8 => r.ReadSByte(),
        GgufValueType.UInt16 => r.ReadUInt16(), GgufValueType.Int16 => r.ReadInt16(),
        GgufValueType.UInt32 => r.ReadUInt32(), GgufValueType.Int32 => r.ReadInt32(),
        GgufValueType.Float32 => r.ReadSingle(), GgufValueType.Bool => r.ReadByte() != 0,
        GgufValueType.String => ReadString(r, fileLength),
        GgufValueType.UInt64 => r.ReadUInt64(), GgufValueType.Int64 => r.ReadInt64(), GgufValueType.Float64 => r.ReadDouble(),
        GgufValueType.Array when depth < 4 => ReadArray(r, fileLength, depth),
        _ => throw new MatqException($"GGUF metadata value type {(uint)t} is unknown"),
    };

    private static object[] ReadArray(BinaryReader r, long fileLength, int depth)
    {
        var et = (GgufValueType)r.ReadUInt32();
        long n = checked((long)r.ReadUInt64());
        if (n > fileLength) throw new MatqException("GGUF array length runs past the end of the file");
        var a = new object[n];
        for (long i = 0; i < n; i++) a[i] = ReadValue(r, et, fileLength, depth + 1);
        return a;
    }

    /// <summary>A value as short text for listings (long arrays summarised).</summary>
    public static string Describe(object v) => v switch
    {
        object[] a when a.Length > 8 => $"[{string.Join(", ", a.Take(5).Select(Describe))}, ... ({a.Length} items)]",
        object[] a => $"[{string.Join(", ", a.Select(Describe))}]",
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        string s => s.Length > 120 ? s[..117] + "..." : s,
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };
}
