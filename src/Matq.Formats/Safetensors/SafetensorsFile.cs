// Reads one safetensors file: 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
// Open() validates the whole header before any tensor is read; every failure is one MatqException line.
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Matq.Formats.Safetensors;

/// <summary>One tensor entry of a safetensors header. Begin/End are absolute file offsets.</summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDtype Dtype, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused as corrupt (the reference implementation uses the same bound).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;

    public string Path { get; }
    public long FileLength { get; }
    public long DataStart { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensors in the order of their data offsets.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    private SafetensorsFile(string path, SafeFileHandle handle, long length, long dataStart,
        Dictionary<string, SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path; _handle = handle; FileLength = length; DataStart = dataStart;
        _tensors = tensors; Metadata = metadata;
        Tensors = tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw new MatqException($"{path}: file not found (give the path of a .safetensors file)");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8)
                throw new MatqException($"{path}: truncated safetensors file ({length} bytes; the 8-byte header length is missing)");
            Span<byte> lenBytes = stackalloc byte[8];
            RandomAccess.Read(handle, lenBytes, 0);
            ulong headerLen = BitConverter.ToUInt64(lenBytes);
            if (headerLen > (ulong)MaxHeaderBytes || (long)headerLen > length - 8)
                throw new MatqException($"{path}: corrupt safetensors header length {headerLen} (file has {length} bytes); the file is truncated or not safetensors");
            var header = new byte[headerLen];
            RandomAccess.Read(handle, header, 8);
            long dataStart = 8 + (long)headerLen;
            var (tensors, metadata) = ParseHeader(path, header, length - dataStart, dataStart);
            return new SafetensorsFile(path, handle, length, dataStart, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeader(
        string path, byte[] header, long dataLength, long dataStart)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new MatqException($"{path}: safetensors header is not valid JSON ({e.Message.Split('\n')[0]})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new MatqException($"{path}: safetensors header must be a JSON object");
            var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new MatqException($"{path}: __metadata__ must be an object of strings");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new MatqException($"{path}: __metadata__ field '{m.Name}' must be a string");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                tensors[prop.Name] = ParseTensor(path, prop.Name, prop.Value, dataLength, dataStart);
            }
            CheckNoOverlap(path, tensors.Values);
            return (tensors, metadata);
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength, long dataStart)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new MatqException($"{path}: tensor '{name}' needs dtype, shape and data_offsets [begin, end] in the header");
        if (!SafetensorsDtypes.TryParse(dt.GetString()!, out var dtype))
            throw new MatqException($"{path}: tensor '{name}' has unsupported dtype '{dt.GetString()}'");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new MatqException($"{path}: tensor '{name}' has an invalid shape entry {d.GetRawText()}");
            shape[i++] = v;
        }
        long[] o = new long[2];
        i = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new MatqException($"{path}: tensor '{name}' has an invalid data offset {d.GetRawText()}");
            o[i++] = v;
        }
        if (o[0] > o[1] || o[1] > dataLength)
            throw new MatqException($"{path}: tensor '{name}' data offsets [{o[0]}, {o[1]}] lie outside the {dataLength}-byte data buffer; the file is truncated or corrupt");
        long numel = 1;
        foreach (var d in shape)
        {
            numel *= d;
            if (numel > dataLength) break;
        }
        if (numel * SafetensorsDtypes.SizeOf(dtype) != o[1] - o[0])
            throw new MatqException($"{path}: tensor '{name}' is {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] but its data holds {o[1] - o[0]} bytes");
        return new SafetensorsTensorInfo(name, dtype, shape, dataStart + o[0], dataStart + o[1]);
    }

    private static void CheckNoOverlap(string path, IEnumerable<SafetensorsTensorInfo> tensors)
    {
        SafetensorsTensorInfo? prev = null;
        foreach (var t in tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin))
        {
            if (prev is not null && t.Begin < prev.End)
                throw new MatqException($"{path}: tensors '{prev.Name}' and '{t.Name}' overlap in the data buffer; the file is corrupt");
            prev = t;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public SafetensorsTensorInfo Get(string name) =>
        _tensors.TryGetValue(name, out var t) ? t
            : throw new MatqException($"{Path}: tensor '{name}' is missing");

    public byte[] ReadBytes(string name)
    {
        var t = Get(name);
        var buffer = new byte[t.ByteLength];
        ReadInto(t, buffer);
        return buffer;
    }

    public void ReadInto(SafetensorsTensorInfo t, Span<byte> destination)
    {
        if (destination.Length != t.ByteLength)
            throw new ArgumentException($"destination holds {destination.Length} bytes, tensor '{t.Name}' has {t.ByteLength}");
        int read = 0;
        while (read < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[read..], t.Begin + read);
            if (n == 0) throw new MatqException($"{Path}: tensor '{t.Name}' ends past the end of the file; the file is truncated");
            read += n;
        }
    }

    /// <summary>Reads a float tensor (F32/F16/BF16/F64) widened to fp32.</summary>
    public float[] ReadFloat32(string name)
    {
        var t = Get(name);
        return SafetensorsDtypes.ToFloat32(t.Dtype, ReadBytes(name), name);
    }

    public void Dispose() => _handle.Dispose();
}
