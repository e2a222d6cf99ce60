// Contract: writes a GGUF v3 file atomically (temp + rename): header "GGUF" u32 version=3, u64 tensor count, u64 KV
// count; KVs (string key, u32 value type, value); tensor infos (name, u32 n_dims, u64 ne[n_dims] innermost first,
// u32 ggml type, u64 offset from the data start); zero padding to general.alignment (32); tensor data, each padded to 32.
// Strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements. All little-endian.
using System.Text;

namespace Matq.Formats.Gguf;

public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

public sealed class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian u32
    public const uint Version = 3;
    public const int Alignment = 32;
    /// <summary>Tensors of at least this many bytes are followed by a full collection when written.</summary>
    private const int LargeTensorBytes = 64 << 20;

    private readonly List<(string Key, GgufValueType Type, object Value)> _kv = new();
    // a tensor's bytes are produced when the file is written, one tensor at a time, and dropped once written
    private readonly List<(string Name, long[] Ne, GgmlType Type, Func<byte[]> Data)> _tensors = new();

    public IReadOnlyList<string> TensorNames => _tensors.Select(t => t.Name).ToList();

    public GgufWriter Add(string key, string value) => AddKv(key, GgufValueType.String, value);
    public GgufWriter Add(string key, uint value) => AddKv(key, GgufValueType.UInt32, value);
    public GgufWriter Add(string key, int value) => AddKv(key, GgufValueType.Int32, value);
    public GgufWriter Add(string key, float value) => AddKv(key, GgufValueType.Float32, value);
    public GgufWriter Add(string key, bool value) => AddKv(key, GgufValueType.Bool, value);
    public GgufWriter Add(string key, string[] values) => AddKv(key, GgufValueType.Array, (GgufValueType.String, (object)values));
    public GgufWriter Add(string key, int[] values) => AddKv(key, GgufValueType.Array, (GgufValueType.Int32, (object)values));
    public GgufWriter Add(string key, float[] values) => AddKv(key, GgufValueType.Array, (GgufValueType.Float32, (object)values));

    private GgufWriter AddKv(string key, GgufValueType t, object v)
    {
        if (_kv.Any(k => k.Key == key)) throw new MatqException($"GGUF metadata key '{key}' was added twice");
        _kv.Add((key, t, v));
        return this;
    }

    /// <summary>Adds a tensor; <paramref name="ne"/> is ggml order (ne[0] = innermost = columns); data already encoded as type.</summary>
    public GgufWriter AddTensor(string name, long[] ne, GgmlType type, byte[] data)
    {
        long want = Length(name, ne, type);
        if (want != data.Length)
            throw new MatqException($"tensor '{name}': {type} [{string.Join(", ", ne)}] needs {want} bytes, got {data.Length}");
        return Add(name, ne, type, () => data);
    }

    /// <summary>Adds a tensor whose bytes <paramref name="produce"/> encodes when <see cref="Write"/> reaches it (one tensor
    /// in memory at a time: a real-size model's encoded tensors are never all held); its length is checked then.</summary>
    public GgufWriter AddTensor(string name, long[] ne, GgmlType type, Func<byte[]> produce)
    {
        ArgumentNullException.ThrowIfNull(produce);
        long want = Length(name, ne, type);
        return Add(name, ne, type, () =>
        {
            var data = produce();
            if (data.Length != want)
                throw new MatqException($"tensor '{name}': {type} [{string.Join(", ", ne)}] needs {want} bytes, got {data.Length}");
            return data;
        });
    }

    private GgufWriter Add(string name, long[] ne, GgmlType type, Func<byte[]> data)
    {
        if (_tensors.Any(t => t.Name == name)) throw new MatqException($"GGUF tensor '{name}' was added twice");
        _tensors.Add((name, (long[])ne.Clone(), type, data));
        return this;
    }

    private static long Length(string name, long[] ne, GgmlType type)
    {
        long count = ne.Aggregate(1L, (a, b) => a * b);
        if (GgufBlocks.IsBlockType(type) && ne[0] % GgufBlocks.BlockValuesOf(type) != 0)
            throw new MatqException($"tensor '{name}': {type} needs rows of a multiple of {GgufBlocks.BlockValuesOf(type)} values, got {ne[0]}");
        return GgufBlocks.ByteLength(type, count);
    }

    /// <summary>Adds tensor <paramref name="to"/> as a copy of the already added <paramref name="from"/> (same type and
    /// data; a produced tensor's bytes are produced once and written at both places).</summary>
    public GgufWriter CopyTensor(string from, string to)
    {
        int i = _tensors.FindIndex(x => x.Name == from);
        if (i < 0) throw new MatqException($"GGUF tensor '{from}' was not added, so it cannot be copied to '{to}'");
        var t = _tensors[i];
        var once = new Lazy<byte[]>(t.Data);
        _tensors[i] = (t.Name, t.Ne, t.Type, () => once.Value);
        return Add(to, t.Ne, t.Type, () => once.Value);
    }

    /// <summary>Writes atomically (see AtomicFile): on failure an existing file at <paramref name="path"/> is intact.</summary>
    public void Write(string path) => Matq.Formats.IO.AtomicFile.Write(path, fs =>
    {
        using var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
        WriteTo(w);
    });

    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true)) WriteTo(w);
        return ms.ToArray();
    }

    private void WriteTo(BinaryWriter w)
    {
        w.Write(Magic); w.Write(Version); w.Write((ulong)_tensors.Count); w.Write((ulong)_kv.Count);
        foreach (var (key, type, value) in _kv)
        {
            WriteString(w, key);
            w.Write((uint)type);
            WriteValue(w, type, value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Ne.Length);
            foreach (var d in t.Ne) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset += Pad(GgufBlocks.ByteLength(t.Type, t.Ne.Aggregate(1L, (a, b) => a * b)));
        }
        w.Flush();
        WriteZeros(w, Pad(w.BaseStream.Position) - w.BaseStream.Position);
        foreach (var t in _tensors)
        {
            var data = t.Data();
            w.Write(data);
            WriteZeros(w, Pad(data.Length) - data.Length);
            // a large tensor's bytes and the arrays that made them are garbage now: collect before the next one is made,
            // so the process holds about one tensor's worth, not the heap growth the collector would otherwise allow
            if (data.Length >= LargeTensorBytes) { data = null!; GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true); }
        }
    }

    private static long Pad(long n) => (n + Alignment - 1) / Alignment * Alignment;
    private static void WriteZeros(BinaryWriter w, long n) { for (long i = 0; i < n; i++) w.Write((byte)0); }

    private static void WriteString(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object v)
    {
        switch (type)
        {
            case GgufValueType.String: WriteString(w, (string)v); break;
            case GgufValueType.UInt32: w.Write((uint)v); break;
            case GgufValueType.Int32: w.Write((int)v); break;
            case GgufValueType.Float32: w.Write((float)v); break;
            case GgufValueType.Bool: w.Write((bool)v ? (byte)1 : (byte)0); break;
            case GgufValueType.Array:
                var (et, arr) = ((GgufValueType, object))v;
                w.Write((uint)et);
                var items = ((Array)arr).Cast<object>().ToArray();
                w.Write((ulong)items.Length);
                foreach (var item in items) WriteValue(w, et, item);
                break;
            default: throw new MatqException($"GGUF value type {type} is not written by matq");
        }
    }
}
