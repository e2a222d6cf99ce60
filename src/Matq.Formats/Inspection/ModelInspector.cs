// Builds a ModelInspection from a path: an HF checkpoint folder, a .safetensors file, or a .matq artifact
// (recognised by its "matq" metadata key, not its extension). Reads headers only, never tensor data.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Inspection;

public static class ModelInspector
{
    /// <summary>Throws the one-line error `inspect` gives for a path that is neither a file nor a folder.</summary>
    public static void RequireExists(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path))
            throw new MatqException($"{path}: no such file or folder (give a .safetensors file, a .matq artifact or an HF checkpoint folder)");
    }

    public static ModelInspection Inspect(string path)
    {
        if (Directory.Exists(path))
        {
            using var ck = SafetensorsCheckpoint.Open(path);
            var files = ck.Files.Select(f => f.Path).ToList();
            if (ck.IndexPath is not null) files.Add(ck.IndexPath);
            var meta = new List<KeyValuePair<string, string>>();
            foreach (var (k, v) in ck.IndexMetadata) meta.Add(new("index." + k, v));
            meta.AddRange(MergedFileMetadata(ck.Files));
            return Build(ModelFormatKind.HfCheckpoint, path, files, ck.Files, meta, null);
        }
        RequireExists(path);
        if (IsGguf(path))
            return InspectGguf(path);

        using var f = SafetensorsFile.Open(path);
        if (!MatqArtifact.IsArtifact(f))
            return Build(ModelFormatKind.Safetensors, path, [f.Path], [f], f.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList(), null);
        var md = MatqArtifact.ReadMetadata(f);
        return Build(ModelFormatKind.MatqArtifact, path, [f.Path], [f], MatqFields(md), md);
    }

    /// <summary>GGUF: header only (Gguf/GgufReader); shapes shown row-major (ggml ne reversed).</summary>
    private static ModelInspection InspectGguf(string path)
    {
        var g = Gguf.GgufFile.Open(path);
        var files = new List<InspectedFile> { new(path, new FileInfo(path).Length) };
        var tensors = g.Tensors.Select(t => new InspectedTensor(t.Name, t.TypeName, t.Shape, Math.Max(0, t.ByteLength), path)).ToList();
        var dtypes = tensors.GroupBy(t => t.Dtype)
            .Select(x => new DtypeTotal(x.Key, x.Count(), x.Sum(t => t.Elements), x.Sum(t => t.Bytes)))
            .OrderByDescending(d => d.Bytes).ThenBy(d => d.Dtype, StringComparer.Ordinal).ToList();
        var meta = new List<KeyValuePair<string, string>> { new("gguf.version", g.Version.ToString(System.Globalization.CultureInfo.InvariantCulture)) };
        meta.AddRange(g.Metadata.Select(kv => new KeyValuePair<string, string>(kv.Key, Gguf.GgufFile.Describe(kv.Value))));
        return new ModelInspection(ModelFormatKind.Gguf, path, files, files.Sum(f => f.Bytes), tensors, dtypes, meta, null);
    }

    private static bool IsGguf(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        using var h = File.OpenHandle(path);
        return RandomAccess.Read(h, magic, 0) == 4 && magic.SequenceEqual("GGUF"u8);
    }

    private static ModelInspection Build(ModelFormatKind kind, string path, List<string> filePaths, IReadOnlyList<SafetensorsFile> files,
        List<KeyValuePair<string, string>> metadata, MatqMetadata? md)
    {
        var inspectedFiles = filePaths.Select(p => new InspectedFile(p, new FileInfo(p).Length)).ToList();
        var tensors = files.SelectMany(f => f.Tensors.Select(t =>
            new InspectedTensor(t.Name, SafetensorsDtypes.ToName(t.Dtype), t.Shape, t.ByteLength, f.Path))).ToList();
        var dtypes = tensors.GroupBy(t => t.Dtype)
            .Select(g => new DtypeTotal(g.Key, g.Count(), g.Sum(t => t.Elements), g.Sum(t => t.Bytes)))
            .OrderByDescending(d => d.Bytes).ThenBy(d => d.Dtype, StringComparer.Ordinal).ToList();
        return new ModelInspection(kind, path, inspectedFiles, inspectedFiles.Sum(f => f.Bytes), tensors, dtypes, metadata, md);
    }

    /// <summary>Shards usually repeat the same metadata; identical pairs appear once, differing values are prefixed by file name.</summary>
    private static IEnumerable<KeyValuePair<string, string>> MergedFileMetadata(IReadOnlyList<SafetensorsFile> files)
    {
        var keys = files.SelectMany(f => f.Metadata.Keys).Distinct().Order(StringComparer.Ordinal);
        foreach (var k in keys)
        {
            var values = files.Where(f => f.Metadata.ContainsKey(k)).Select(f => (f.Path, Value: f.Metadata[k])).ToList();
            if (values.Select(v => v.Value).Distinct().Count() == 1) yield return new(k, values[0].Value);
            else foreach (var (p, v) in values) yield return new(System.IO.Path.GetFileName(p) + ":" + k, v);
        }
    }

    private static List<KeyValuePair<string, string>> MatqFields(MatqMetadata md)
    {
        var list = new List<KeyValuePair<string, string>>
        {
            new("format_version", md.FormatVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("algorithm", md.Algorithm),
            new("algorithm_config", md.AlgorithmConfig.GetRawText()),
            new("master_bits", md.MasterBits.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("group_size", md.GroupSize == -1 ? "-1 (per-channel)" : md.GroupSize.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("symmetric", md.Symmetric ? "true" : "false"),
            new("trained_bits", string.Join(",", md.TrainedBits)),
            new("quantized_tensors", md.Quantized.Count.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("embedding", TableText(md, "model.embed_tokens.weight")),
            new("tokenizer", md.Tokenizer is null ? "none" : $"{md.Tokenizer.Kind}: {string.Join(", ", md.Tokenizer.Files)}"),
            new("created_by", md.CreatedBy),
        };
        if (md.ModelConfig.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String)
            list.Add(new("model_type", mt.GetString()!));
        if (md.Extra is { } extra) list.Add(new("extra", extra.GetRawText()));
        return list;
    }

    // "quantized: 8-bit codes [128256, 4096], group 128" for a table stored as master codes, else "float (see tensors)"
    private static string TableText(MatqMetadata md, string name)
    {
        var q = md.Quantized.FirstOrDefault(e => e.Name == name);
        return q is null ? "float (see tensors)"
            : $"quantized: {md.MasterBits}-bit codes [{q.OutFeatures}, {q.InFeatures}], {(q.GroupSize == -1 ? "per-channel" : $"group {q.GroupSize}")}";
    }
}
