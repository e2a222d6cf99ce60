// Reads a .matq artifact: a safetensors file whose __metadata__ "matq" key holds the MatqMetadata JSON. Open()
// validates everything (layout, dtypes, shapes, code range, finite values) before returning; one MatqException
// naming the file and the tensor or field otherwise. Everything is loaded into memory.
//
// Layout, per quantized linear weight W (HF name, e.g. model.layers.0.mlp.down_proj.weight), g = group width:
//   W.qcodes  U8  [out, in]            master codes 0..2^c-1 (c = master_bits), stored column order
//   W.scales  F32 [out, ceil(in/g)]    > 0
//   W.zeros   F32 [out, ceil(in/g)]    zero points (F32: some algorithms make them fractional)
//   W.perm    I32 [in]                 optional act-order permutation: stored column k = original column perm[k]
//   W.<side>  any                      optional side tensors listed in metadata (e.g. W.overflow)
// Every other tensor keeps its HF name and is F32, F16 or BF16. Flat metadata keys "matq.*" repeat a few
// fields for grep; when present they must agree with the JSON.
using Matq.Formats.Safetensors;

namespace Matq.Formats.Artifact;

public sealed class MatqArtifact
{
    private readonly Dictionary<string, MatqQuantizedTensor> _quantized;
    private readonly Dictionary<string, MatqFloatTensor> _floats;

    public string Path { get; }
    public MatqMetadata Metadata { get; }
    /// <summary>Quantized weights in metadata order.</summary>
    public IReadOnlyList<MatqQuantizedTensor> Quantized { get; }
    /// <summary>Float tensors in file order.</summary>
    public IReadOnlyList<MatqFloatTensor> Floats { get; }

    private MatqArtifact(string path, MatqMetadata metadata, List<MatqQuantizedTensor> quantized, List<MatqFloatTensor> floats)
    {
        Path = path; Metadata = metadata; Quantized = quantized; Floats = floats;
        _quantized = quantized.ToDictionary(q => q.Name, StringComparer.Ordinal);
        _floats = floats.ToDictionary(f => f.Name, StringComparer.Ordinal);
    }

    public bool IsQuantized(string name) => _quantized.ContainsKey(name);
    public bool TryGetQuantized(string name, out MatqQuantizedTensor tensor) => _quantized.TryGetValue(name, out tensor!);
    public bool TryGetFloat(string name, out MatqFloatTensor tensor) => _floats.TryGetValue(name, out tensor!);

    public MatqQuantizedTensor GetQuantized(string name) => _quantized.TryGetValue(name, out var t) ? t
        : throw new MatqException($"{Path}: {SafeText.Quote(name)} is not a quantized tensor of this artifact");

    public MatqFloatTensor GetFloat(string name) => _floats.TryGetValue(name, out var t) ? t
        : throw new MatqException($"{Path}: {SafeText.Quote(name)} is not a float tensor of this artifact");

    /// <summary>True when the safetensors file carries the "matq" metadata key (how a .matq is recognised).</summary>
    public static bool IsArtifact(SafetensorsFile file) => file.Metadata.ContainsKey(MatqMetadata.Key);

