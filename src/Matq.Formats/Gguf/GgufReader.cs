// Contract: reads and validates a GGUF (v2/v3) header: magic, version, metadata KVs of every value type, tensor infos
// (ggml order ne[0] innermost), alignment (general.alignment, a u32 power of two up to 1 MiB, default 32) and the data
// start; tensor data on request. Every size and offset is checked arithmetic: a count that does not fit the bytes left,
// a dimension < 1, an element count or byte length that overflows, a tensor past the end of the file, a duplicate key
// or tensor name is one MatqException naming the file (names from the file quoted with SafeText).
using System.Text;

namespace Matq.Formats.Gguf;

public sealed record GgufTensorInfo(string Name, long[] Ne, uint TypeId, long Offset)
{
    public GgmlType? Type => Enum.IsDefined(typeof(GgmlType), TypeId) ? (GgmlType)TypeId : null;
    public string TypeName => Type?.ToString() ?? $"ggml_type_{TypeId}";
    public long Count => Ne.Aggregate(1L, (a, b) => checked(a * b));
    /// <summary>Bytes for types matq knows; −1 otherwise.</summary>
    public long ByteLength => Type is { } t ? GgufBlocks.ByteLength(t, Count) : -1;
    /// <summary>Shape in row-major (PyTorch) order: ne reversed.</summary>
    public long[] Shape => Ne.Reverse().ToArray();
}

