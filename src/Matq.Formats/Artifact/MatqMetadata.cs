// The .matq metadata: one JSON document stored as the string value of the safetensors __metadata__ key "matq".
// Records validate every field in their constructors (MatqException naming the field); Parse/ToJson convert.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Formats.Artifact;

/// <summary>Where the tokenizer lives: a kind ("hf-tokenizer-json", "gpt2-bpe", ...) and files relative to the artifact's folder.</summary>
public sealed record MatqTokenizerRef
{
    public string Kind { get; }
    public IReadOnlyList<string> Files { get; }

    public MatqTokenizerRef(string kind, IReadOnlyList<string> files)
    {
        if (string.IsNullOrWhiteSpace(kind))
            throw new MatqException("matq metadata field 'tokenizer.kind' is empty; name the tokenizer kind, e.g. hf-tokenizer-json");
        foreach (var f in files)
        {
            // control characters (NUL included) are no file name a tokenizer has; Path APIs would throw on NUL
            if (string.IsNullOrWhiteSpace(f) || f.Any(char.IsControl) || System.IO.Path.IsPathRooted(f) || f.Replace('\\', '/').Split('/').Contains(".."))
                throw new MatqException($"matq metadata field 'tokenizer.files' entry {SafeText.Quote(f)} must be a relative path inside the artifact's folder");
        }
        Kind = kind;
        Files = files.ToArray();
    }
}

/// <summary>
/// One quantized linear weight W as listed in the metadata: logical shape [OutFeatures, InFeatures], group
/// size (-1 = per output channel: one group spans the whole row), whether W.perm is stored, and the suffixes
/// of its optional side tensors (stored as W.&lt;suffix&gt;).
/// </summary>
public sealed record MatqQuantizedEntry
{
    /// <summary>Suffixes the format itself uses; side tensors must pick others.</summary>
    public static readonly IReadOnlyList<string> ReservedSuffixes = ["qcodes", "scales", "zeros", "perm"];

    public string Name { get; }
    public int OutFeatures { get; }
    public int InFeatures { get; }
    /// <summary>-1 = per-channel; otherwise the width g of a group of input columns (the last group may be narrower).</summary>
    public int GroupSize { get; }
    public bool HasPerm { get; }
    public IReadOnlyList<string> SideSuffixes { get; }

    /// <summary>Columns per group: InFeatures when per-channel.</summary>
    public int GroupWidth => GroupSize == -1 ? InFeatures : GroupSize;
    /// <summary>ceil(InFeatures / GroupWidth): the second dimension of W.scales and W.zeros.</summary>
    public int GroupCount => (int)(((long)InFeatures + GroupWidth - 1) / GroupWidth);

    public MatqQuantizedEntry(string name, int outFeatures, int inFeatures, int groupSize, bool hasPerm = false, IReadOnlyList<string>? sideSuffixes = null)
    {
        if (string.IsNullOrWhiteSpace(name) || name == "__metadata__")
            throw new MatqException($"quantized tensor name {SafeText.Quote(name)} is empty or reserved; use the HF weight name, e.g. model.layers.0.mlp.down_proj.weight");
        if (outFeatures < 1 || inFeatures < 1)
            throw new MatqException($"quantized tensor {SafeText.Quote(name)}: shape [{outFeatures}, {inFeatures}] must have both dimensions >= 1");
        if (groupSize != -1 && groupSize < 1)
            throw new MatqException($"quantized tensor {SafeText.Quote(name)}: group_size {groupSize} must be -1 (per-channel) or a positive number of input columns");
        var sides = (sideSuffixes ?? []).ToArray();
        foreach (var s in sides)
        {
            if (!SuffixRegex.IsMatch(s) || ReservedSuffixes.Contains(s))
                throw new MatqException($"quantized tensor {SafeText.Quote(name)}: side tensor suffix {SafeText.Quote(s)} must be lowercase [a-z0-9_] and not one of {string.Join(", ", ReservedSuffixes)}");
        }
        if (sides.Distinct().Count() != sides.Length)
            throw new MatqException($"quantized tensor {SafeText.Quote(name)}: side tensor suffixes repeat ({string.Join(", ", sides)})");
        Name = name; OutFeatures = outFeatures; InFeatures = inFeatures; GroupSize = groupSize; HasPerm = hasPerm; SideSuffixes = sides;
    }

