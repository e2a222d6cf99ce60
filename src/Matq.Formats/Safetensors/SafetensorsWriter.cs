// Writes safetensors files atomically (temp file in the same folder, flush, rename) with an optional
// __metadata__ block. Tensors are laid out contiguously in insertion order (the format forbids holes in the
// data buffer); the JSON header is space-padded to a multiple of 8 so the buffer starts aligned.
using System.Text;
using System.Text.Json;

namespace Matq.Formats.Safetensors;

public sealed class SafetensorsWriter
{
    private readonly List<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)> _tensors = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);
    public long DataBytes => _tensors.Sum(t => (long)t.Data.Length);
    public int Count => _tensors.Count;

    public SafetensorsWriter Add(string name, SafetensorsDtype dtype, long[] shape, byte[] data)
    {
        if (name == "__metadata__" || !_names.Add(name))
            throw new ArgumentException($"tensor name '{name}' is reserved or already added");
        long numel = shape.Aggregate(1L, (a, b) => a * b);
        if (numel * SafetensorsDtypes.SizeOf(dtype) != data.Length)
            throw new ArgumentException($"tensor '{name}': {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] needs {numel * SafetensorsDtypes.SizeOf(dtype)} bytes, got {data.Length}");
        _tensors.Add((name, dtype, (long[])shape.Clone(), data));
        return this;
    }

    public SafetensorsWriter AddFloat32(string name, long[] shape, ReadOnlySpan<float> values) =>
        Add(name, SafetensorsDtype.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    public SafetensorsWriter AddBf16(string name, long[] shape, ReadOnlySpan<float> values) =>
        Add(name, SafetensorsDtype.BF16, shape, SafetensorsDtypes.Float32ToBf16(values));

    /// <summary>Writes to <paramref name="path"/> via a temp file + rename; on failure the old file is untouched.</summary>
    public void Write(string path)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = System.IO.Path.Combine(dir, "." + System.IO.Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteTo(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    public void WriteTo(Stream stream)
    {
        var header = BuildHeader();
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach (var t in _tensors) stream.Write(t.Data);
    }

    private byte[] BuildHeader()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (Metadata.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long pos = 0;
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafetensorsDtypes.ToName(t.Dtype));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(pos);
                w.WriteNumberValue(pos + t.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                pos += t.Data.Length;
            }
            w.WriteEndObject();
        }
        // header padded with spaces to a multiple of 8 so the data buffer starts aligned
        var json = ms.ToArray();
        int padded = (json.Length + 7) & ~7;
        var header = new byte[padded];
        json.CopyTo(header, 0);
        for (int i = json.Length; i < padded; i++) header[i] = (byte)' ';
        return header;
    }
}
