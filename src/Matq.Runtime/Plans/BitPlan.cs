// Contract: the one per-layer bit plan for serving a .matq (`--plan FILE` of serve, generate, eval, logits; written by
// `matq plan`), bound to its model by a hash of the artifact's quantized-layer list. Loaders resolve it against the
// open artifact (PerLayerBits): a plan made for another model, or for other master bits, is refused there with one line.
//
// File (UTF-8 JSON, written atomically), as `matq plan` writes it:
//   { "format": "matq-plan", "version": 1, "model_hash": "<sha256 hex of 'name:out×in:group\n' over quantized tensors>",
//     "master_bits": 8, "default_bits": 4, "strategy": "pyramid", "layers": { "model.layers.0.mlp.down_proj": 2, ... } }
// or written by hand, bound to no model (names and bits are still checked against the artifact):
//   { "default": 4, "layers": { "model.layers.0.mlp.down_proj": 8 } }
// Layer keys are HF module names (".weight" is accepted too); layers not listed are served at the default bits.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Formats.Artifact;
using Matq.Runtime.Loading;

namespace Matq.Runtime.Plans;

public sealed record BitPlan
{
    public const string Format = "matq-plan";

    /// <summary>The model the plan was made for (<see cref="ModelHashOf"/>); null for a hand-written plan.</summary>
    public string? ModelHash { get; }
    /// <summary>The master bits of that model; null for a hand-written plan.</summary>
    public int? MasterBits { get; }
    /// <summary>Bits of the layers not listed; null = take --bits or the master bits.</summary>
    public int? DefaultBits { get; }
    public string Strategy { get; }
    /// <summary>Module name (no ".weight") → bits.</summary>
    public IReadOnlyDictionary<string, int> Layers { get; }
    /// <summary>The file the plan was read from (named in errors); null for a plan made in code.</summary>
    public string? Origin { get; init; }

    /// <summary>A plan for one artifact: its <paramref name="modelHash"/> and master bits, the bits of every layer.</summary>
    public BitPlan(string modelHash, int masterBits, int defaultBits, IReadOnlyDictionary<string, int> layers, string strategy = "custom")
        : this(modelHash, masterBits, (int?)defaultBits, layers, strategy)
    {
    }

    /// <summary>A hand-written plan bound to no model: layers (module or weight names) → bits 1..8, an optional default.</summary>
    public BitPlan(IReadOnlyDictionary<string, int> layers, int? defaultBits = null)
        : this(null, null, defaultBits, layers, "custom")
    {
    }

