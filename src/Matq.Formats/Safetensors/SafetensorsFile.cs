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
            Span<byte> head = stackalloc byte[16];
            head = head[..RandomAccess.Read(handle, head, 0)];
            if (Matq.Formats.IO.ForeignFormats.Refusal(path, head) is { } foreign) throw new MatqException(foreign);
            ulong headerLen = BitConverter.ToUInt64(head[..8]);
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
        // Checked up front: invalid UTF-8 inside JSON strings would otherwise surface later as InvalidOperationException.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new MatqException($"{path}: safetensors header is not valid UTF-8; the file is corrupt or not safetensors");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new MatqException($"{path}: safetensors header is not valid JSON ({FirstLine(e.Message)}); the file is corrupt or not safetensors"); }
        using (doc)
        {
            try
            {
                return ParseHeaderObject(path, doc.RootElement, dataLength, dataStart);
            }
            catch (InvalidOperationException e)
            {
                // e.g. a "\uD800" escape that cannot be decoded to a string
                throw new MatqException($"{path}: safetensors header holds an undecodable string ({FirstLine(e.Message)}); the file is corrupt");
            }
        }
    }

    private static (Dictionary<string, SafetensorsTensorInfo>, Dictionary<string, string>) ParseHeaderObject(
        string path, JsonElement root, long dataLength, long dataStart)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new MatqException($"{path}: safetensors header must be a JSON object, found {root.ValueKind}");
        var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        foreach (var prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (sawMetadata)
                    throw new MatqException($"{path}: safetensors header has two __metadata__ blocks; the file is corrupt");
                sawMetadata = true;
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new MatqException($"{path}: __metadata__ must be an object of strings, found {prop.Value.ValueKind}");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw new MatqException($"{path}: __metadata__ field {SafeText.Quote(m.Name)} must be a string, found {m.Value.ValueKind}");
                    if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                        throw new MatqException($"{path}: __metadata__ field {SafeText.Quote(m.Name)} appears twice; the file is corrupt");
                }
                continue;
            }
            var info = ParseTensor(path, prop.Name, prop.Value, dataLength, dataStart);
            if (!tensors.TryAdd(prop.Name, info))
                throw new MatqException($"{path}: tensor {SafeText.Quote(prop.Name)} appears twice in the header; the file is corrupt");
        }
        CheckContiguous(path, tensors.Values, dataStart, dataStart + dataLength);
        return (tensors, metadata);
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement e, long dataLength, long dataStart)
    {
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new MatqException($"{path}: tensor {SafeText.Quote(name)} needs dtype, shape and data_offsets [begin, end] in the header");
        if (!SafetensorsDtypes.TryParse(dt.GetString()!, out var dtype))
            throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has unsupported dtype {SafeText.Quote(dt.GetString())} (supported: BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64)");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has an invalid shape entry {SafeText.Escape(d.GetRawText(), 40)}");
            shape[i++] = v;
        }
        long[] o = new long[2];
        i = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new MatqException($"{path}: tensor {SafeText.Quote(name)} has an invalid data offset {SafeText.Escape(d.GetRawText(), 40)}");
            o[i++] = v;
        }
        if (o[0] > o[1])
            throw new MatqException($"{path}: tensor {SafeText.Quote(name)} data offsets [{o[0]}, {o[1]}] are reversed (begin > end); the file is corrupt");
        if (o[1] > dataLength)
            throw new MatqException($"{path}: tensor {SafeText.Quote(name)} data offsets [{o[0]}, {o[1]}] lie outside the {dataLength}-byte data buffer; the file is truncated or corrupt");
        // Byte count from the shape, refusing products that overflow (a [4, 2^62] shape must not wrap to 0 bytes).
        long expected = SafetensorsDtypes.SizeOf(dtype);
        bool tooBig = false;
        if (Array.IndexOf(shape, 0L) >= 0) expected = 0;
        else
        {
            foreach (var d in shape)
            {
                if (expected > long.MaxValue / d) { tooBig = true; break; }
                expected *= d;
            }
        }
        if (tooBig || expected != o[1] - o[0])
            throw new MatqException($"{path}: tensor {SafeText.Quote(name)} is {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] but its data holds {o[1] - o[0]} bytes");
        return new SafetensorsTensorInfo(name, dtype, shape, dataStart + o[0], dataStart + o[1]);
    }

    /// <summary>
    /// The format (and the Python reference reader) requires the tensors to tile the data buffer exactly:
    /// sorted by offset, each begins where the previous ends, the first at 0 and the last at the buffer end.
    /// </summary>
    private static void CheckContiguous(string path, IEnumerable<SafetensorsTensorInfo> tensors, long dataStart, long fileEnd)
    {
        SafetensorsTensorInfo? prev = null;
        long pos = dataStart;
        foreach (var t in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (t.Begin < pos)
                throw new MatqException($"{path}: tensors {SafeText.Quote(prev!.Name)} and {SafeText.Quote(t.Name)} overlap in the data buffer; the file is corrupt");
            if (t.Begin > pos)
                throw new MatqException($"{path}: the data buffer has a {t.Begin - pos}-byte hole before tensor {SafeText.Quote(t.Name)}; the file is corrupt");
            pos = t.End;
            prev = t;
        }
        if (pos != fileEnd)
            throw new MatqException(prev is null
                ? $"{path}: the file has {fileEnd - pos} data bytes but no tensors; the file is corrupt"
                : $"{path}: the file has {fileEnd - pos} bytes after the last tensor {SafeText.Quote(prev.Name)}; the file is corrupt");
    }

    private static string FirstLine(string s) => SafeText.Escape(s.Split('\n')[0]);

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public SafetensorsTensorInfo Get(string name) =>
        _tensors.TryGetValue(name, out var t) ? t
            : throw new MatqException($"{Path}: tensor {SafeText.Quote(name)} is missing");

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
            throw new ArgumentException($"destination holds {destination.Length} bytes, tensor {SafeText.Quote(t.Name)} has {t.ByteLength}");
        int read = 0;
        while (read < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[read..], t.Begin + read);
            if (n == 0) throw new MatqException($"{Path}: tensor {SafeText.Quote(t.Name)} ends past the end of the file; the file is truncated");
            read += n;
        }
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of tensor <paramref name="t"/> from byte
    /// <paramref name="offset"/> of its data (positioned reads; never past the tensor's end).</summary>
    public void ReadRange(SafetensorsTensorInfo t, long offset, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (offset < 0 || offset + destination.Length > t.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes {offset}..{offset + destination.Length} lie outside tensor {SafeText.Quote(t.Name)} ({t.ByteLength} bytes)");
        int read = 0;
        while (read < destination.Length)
        {
            int n = RandomAccess.Read(_handle, destination[read..], t.Begin + offset + read);
            if (n == 0) throw new MatqException($"{Path}: tensor {SafeText.Quote(t.Name)} ends past the end of the file; the file is truncated");
            read += n;
        }
    }

    /// <summary>Reads a float tensor (F32/F16/BF16/F64) widened to fp32.</summary>
    public float[] ReadFloat32(string name)
    {
        var t = Get(name);
        if (!SafetensorsDtypes.IsFloat(t.Dtype))
            throw new MatqException($"{Path}: tensor {SafeText.Quote(name)} has dtype {SafetensorsDtypes.ToName(t.Dtype)}, expected a float type (F32, F16, BF16, F64)");
        return SafetensorsDtypes.ToFloat32(t.Dtype, ReadBytes(name), name);
    }

    public void Dispose() => _handle.Dispose();
}
