// Writes safetensors files atomically (temp file in the same folder, flush, rename) with an optional
// __metadata__ block. Tensors are laid out contiguously in insertion order (the format forbids holes in the
// data buffer); the JSON header is space-padded to a multiple of 8 so the buffer starts aligned.
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Matq.Formats.Safetensors;

public sealed class SafetensorsWriter
{
    // Data is either held (byte[]) or produced at write time by Chunks (lets callers stream large tensors).
    private sealed record Entry(string Name, SafetensorsDtype Dtype, long[] Shape, long ByteLength,
        byte[]? Data, Func<IEnumerable<ReadOnlyMemory<byte>>>? Chunks);

    private readonly List<Entry> _tensors = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);
    public long DataBytes => _tensors.Sum(t => t.ByteLength);
    public int Count => _tensors.Count;

    public SafetensorsWriter Add(string name, SafetensorsDtype dtype, long[] shape, byte[] data)
    {
        long bytes = CheckNew(name, dtype, shape);
        if (bytes != data.Length)
            throw new ArgumentException($"tensor '{name}': {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] needs {bytes} bytes, got {data.Length}");
        _tensors.Add(new Entry(name, dtype, (long[])shape.Clone(), bytes, data, null));
        _names.Add(name);
        return this;
    }

    /// <summary>
    /// Adds a tensor whose bytes are produced while writing, chunk by chunk; the chunks must add up to exactly
    /// the shape's byte count. If the producer throws, the write fails and the previous file stays intact.
    /// </summary>
    public SafetensorsWriter AddStreamed(string name, SafetensorsDtype dtype, long[] shape, Func<IEnumerable<ReadOnlyMemory<byte>>> chunks)
    {
        long bytes = CheckNew(name, dtype, shape);
        _tensors.Add(new Entry(name, dtype, (long[])shape.Clone(), bytes, null, chunks));
        _names.Add(name);
        return this;
    }

    public SafetensorsWriter AddFloat32(string name, long[] shape, ReadOnlySpan<float> values) =>
        Add(name, SafetensorsDtype.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    public SafetensorsWriter AddBf16(string name, long[] shape, ReadOnlySpan<float> values) =>
        Add(name, SafetensorsDtype.BF16, shape, SafetensorsDtypes.Float32ToBf16(values));

    /// <summary>Narrows to IEEE half (round to nearest even; magnitudes above 65504 become ±Inf).</summary>
    public SafetensorsWriter AddFloat16(string name, long[] shape, ReadOnlySpan<float> values)
    {
        var data = new byte[values.Length * 2];
        var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(data.AsSpan());
        for (int i = 0; i < values.Length; i++) dst[i] = (Half)values[i];
        return Add(name, SafetensorsDtype.F16, shape, data);
    }

    private long CheckNew(string name, SafetensorsDtype dtype, long[] shape)
    {
        if (name == "__metadata__" || _names.Contains(name))
            throw new ArgumentException($"tensor name '{name}' is reserved or already added");
        long bytes = SafetensorsDtypes.SizeOf(dtype);
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"tensor '{name}': negative dimension in shape [{string.Join(", ", shape)}]");
            bytes = checked(bytes * d);
        }
        return bytes;
    }

    /// <summary>
    /// Writes to <paramref name="path"/> via a temp file + rename; on failure the old file is untouched and the
    /// temp file is removed. File-system failures (read-only folder, disk full) become one-line MatqExceptions.
    /// </summary>
    public void Write(string path) => Matq.Formats.IO.AtomicFile.Write(path, WriteTo);

    public void WriteTo(Stream stream)
    {
        var header = BuildHeader();
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach (var t in _tensors)
        {
            if (t.Data is not null) { stream.Write(t.Data); continue; }
            long written = 0;
            foreach (var chunk in t.Chunks!())
            {
                written += chunk.Length;
                if (written > t.ByteLength) break;
                stream.Write(chunk.Span);
            }
            if (written != t.ByteLength)
                throw new InvalidOperationException($"tensor '{t.Name}': its data producer gave {(written > t.ByteLength ? "more than" : "only")} {Math.Min(written, t.ByteLength)} of the {t.ByteLength} bytes its shape needs");
        }
    }

    private byte[] BuildHeader()
    {
        using var ms = new MemoryStream();
        // relaxed escaping keeps names and metadata readable (no \u002B for '+'); quotes and controls are still escaped
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (Metadata.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long pos = 0;
            foreach (var t in _tensors)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafetensorsDtypes.ToName(t.Dtype));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(pos);
                w.WriteNumberValue(pos + t.ByteLength);
                w.WriteEndArray();
                w.WriteEndObject();
                pos += t.ByteLength;
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