    /// <summary>The flat "matq.*" metadata keys written beside the JSON document.</summary>
    public static IReadOnlyList<(string Key, string Value)> FlatKeys(MatqMetadata md) =>
    [
        ("matq.format_version", md.FormatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("matq.algorithm", md.Algorithm),
        ("matq.master_bits", md.MasterBits.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("matq.group_size", md.GroupSize.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("matq.trained_bits", string.Join(",", md.TrainedBits)),
    ];

    /// <summary>Opens and fully validates an artifact, loading all tensors.</summary>
    public static MatqArtifact Open(string path)
    {
        using var f = SafetensorsFile.Open(path);
        var md = ReadMetadata(f);
        var quantized = new List<MatqQuantizedTensor>(md.Quantized.Count);
        foreach (var e in md.Quantized)
        {
            var sides = e.SideSuffixes.Select(s =>
            {
                var info = f.Get(e.SideName(s));
                return Prefixed(path, () => new MatqSideTensor(s, info.Dtype, info.Shape, f.ReadBytes(info.Name)));
            }).ToArray();
            var codes = f.ReadBytes(e.CodesName);
            var scales = f.ReadFloat32(e.ScalesName);
            var zeros = f.ReadFloat32(e.ZerosName);
            int[]? perm = e.HasPerm ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(f.ReadBytes(e.PermName)).ToArray() : null;
            var t = Prefixed(path, () => new MatqQuantizedTensor(e.Name, e.OutFeatures, e.InFeatures, e.GroupSize, codes, scales, zeros, perm, sides));
            Prefixed(path, () => { t.ValidateCodes(md.MasterBits); return 0; });
            quantized.Add(t);
        }
        var floats = new List<MatqFloatTensor>();
        foreach (var info in FloatTensors(f, md))
            floats.Add(Prefixed(path, () => new MatqFloatTensor(info.Name, info.Shape, info.Dtype, f.ReadFloat32(info.Name))));
        return new MatqArtifact(path, md, quantized, floats);
    }

    /// <summary>Reads and validates only the header (metadata and tensor layout), without reading tensor data.</summary>
    public static MatqMetadata ReadMetadata(string path)
    {
        using var f = SafetensorsFile.Open(path);
        return ReadMetadata(f);
    }

    /// <summary>Header-level validation of an opened file: metadata parses and every listed tensor has the right dtype and shape.</summary>
    public static MatqMetadata ReadMetadata(SafetensorsFile f)
    {
        var path = f.Path;
        if (!f.Metadata.TryGetValue(MatqMetadata.Key, out var json))
            throw new MatqException($"{path}: not a .matq artifact (its safetensors metadata has no 'matq' key); give a file written by matq");
        var md = Prefixed(path, () => MatqMetadata.Parse(json));
        foreach (var (k, v) in FlatKeys(md))
        {
            if (f.Metadata.TryGetValue(k, out var stored) && stored != v)
                throw new MatqException($"{path}: metadata key '{k}' = {SafeText.Quote(stored)} disagrees with the matq document ({SafeText.Quote(v)}); the artifact was edited or is corrupt");
        }
        foreach (var e in md.Quantized)
        {
            Expect(f, e, e.CodesName, SafetensorsDtype.U8, [e.OutFeatures, e.InFeatures], "[out, in]");
            Expect(f, e, e.ScalesName, SafetensorsDtype.F32, [e.OutFeatures, e.GroupCount], $"[out, ceil(in/g)] for group size {e.GroupSize}");
            Expect(f, e, e.ZerosName, SafetensorsDtype.F32, [e.OutFeatures, e.GroupCount], $"[out, ceil(in/g)] for group size {e.GroupSize}");
            if (e.HasPerm) Expect(f, e, e.PermName, SafetensorsDtype.I32, [e.InFeatures], "[in]");
            foreach (var s in e.SideSuffixes)
            {
                if (!f.Contains(e.SideName(s)))
                    throw new MatqException($"{path}: quantized tensor {SafeText.Quote(e.Name)} lists side tensor {SafeText.Quote(e.SideName(s))} but the file does not hold it");
            }
        }
        _ = FloatTensors(f, md).Count();
        return md;
    }

    private static void Expect(SafetensorsFile f, MatqQuantizedEntry e, string name, SafetensorsDtype dtype, long[] shape, string rule)
    {
        if (!f.Contains(name))
            throw new MatqException($"{f.Path}: quantized tensor {SafeText.Quote(e.Name)} has no {SafeText.Quote(name)} tensor; the artifact is incomplete");
        var t = f.Get(name);
        if (t.Dtype != dtype)
            throw new MatqException($"{f.Path}: tensor {SafeText.Quote(name)} has dtype {SafetensorsDtypes.ToName(t.Dtype)}, a .matq stores it as {SafetensorsDtypes.ToName(dtype)}");
        if (!t.Shape.SequenceEqual(shape))
            throw new MatqException($"{f.Path}: tensor {SafeText.Quote(name)} has shape {t.ShapeText}, expected [{string.Join(", ", shape)}] = {rule} from the matq metadata");
    }

    /// <summary>The tensors not owned by a quantized weight; each must be F32/F16/BF16 and not look like an unlisted quantized part.</summary>
    internal static IEnumerable<SafetensorsTensorInfo> FloatTensors(SafetensorsFile f, MatqMetadata md)
    {
        var owned = new HashSet<string>(StringComparer.Ordinal);
        var quantNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in md.Quantized)
        {
            quantNames.Add(e.Name);
            owned.UnionWith([e.CodesName, e.ScalesName, e.ZerosName]);
            if (e.HasPerm) owned.Add(e.PermName);
            owned.UnionWith(e.SideSuffixes.Select(e.SideName));
        }
        foreach (var t in f.Tensors)
        {
            if (owned.Contains(t.Name)) continue;
            if (quantNames.Contains(t.Name))
                throw new MatqException($"{f.Path}: tensor {SafeText.Quote(t.Name)} is listed as quantized but is also stored as a plain tensor");
            if (t.Name.EndsWith(".qcodes", StringComparison.Ordinal))
                throw new MatqException($"{f.Path}: tensor {SafeText.Quote(t.Name)} holds codes but {SafeText.Quote(t.Name[..^7])} is not in the matq 'quantized' list; the metadata does not match the file");
            int dot = t.Name.LastIndexOf('.');
            if (dot > 0 && quantNames.Contains(t.Name[..dot]))
                throw new MatqException($"{f.Path}: tensor {SafeText.Quote(t.Name)} is not declared for quantized tensor {SafeText.Quote(t.Name[..dot])} in the matq metadata (perm or side)");
            if (t.Dtype is not (SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16))
                throw new MatqException($"{f.Path}: tensor {SafeText.Quote(t.Name)} has dtype {SafetensorsDtypes.ToName(t.Dtype)}; a .matq holds quantized weights listed in its metadata and F32/F16/BF16 tensors only");
            yield return t;
        }
    }

    internal static T Prefixed<T>(string path, Func<T> body)
    {
        try { return body(); }
        catch (MatqException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new MatqException($"{path}: {e.Message}", e);
        }
    }
}