public sealed class GgufFile
{
    public const int DefaultAlignment = 32;
    /// <summary>Largest general.alignment accepted (llama.cpp needs a power of two; real files use 32).</summary>
    public const int MaxAlignment = 1 << 20;
    private const int MaxArrayDepth = 4;

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
            ulong nTensors = r.ReadUInt64(), nKv = r.ReadUInt64();
            if (nTensors > 1 << 24 || nKv > 1 << 24) throw new MatqException($"{path}: GGUF header claims {nTensors} tensors and {nKv} keys; the file is corrupt");
            var md = new List<KeyValuePair<string, object>>();
            var keys = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nKv; i++)
            {
                var key = ReadString(r, path, "metadata key");
                if (!keys.Add(key)) throw new MatqException($"{path}: GGUF metadata key {SafeText.Quote(key)} appears twice; the file is corrupt");
                md.Add(new(key, ReadValue(r, path, key, (GgufValueType)r.ReadUInt32(), 0)));
            }
            var tensors = new List<GgufTensorInfo>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nTensors; i++)
            {
                var name = ReadString(r, path, "tensor name");
                if (!names.Add(name)) throw new MatqException($"{path}: GGUF tensor {SafeText.Quote(name)} appears twice; the file is corrupt");
                uint nd = r.ReadUInt32();
                if (nd is 0 or > 4) throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has {nd} dimensions (1..4 allowed); the file is corrupt");
                var ne = new long[nd];
                for (int d = 0; d < nd; d++)
                {
                    ulong v = r.ReadUInt64();
                    if (v is 0 or > long.MaxValue)
                        throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has dimension ne[{d}] = {v} (each must be 1..2^63-1); the file is corrupt");
                    ne[d] = (long)v;
                }
                uint type = r.ReadUInt32();
                ulong offset = r.ReadUInt64();
                if (offset > long.MaxValue) throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has data offset {offset}, past any file; the file is corrupt");
                tensors.Add(new GgufTensorInfo(name, ne, type, (long)offset));
            }
            int align = ReadAlignment(path, md);
            long data = checked((fs.Position + align - 1) / align * align);
            foreach (var t in tensors) CheckTensor(path, t, align, data, fs.Length);
            return new GgufFile(path, version, md, tensors, align, data);
        }
        catch (EndOfStreamException) { throw new MatqException($"{path}: GGUF header is truncated"); }
        catch (OverflowException) { throw new MatqException($"{path}: GGUF header holds an out-of-range size; the file is corrupt"); }
    }

    // general.alignment: absent = 32; else a u32 power of two (llama.cpp refuses others), at most MaxAlignment.
    private static int ReadAlignment(string path, List<KeyValuePair<string, object>> md)
    {
        int i = md.FindIndex(kv => kv.Key == "general.alignment");
        if (i < 0) return DefaultAlignment;
        if (md[i].Value is not uint a)
            throw new MatqException($"{path}: general.alignment must be a u32, found {md[i].Value.GetType().Name}; the file is corrupt");
        if (a == 0 || (a & (a - 1)) != 0 || a > MaxAlignment)
            throw new MatqException($"{path}: general.alignment {a} is not a power of two in 1..{MaxAlignment} (llama.cpp writes 32); the file is corrupt");
        return (int)a;
    }

    private static void CheckTensor(string path, GgufTensorInfo t, int align, long data, long fileLength)
    {
        var what = $"{path}: tensor {SafeText.Quote(t.Name)} ({t.TypeName} [{string.Join(", ", t.Ne)}])";
        long count = 1;
        foreach (var d in t.Ne)
        {
            if (count > long.MaxValue / d) throw new MatqException($"{what} has more elements than fit in 64 bits; the file is corrupt");
            count *= d;
        }
        if (t.Offset % align != 0) throw new MatqException($"{what} offset {t.Offset} is not a multiple of the alignment {align}; the file is corrupt");
        if (t.Type is not { } type) return; // a type matq does not know: listed, never read
        if (GgufBlocks.IsBlockType(type) && t.Ne[0] % GgufBlocks.BlockValuesOf(type) != 0)
            throw new MatqException($"{what}: {type} rows need a multiple of {GgufBlocks.BlockValuesOf(type)} values, ne[0] is {t.Ne[0]}; the file is corrupt");
        long bytes = count / GgufBlocks.BlockValuesOf(type);
        int unit = GgufBlocks.IsBlockType(type) ? GgufBlocks.BlockBytes(type) : type == GgmlType.F32 ? 4 : 2;
        if (bytes > long.MaxValue / unit) throw new MatqException($"{what} needs more bytes than fit in 64 bits; the file is corrupt");
        bytes *= unit;
        if (t.Offset > fileLength - data || bytes > fileLength - data - t.Offset)
            throw new MatqException($"{what} runs past the end of the file (data at {data} + offset {t.Offset} + {bytes} bytes > {fileLength}); the file is truncated or corrupt");
    }

    public byte[] ReadTensorBytes(GgufTensorInfo t)
    {
        if (t.ByteLength < 0) throw new MatqException($"{Path}: tensor {SafeText.Quote(t.Name)} has {t.TypeName}, which matq cannot read");
        if (t.ByteLength > Array.MaxLength) throw new MatqException($"{Path}: tensor {SafeText.Quote(t.Name)} holds {t.ByteLength} bytes, more than one array can");
        var b = new byte[t.ByteLength];
        using var h = File.OpenHandle(Path);
        int read = 0;
        while (read < b.Length)
        {
            int n = RandomAccess.Read(h, b.AsSpan(read), DataOffset + t.Offset + read);
            if (n == 0) throw new MatqException($"{Path}: tensor {SafeText.Quote(t.Name)} ends past the end of the file; the file is truncated");
            read += n;
        }
        return b;
    }

    private static long Remaining(BinaryReader r) => r.BaseStream.Length - r.BaseStream.Position;

    private static string ReadString(BinaryReader r, string path, string what)
    {
        ulong n = r.ReadUInt64();
        if (n > (ulong)Remaining(r)) throw new MatqException($"{path}: GGUF {what} length {n} runs past the end of the file; the file is truncated or corrupt");
        return Encoding.UTF8.GetString(r.ReadBytes((int)n));
    }

    private static object ReadValue(BinaryReader r, string path, string key, GgufValueType t, int depth) => t switch
    {
        GgufValueType.UInt8 => r.ReadByte(), GgufValueType.Int8 => r.ReadSByte(),
        GgufValueType.UInt16 => r.ReadUInt16(), GgufValueType.Int16 => r.ReadInt16(),
        GgufValueType.UInt32 => r.ReadUInt32(), GgufValueType.Int32 => r.ReadInt32(),
        GgufValueType.Float32 => r.ReadSingle(), GgufValueType.Bool => r.ReadByte() != 0,
        GgufValueType.String => ReadString(r, path, $"string value of {SafeText.Quote(key)}"),
        GgufValueType.UInt64 => r.ReadUInt64(), GgufValueType.Int64 => r.ReadInt64(), GgufValueType.Float64 => r.ReadDouble(),
        GgufValueType.Array when depth < MaxArrayDepth => ReadArray(r, path, key, depth),
        GgufValueType.Array => throw new MatqException($"{path}: GGUF metadata {SafeText.Quote(key)} nests arrays deeper than {MaxArrayDepth}; the file is corrupt"),
        _ => throw new MatqException($"{path}: GGUF metadata {SafeText.Quote(key)} has unknown value type {(uint)t}; the file is corrupt"),
    };

    // The smallest encoding of one element, so a count can be checked against the bytes left before allocating.
    private static int MinBytes(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.Array => 12,
        _ => 8,
    };

    private static object[] ReadArray(BinaryReader r, string path, string key, int depth)
    {
        var et = (GgufValueType)r.ReadUInt32();
        ulong n = r.ReadUInt64();
        if (n > (ulong)(Remaining(r) / MinBytes(et)))
            throw new MatqException($"{path}: GGUF metadata {SafeText.Quote(key)} claims {n} array items, more than the file holds; the file is truncated or corrupt");
        var a = new object[n];
        for (ulong i = 0; i < n; i++) a[i] = ReadValue(r, path, key, et, depth + 1);
        return a;
    }

    /// <summary>A value as short text for listings (long arrays summarised).</summary>
    public static string Describe(object v) => v switch
    {
        object[] a when a.Length > 8 => $"[{string.Join(", ", a.Take(5).Select(Describe))}, ... ({a.Length} items)]",
        object[] a => $"[{string.Join(", ", a.Select(Describe))}]",
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        string s => SafeText.Escape(s, 120),
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };
}