    public string CodesName => Name + ".qcodes";
    public string ScalesName => Name + ".scales";
    public string ZerosName => Name + ".zeros";
    public string PermName => Name + ".perm";
    public string SideName(string suffix) => Name + "." + suffix;

    private static readonly Regex SuffixRegex = new("^[a-z0-9_]+$", RegexOptions.CultureInvariant);
}

/// <summary>The parsed, validated "matq" metadata document of an artifact.</summary>
public sealed record MatqMetadata
{
    public const string Key = "matq";
    public const int CurrentFormatVersion = 1;

    public int FormatVersion { get; }
    /// <summary>Producing algorithm, e.g. rtn, gptq, athena, omniquant, qat, matquant.</summary>
    public string Algorithm { get; }
    /// <summary>The algorithm's configuration, a free JSON object.</summary>
    public JsonElement AlgorithmConfig { get; }
    /// <summary>c: bits of the stored master codes (codes lie in 0..2^c-1).</summary>
    public int MasterBits { get; }
    /// <summary>Default group size of the model: -1 = per-channel, else columns per group. Each tensor also records its own.</summary>
    public int GroupSize { get; }
    /// <summary>True when the quantizer was symmetric (zeros then sit at the grid midpoint); informational.</summary>
    public bool Symmetric { get; }
    /// <summary>Bit-widths r the codes were optimised for (MatQuant: e.g. [8, 4, 2]); each in 1..MasterBits.</summary>
    public IReadOnlyList<int> TrainedBits { get; }
    /// <summary>The HF config.json as a JSON object (empty object when the model has none).</summary>
    public JsonElement ModelConfig { get; }
    public MatqTokenizerRef? Tokenizer { get; }
    public IReadOnlyList<MatqQuantizedEntry> Quantized { get; }
    public string CreatedBy { get; }
    public JsonElement? Extra { get; }

