// What `matq inspect` shows, independent of the file format: files, tensors, per-dtype totals and metadata.
// Plain records; rendering is the CLI's job.
using Matq.Formats.Artifact;

namespace Matq.Formats.Inspection;

public enum ModelFormatKind
{
    /// <summary>One .safetensors file without matq metadata.</summary>
    Safetensors,
    /// <summary>An HF checkpoint folder: model.safetensors, or shards + model.safetensors.index.json.</summary>
    HfCheckpoint,
    /// <summary>A .matq artifact (a safetensors file whose metadata has the "matq" key).</summary>
    MatqArtifact,
    /// <summary>Recognised by its magic but not inspected yet.</summary>
    Gguf,
}

public sealed record InspectedFile(string Path, long Bytes);

/// <summary>One stored tensor. Dtype is the format's own name (F32, BF16, U8, ...; GGUF would add Q4_K etc.).</summary>
public sealed record InspectedTensor(string Name, string Dtype, long[] Shape, long Bytes, string File)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

public sealed record DtypeTotal(string Dtype, int Count, long Elements, long Bytes);

/// <param name="Path">What was inspected, as given.</param>
/// <param name="TotalBytes">Sum of the sizes of <paramref name="Files"/> (headers and index included).</param>
/// <param name="Dtypes">Per-dtype totals, largest byte count first.</param>
/// <param name="Metadata">Key/value pairs in display order: for .matq the parsed fields (algorithm, master_bits, ...),
/// else each file's safetensors __metadata__ (and the index metadata for sharded checkpoints).</param>
/// <param name="Matq">The parsed, validated .matq metadata; null for other kinds.</param>
public sealed record ModelInspection(
    ModelFormatKind Kind,
    string Path,
    IReadOnlyList<InspectedFile> Files,
    long TotalBytes,
    IReadOnlyList<InspectedTensor> Tensors,
    IReadOnlyList<DtypeTotal> Dtypes,
    IReadOnlyList<KeyValuePair<string, string>> Metadata,
    MatqMetadata? Matq)
{
    public long TensorBytes => Tensors.Sum(t => t.Bytes);
    public long TotalElements => Tensors.Sum(t => t.Elements);
    public string? MetadataValue(string key) => Metadata.FirstOrDefault(kv => kv.Key == key).Value;
}
