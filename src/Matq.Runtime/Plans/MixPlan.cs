// Contract: a Mix'n'Match plan — per-layer bit-widths for serving ONE .matq artifact — as a small JSON file bound to
// its model by a hash of the artifact's quantized-layer list; validated against an artifact before it is served.
//
// File (UTF-8 JSON, written atomically):
//   { "format": "matq-plan", "version": 1, "model_hash": "<sha256 hex of 'name:out×in:group\n' over quantized tensors>",
//     "master_bits": 8, "default_bits": 4, "strategy": "pyramid", "layers": { "model.layers.0.mlp.down_proj": 2, ... } }
// Layer keys are HF module names (".weight" is accepted too); layers not listed are served at default_bits.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Formats.Artifact;

namespace Matq.Runtime.Plans;

public sealed record MixPlan
{
    public const string Format = "matq-plan";

    public string ModelHash { get; }
    public int MasterBits { get; }
    public int DefaultBits { get; }
    public string Strategy { get; }
    /// <summary>Module name (no ".weight") → bits.</summary>
    public IReadOnlyDictionary<string, int> Layers { get; }

    public MixPlan(string modelHash, int masterBits, int defaultBits, IReadOnlyDictionary<string, int> layers, string strategy = "custom")
    {
        if (string.IsNullOrWhiteSpace(modelHash)) throw new MatqException("plan model_hash is empty: a plan must name the model it was made for");
        if (masterBits < 1 || masterBits > 8) throw new MatqException($"plan master_bits = {masterBits} is out of range: allowed 1..8");
        CheckBits(defaultBits, masterBits, "plan default_bits");
        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (key, bits) in layers)
        {
            var name = key.EndsWith(".weight", StringComparison.Ordinal) ? key[..^7] : key;
            CheckBits(bits, masterBits, $"plan bits for '{key}'");
            if (!map.TryAdd(name, bits)) throw new MatqException($"plan names layer '{name}' twice");
        }
        ModelHash = modelHash; MasterBits = masterBits; DefaultBits = defaultBits; Layers = map; Strategy = strategy;
    }

    /// <summary>Bits of <paramref name="module"/> (HF module name) under this plan.</summary>
    public int BitsOf(string module) => Layers.TryGetValue(module, out var b) ? b : DefaultBits;

    /// <summary>The identity of an artifact's quantized layout: SHA-256 of "name:out×in:group\n" per quantized tensor, sorted by name.</summary>
    public static string ModelHashOf(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var text = new StringBuilder();
        foreach (var q in artifact.Quantized.OrderBy(q => q.Name, StringComparer.Ordinal))
            text.Append(q.Name).Append(':').Append(q.OutFeatures).Append('×').Append(q.InFeatures).Append(':').Append(q.GroupSize).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>Throws one MatqException unless this plan fits <paramref name="artifact"/>: same model hash, same master bits,
    /// every named layer quantized there.</summary>
    public void Validate(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        if (ModelHashOf(artifact) != ModelHash)
            throw new MatqException($"the plan was made for a different model (model_hash {ModelHash[..12]}…, {artifact.Path} has {ModelHashOf(artifact)[..12]}…): make a plan for this artifact with matq plan");
        if (artifact.Metadata.MasterBits != MasterBits)
            throw new MatqException($"the plan is for {MasterBits} master bits but {artifact.Path} stores {artifact.Metadata.MasterBits}");
        var known = artifact.Quantized.Select(q => q.Name[..^7]).ToHashSet(StringComparer.Ordinal);
        foreach (var name in Layers.Keys)
            if (!known.Contains(name))
                throw new MatqException($"the plan names '{name}', which is not a quantized layer of {artifact.Path} (e.g. '{known.First()}')");
    }

    /// <summary>The loader's plan (QuantizedModelLoader: weight name → bits) for every quantized layer, after <see cref="Validate"/>.</summary>
    public IReadOnlyDictionary<string, int> ToLoaderPlan(MatqArtifact artifact)
    {
        Validate(artifact);
        return artifact.Quantized.ToDictionary(q => q.Name, q => BitsOf(q.Name[..^7]), StringComparer.Ordinal);
    }

    /// <summary>Parameter-count-weighted mean bits over the artifact's quantized layers.</summary>
    public double AverageBits(MatqArtifact artifact) =>
        artifact.Quantized.Sum(q => (double)q.OutFeatures * q.InFeatures * BitsOf(q.Name[..^7])) / artifact.Quantized.Sum(q => (double)q.OutFeatures * q.InFeatures);

    /// <summary>Bytes of the served weights: ⌈params·bits/8⌉ per layer plus the stored α and z (fp32 each) per group.</summary>
    public long WeightBytes(MatqArtifact artifact) =>
        artifact.Quantized.Sum(q => ((long)q.OutFeatures * q.InFeatures * BitsOf(q.Name[..^7]) + 7) / 8 + (long)q.OutFeatures * q.GroupCount * 8);

    public string ToJson()
    {
        var layers = new JsonObject();
        foreach (var (k, v) in Layers) layers[k] = v;
        var o = new JsonObject
        {
            ["format"] = Format, ["version"] = 1, ["model_hash"] = ModelHash, ["master_bits"] = MasterBits,
            ["default_bits"] = DefaultBits, ["strategy"] = Strategy, ["layers"] = layers,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public static MixPlan Parse(string json, string source = "plan")
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new MatqException($"{source} is not valid JSON ({e.Message})"); }
        if (root is not JsonObject o || (string?)o["format"] != Format)
            throw new MatqException($"{source} is not a matq plan (expected \"format\": \"{Format}\")");
        try
        {
            var layers = (o["layers"] as JsonObject ?? new JsonObject()).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
            return new MixPlan((string?)o["model_hash"] ?? "", (int)o["master_bits"]!, (int)o["default_bits"]!, layers, (string?)o["strategy"] ?? "custom");
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ArgumentNullException)
        {
            throw new MatqException($"{source}: a field has the wrong type or is missing ({e.Message})");
        }
    }

    public static MixPlan Load(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"plan {path} does not exist");
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