    public MatqMetadata(string algorithm, int masterBits, int groupSize, bool symmetric, IReadOnlyList<int> trainedBits,
        IReadOnlyList<MatqQuantizedEntry> quantized, JsonElement? algorithmConfig = null, JsonElement? modelConfig = null,
        MatqTokenizerRef? tokenizer = null, string createdBy = "matq", JsonElement? extra = null, int formatVersion = CurrentFormatVersion)
    {
        CheckFormatVersion(formatVersion);
        if (string.IsNullOrWhiteSpace(algorithm))
            throw new MatqException("matq metadata field 'algorithm' is empty; name the algorithm, e.g. rtn, gptq, matquant");
        if (masterBits is < 1 or > 8)
            throw new MatqException($"matq metadata field 'master_bits' is {masterBits}; it must be in 1..8");
        if (groupSize != -1 && groupSize < 1)
            throw new MatqException($"matq metadata field 'group_size' is {groupSize}; it must be -1 (per-channel) or a positive number of input columns");
        if (trainedBits.Count == 0)
            throw new MatqException("matq metadata field 'trained_bits' is empty; list the bit-widths the codes serve, e.g. [8, 4, 2]");
        foreach (var r in trainedBits)
        {
            if (r < 1 || r > masterBits)
                throw new MatqException($"matq metadata field 'trained_bits' holds {r}; each must be in 1..master_bits ({masterBits})");
        }
        if (trainedBits.Distinct().Count() != trainedBits.Count)
            throw new MatqException($"matq metadata field 'trained_bits' repeats a value ({string.Join(", ", trainedBits)})");
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var q in quantized)
        {
            if (!names.Add(q.Name))
                throw new MatqException($"matq metadata field 'quantized' lists {SafeText.Quote(q.Name)} twice");
        }
        if (string.IsNullOrWhiteSpace(createdBy))
            throw new MatqException("matq metadata field 'created_by' is empty; name the producing tool and version");
        FormatVersion = formatVersion;
        Algorithm = algorithm;
        AlgorithmConfig = CheckObject(algorithmConfig, "algorithm_config") ?? EmptyObject;
        MasterBits = masterBits;
        GroupSize = groupSize;
        Symmetric = symmetric;
        TrainedBits = trainedBits.ToArray();
        ModelConfig = CheckObject(modelConfig, "model_config") ?? EmptyObject;
        Tokenizer = tokenizer;
        Quantized = quantized.ToArray();
        CreatedBy = createdBy;
        Extra = CheckObject(extra, "extra");
    }

    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();

    private static JsonElement? CheckObject(JsonElement? e, string field)
    {
        if (e is null || e.Value.ValueKind is JsonValueKind.Undefined) return null;
        if (e.Value.ValueKind != JsonValueKind.Object)
            throw new MatqException($"matq metadata field '{field}' must be a JSON object, found {e.Value.ValueKind}");
        return e.Value.Clone();
    }

    private static void CheckFormatVersion(int v)
    {
        if (v > CurrentFormatVersion)
            throw new MatqException($"was written by a newer matq (format {v}); upgrade matq (this version reads format {CurrentFormatVersion})");
        if (v < 1)
            throw new MatqException($"matq metadata field 'format_version' is {v}; it must be >= 1");
    }

    /// <summary>Parses a JSON object given as text (e.g. config.json) into an element for the metadata.</summary>
    public static JsonElement ParseObject(string json, string field)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return CheckObject(doc.RootElement, field)!.Value;
        }
        catch (JsonException e)
        {
            throw new MatqException($"matq metadata field '{field}' is not valid JSON ({SafeText.Escape(e.Message.Split('\n')[0])})");
        }
    }

    /// <summary>Parses the "matq" metadata document; format_version is checked first so newer files get the upgrade message.</summary>
    public static MatqMetadata Parse(string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new MatqException($"'matq' metadata is not valid JSON ({SafeText.Escape(e.Message.Split('\n')[0])}); the artifact is corrupt"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new MatqException($"'matq' metadata must be a JSON object, found {root.ValueKind}");
            CheckFormatVersion(Int(root, "format_version"));
            var quantized = new List<MatqQuantizedEntry>();
            foreach (var q in Array(root, "quantized"))
            {
                if (q.ValueKind != JsonValueKind.Object)
                    throw new MatqException("matq metadata field 'quantized' must hold objects {name, shape, group_size, perm, side}");
                var name = Str(q, "name", "quantized[].name");
                var shape = Array(q, "shape", $"quantized {SafeText.Quote(name)}.shape").Select(d => IntValue(d, $"quantized {SafeText.Quote(name)}.shape")).ToArray();
                if (shape.Length != 2)
                    throw new MatqException($"matq metadata: quantized {SafeText.Quote(name)} shape must be [out, in], found {shape.Length} dimensions");
                bool perm = q.TryGetProperty("perm", out var p) ? Bool(p, $"quantized {SafeText.Quote(name)}.perm") : false;
                var side = q.TryGetProperty("side", out var s)
                    ? Array(q, "side", $"quantized {SafeText.Quote(name)}.side").Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()!
                        : throw new MatqException($"matq metadata: quantized {SafeText.Quote(name)}.side must list suffix strings")).ToArray()
                    : [];
                quantized.Add(new MatqQuantizedEntry(name, shape[0], shape[1], Int(q, "group_size", $"quantized {SafeText.Quote(name)}.group_size"), perm, side));
            }
            MatqTokenizerRef? tokenizer = null;
            if (root.TryGetProperty("tokenizer", out var t) && t.ValueKind != JsonValueKind.Null)
            {
                if (t.ValueKind != JsonValueKind.Object)
                    throw new MatqException("matq metadata field 'tokenizer' must be an object {kind, files} or null");
                tokenizer = new MatqTokenizerRef(Str(t, "kind", "tokenizer.kind"),
                    Array(t, "files", "tokenizer.files").Select(f => f.ValueKind == JsonValueKind.String ? f.GetString()!
                        : throw new MatqException("matq metadata field 'tokenizer.files' must list path strings")).ToArray());
            }
            return new MatqMetadata(
                Str(root, "algorithm"), Int(root, "master_bits"), Int(root, "group_size"),
                Bool(Prop(root, "symmetric"), "symmetric"),
                Array(root, "trained_bits").Select(b => IntValue(b, "trained_bits")).ToArray(),
                quantized,
                OptionalObject(root, "algorithm_config"), OptionalObject(root, "model_config"), tokenizer,
                Str(root, "created_by"), OptionalObject(root, "extra"), Int(root, "format_version"));
        }
    }

    private static JsonElement Prop(JsonElement o, string name, string? field = null) =>
        o.TryGetProperty(name, out var v) ? v : throw new MatqException($"matq metadata field '{field ?? name}' is missing");

    private static int Int(JsonElement o, string name, string? field = null) => IntValue(Prop(o, name, field), field ?? name);

    private static int IntValue(JsonElement v, string field) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i
            : throw new MatqException($"matq metadata field '{field}' must be an integer, found {SafeText.Escape(v.GetRawText(), 60)}");

    private static bool Bool(JsonElement v, string field) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw new MatqException($"matq metadata field '{field}' must be true or false, found {SafeText.Escape(v.GetRawText(), 60)}"),
    };

    private static string Str(JsonElement o, string name, string? field = null)
    {
        var v = Prop(o, name, field);
        return v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new MatqException($"matq metadata field '{field ?? name}' must be a string, found {v.ValueKind}");
    }

    private static JsonElement.ArrayEnumerator Array(JsonElement o, string name, string? field = null)
    {
        var v = Prop(o, name, field);
        return v.ValueKind == JsonValueKind.Array ? v.EnumerateArray()
            : throw new MatqException($"matq metadata field '{field ?? name}' must be an array, found {v.ValueKind}");
    }

    private static JsonElement? OptionalObject(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>The document as stored in the file: compact JSON, fields in a fixed order.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("format_version", FormatVersion);
            w.WriteString("algorithm", Algorithm);
            w.WritePropertyName("algorithm_config"); AlgorithmConfig.WriteTo(w);
            w.WriteNumber("master_bits", MasterBits);
            w.WriteNumber("group_size", GroupSize);
            w.WriteBoolean("symmetric", Symmetric);
            w.WriteStartArray("trained_bits");
            foreach (var r in TrainedBits) w.WriteNumberValue(r);
            w.WriteEndArray();
            w.WritePropertyName("model_config"); ModelConfig.WriteTo(w);
            if (Tokenizer is null) w.WriteNull("tokenizer");
            else
            {
                w.WriteStartObject("tokenizer");
                w.WriteString("kind", Tokenizer.Kind);
                w.WriteStartArray("files");
                foreach (var f in Tokenizer.Files) w.WriteStringValue(f);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteStartArray("quantized");
            foreach (var q in Quantized)
            {
                w.WriteStartObject();
                w.WriteString("name", q.Name);
                w.WriteStartArray("shape"); w.WriteNumberValue(q.OutFeatures); w.WriteNumberValue(q.InFeatures); w.WriteEndArray();
                w.WriteNumber("group_size", q.GroupSize);
                w.WriteBoolean("perm", q.HasPerm);
                w.WriteStartArray("side");
                foreach (var s in q.SideSuffixes) w.WriteStringValue(s);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("created_by", CreatedBy);
            if (Extra is { } extra) { w.WritePropertyName("extra"); extra.WriteTo(w); }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }
}