    private BitPlan(string? modelHash, int? masterBits, int? defaultBits, IReadOnlyDictionary<string, int> layers, string strategy)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (modelHash is not null && string.IsNullOrWhiteSpace(modelHash))
            throw new MatqException("plan model_hash is empty: a plan must name the model it was made for");
        if (masterBits is < 1 or > 8) throw new MatqException($"plan master_bits = {masterBits} is out of range: allowed 1..8");
        int top = masterBits ?? 8;
        if (defaultBits is int d) CheckBits(d, top, "plan default_bits");
        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (key, bits) in layers)
        {
            var name = key.EndsWith(".weight", StringComparison.Ordinal) ? key[..^7] : key;
            CheckBits(bits, top, $"plan bits for '{key}'");
            if (!map.TryAdd(name, bits)) throw new MatqException($"plan names layer '{name}' twice");
        }
        ModelHash = modelHash; MasterBits = masterBits; DefaultBits = defaultBits; Layers = map; Strategy = strategy;
    }

    /// <summary>"--plan p.json" (read from a file) or "the plan", for messages.</summary>
    public string Name => Origin is null ? "the plan" : $"--plan {Origin}";

    /// <summary>Bits of <paramref name="module"/> (HF module name) under this plan (a plan without default: the master bits).</summary>
    public int BitsOf(string module) => Layers.TryGetValue(module, out var b) ? b
        : DefaultBits ?? MasterBits ?? throw new InvalidOperationException($"{Name} has no default bits; '{module}' is not listed");

    /// <summary>
    /// The serving bits given <paramref name="bits"/> from the command line: --bits wins when the plan has no default
    /// or agrees; a disagreement is refused rather than silently resolved.
    /// </summary>
    public int? ResolveBits(int? bits, string planPath)
    {
        if (bits is int b && DefaultBits is int d && b != d)
            throw new MatqException($"--bits {b} disagrees with the default {d} of --plan {planPath}: drop one or make them equal");
        return bits ?? DefaultBits;
    }

    /// <summary>The identity of an artifact's quantized layout: SHA-256 of "name:out×in:group\n" per quantized tensor, sorted by name.</summary>
    public static string ModelHashOf(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        return ModelHashOf(artifact.Metadata.Quantized);
    }

    /// <summary><see cref="ModelHashOf(MatqArtifact)"/> from the quantized entries of an artifact's metadata.</summary>
    public static string ModelHashOf(IEnumerable<MatqQuantizedEntry> quantized)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        var text = new StringBuilder();
        foreach (var q in quantized.OrderBy(q => q.Name, StringComparer.Ordinal))
            text.Append(q.Name).Append(':').Append(q.OutFeatures).Append('×').Append(q.InFeatures).Append(':').Append(q.GroupSize).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// Weight name → bits for every quantized tensor of <paramref name="artifact"/>: <paramref name="defaultBits"/> unless
    /// <paramref name="plan"/> names the layer. Refused in one line: a plan made for another model (model hash) or other
    /// master bits, a plan naming a layer that is not quantized there, bits above the master bits.
    /// </summary>
    public static Dictionary<string, int> PerLayerBits(MatqArtifact artifact, BitPlan? plan, int defaultBits)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        return PerLayerBits(artifact.Path, artifact.Metadata, plan, defaultBits);
    }

    /// <summary><see cref="PerLayerBits(MatqArtifact, BitPlan?, int)"/> from an artifact's path and metadata (header only).</summary>
    public static Dictionary<string, int> PerLayerBits(string path, MatqMetadata metadata, BitPlan? plan, int defaultBits)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        var quantized = metadata.Quantized;
        var bits = quantized.ToDictionary(q => q.Name, _ => defaultBits, StringComparer.Ordinal);
        if (plan is null) return bits;
        plan.CheckModel(path, metadata);
        foreach (var (key, value) in plan.Layers)
        {
            var name = key + ".weight";
            if (!bits.ContainsKey(name))
            {
                var example = quantized.Count > 0 ? $" (quantized layers look like '{quantized[0].Name[..^7]}')" : " (it has no quantized layers)";
                throw new MatqException($"{plan.Name} names '{key}', which is not a quantized layer of {path}{example}");
            }
            ArtifactSource.CheckBits(value, metadata.MasterBits, $"plan bits for '{key}':");
            bits[name] = value;
        }
        return bits;
    }

    /// <summary>Throws one MatqException unless this plan fits <paramref name="artifact"/> (see <see cref="PerLayerBits"/>).</summary>
    public void Validate(MatqArtifact artifact) => PerLayerBits(artifact, this, DefaultBits ?? artifact.Metadata.MasterBits);

    // A plan bound to a model serves only that model: same quantized layout (hash), same master bits.
    private void CheckModel(string path, MatqMetadata metadata)
    {
        if (ModelHash is not null && ModelHashOf(metadata.Quantized) is var actual && actual != ModelHash)
            throw new MatqException($"{Name} was made for a different model (its model_hash is {SafeText.Escape(ModelHash, 80)}, {path} has {actual}): "
                + $"make a plan for this model with `matq plan --model {path}`");
        if (MasterBits is int m && metadata.MasterBits != m)
            throw new MatqException($"{Name} is for {m} master bits but {path} stores {metadata.MasterBits}: make a plan for this model with `matq plan --model {path}`");
    }

    /// <summary>Parameter-count-weighted mean bits over the artifact's quantized layers.</summary>
    public double AverageBits(MatqArtifact artifact) =>
        artifact.Quantized.Sum(q => (double)q.OutFeatures * q.InFeatures * BitsOf(q.Name[..^7])) / artifact.Quantized.Sum(q => (double)q.OutFeatures * q.InFeatures);

    /// <summary>Bytes of the served weights: ⌈params·bits/8⌉ per layer plus the stored α and z (fp32 each) per group.</summary>
    public long WeightBytes(MatqArtifact artifact) =>
        artifact.Quantized.Sum(q => ((long)q.OutFeatures * q.InFeatures * BitsOf(q.Name[..^7]) + 7) / 8 + (long)q.OutFeatures * q.GroupCount * 8);

    /// <summary>The file form: "matq-plan" for a plan bound to a model, the hand-written form otherwise.</summary>
    public string ToJson()
    {
        var layers = new JsonObject();
        foreach (var (k, v) in Layers) layers[k] = v;
        var o = ModelHash is null
            ? new JsonObject { ["default"] = DefaultBits, ["layers"] = layers }
            : new JsonObject
            {
                ["format"] = Format, ["version"] = 1, ["model_hash"] = ModelHash, ["master_bits"] = MasterBits,
                ["default_bits"] = DefaultBits, ["strategy"] = Strategy, ["layers"] = layers,
            };
        if (ModelHash is null && DefaultBits is null) o.Remove("default");
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Parses either file form; <paramref name="origin"/> (the file) names it in errors and becomes <see cref="Origin"/>.</summary>
    public static BitPlan Parse(string json, string origin = "plan")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new MatqException($"--plan {origin} is not valid JSON ({e.Message})", e); }
        if (root is not JsonObject o)
            throw new MatqException($"--plan {origin}: expected an object like {{\"default\": 4, \"layers\": {{\"model.layers.0.mlp.down_proj\": 8}}}}");
        try
        {
            var plan = o.ContainsKey("format") ? ParseMatqPlan(o, origin) : ParseHandWritten(o, origin);
            return plan with { Origin = origin };
        }
        catch (ArgumentException e) when (e is not ArgumentNullException)   // JsonObject: a key given twice
        {
            throw new MatqException($"--plan {origin}: {SafeText.Escape(e.Message)}", e);
        }
    }

    // {"format": "matq-plan", ...} as `matq plan` writes it.
    private static BitPlan ParseMatqPlan(JsonObject o, string origin)
    {
        if (o["format"] is not JsonValue f || !f.TryGetValue(out string? format) || format != Format)
            throw new MatqException($"--plan {origin} is not a matq plan (expected \"format\": \"{Format}\")");
        try
        {
            var layers = (o["layers"] as JsonObject ?? new JsonObject()).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
            return new BitPlan((string?)o["model_hash"] ?? "", (int)o["master_bits"]!, (int)o["default_bits"]!, layers, (string?)o["strategy"] ?? "custom");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ArgumentNullException)
        {
            throw new MatqException($"--plan {origin}: a field has the wrong type or is missing ({e.Message})");
        }
    }

    // {"default": 4, "layers": {...}}, written by hand: no model hash.
    private static BitPlan ParseHandWritten(JsonObject o, string origin)
    {
        int? def = null;
        var layers = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (key, value) in o)
        {
            switch (key)
            {
                case "default":
                    def = Bits(value, origin, "default");
                    break;
                case "layers":
                    if (value is not JsonObject l)
                        throw new MatqException($"--plan {origin}: \"layers\" must be an object of layer name → bits");
                    foreach (var (name, b) in l)
                        if (!layers.TryAdd(name, Bits(b, origin, name)))
                            throw new MatqException($"--plan {origin}: layer '{name}' is given twice");
                    break;
                default:
                    throw new MatqException($"--plan {origin}: unknown key {SafeText.Quote(key)} (a plan has \"default\" and \"layers\")");
            }
        }
        return new BitPlan(layers, def);
    }

    private static int Bits(JsonNode? e, string origin, string what)
    {
        if (e is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue(out int b) || b < 1 || b > 8)
            throw new MatqException($"--plan {origin}: bits for {SafeText.Quote(what)} must be an integer in 1..8, got {e?.ToJsonString() ?? "null"}");
        return b;
    }

    public static BitPlan Load(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"--plan {path} does not exist: give the JSON file `matq plan` wrote");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Writes the plan atomically (temp file + rename).</summary>
    public void Save(string path)
    {
        Matq.Formats.IO.AtomicFile.WriteAllText(path, ToJson() + "\n");
    }

    private static void CheckBits(int bits, int master, string what)
    {
        if (bits < 1 || bits > master) throw new MatqException($"{what} = {bits} is out of range: allowed 1..{master} (the artifact's master bits)");
    }
}
