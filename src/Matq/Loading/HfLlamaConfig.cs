// Reads and writes HF config.json for Llama-family decoders (llama, mistral, qwen2; SmolLM is llama). Every refusal
// is a one-line MatqException naming the field; keys we do not model are carried through LlamaConfig.Extra.
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Models;

namespace Matq.Loading;

public static class HfLlamaConfig
{
    public const string FileName = "config.json";

    private static readonly string[] SupportedArchitectures = { "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM" };

    // keys this reader consumes or regenerates on write; everything else goes to Extra
    private static readonly HashSet<string> Modeled = new(StringComparer.Ordinal)
    {
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "vocab_size", "max_position_embeddings",
        "tie_word_embeddings", "attention_bias", "mlp_bias", "rope_theta", "rope_scaling", "rope_parameters",
        "sliding_window", "dtype", "torch_dtype", "transformers_version",
    };

    /// <summary>Reads <c>folder/config.json</c> (or a config.json path).</summary>
    public static LlamaConfig Read(string folderOrFile)
    {
        var path = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, FileName) : folderOrFile;
        if (!File.Exists(path))
            throw new MatqException($"{path}: config.json not found (give an HF model folder that holds config.json)");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> prefixes every error message.</summary>
    public static LlamaConfig Parse(string json, string source = FileName)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject ?? throw new MatqException($"{source}: must hold a JSON object");
        }
        catch (JsonException e)
        {
            throw new MatqException($"{source}: not valid JSON ({e.Message.Split('\n')[0]})");
        }

        var modelType = GetString(root, "model_type", source)
            ?? throw new MatqException($"{source}: missing required field 'model_type' (supported: llama, mistral, qwen2)");
        var family = modelType switch
        {
            "llama" => LlamaFamily.Llama,
            "mistral" => LlamaFamily.Mistral,
            "qwen2" => LlamaFamily.Qwen2,
            _ => throw new MatqException($"{source} model_type '{modelType}' is not a Llama-family decoder (supported: llama, mistral, qwen2)"),
        };
        if (root["architectures"] is JsonArray archs)
        {
            foreach (var a in archs)
            {
                var name = a?.GetValueKind() == JsonValueKind.String ? a.GetValue<string>() : a?.ToJsonString();
                if (name is null || !SupportedArchitectures.Contains(name))
                    throw new MatqException($"{source} architectures '{name}' is not a Llama-family decoder (supported: {string.Join(", ", SupportedArchitectures)})");
            }
        }
        var act = GetString(root, "hidden_act", source) ?? "silu";
        if (act is not ("silu" or "swish"))
            throw new MatqException($"{source} hidden_act '{act}' is not supported (Llama-family MLPs use silu)");

        var (ropeTheta, ropeScaling, ropeFactor) = ParseRope(root, source);

        int? slidingWindow = family switch
        {
            LlamaFamily.Mistral => GetInt(root, "sliding_window", source),
            // Qwen2 ignores sliding_window unless use_sliding_window is set
            LlamaFamily.Qwen2 when GetBool(root, "use_sliding_window", source) == true => GetInt(root, "sliding_window", source),
            _ => null,
        };

        var extra = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in root)
            if (!Modeled.Contains(key)) extra[key] = value?.ToJsonString() ?? "null";

        return new LlamaConfig(
            hiddenSize: Required(root, "hidden_size", source),
            intermediateSize: Required(root, "intermediate_size", source),
            numLayers: Required(root, "num_hidden_layers", source),
            numHeads: Required(root, "num_attention_heads", source),
            vocabSize: Required(root, "vocab_size", source),
            family: family,
            numKvHeads: GetInt(root, "num_key_value_heads", source),
            headDim: GetInt(root, "head_dim", source),
            rmsNormEps: GetDouble(root, "rms_norm_eps", source) ?? 1e-6,
            maxPositionEmbeddings: GetInt(root, "max_position_embeddings", source) ?? (family == LlamaFamily.Llama ? 2048 : 32768),
            tieWordEmbeddings: GetBool(root, "tie_word_embeddings", source) ?? false,
            attentionBias: GetBool(root, "attention_bias", source) ?? false,
            mlpBias: GetBool(root, "mlp_bias", source) ?? false,
            ropeTheta: ropeTheta, ropeScaling: ropeScaling, ropeFactor: ropeFactor,
            slidingWindow: slidingWindow, extra: extra);
    }

    // Two HF forms: transformers >= 5 writes rope_parameters {rope_theta, rope_type, factor...}; older files have a
    // top-level rope_theta plus an optional rope_scaling {type|rope_type, factor}.
    private static (double Theta, RopeScaling Scaling, double Factor) ParseRope(JsonObject root, string source)
    {
        JsonObject? p = null;
        string where = "rope_scaling";
        if (root["rope_parameters"] is JsonObject rp)
        {
            if (!rp.ContainsKey("rope_theta") && !rp.ContainsKey("rope_type") && rp.Any(kv => kv.Value is JsonObject))
                throw new MatqException($"{source} rope_parameters per layer type are not supported (give one rope_theta/rope_type)");
            p = rp;
            where = "rope_parameters";
        }
        else if (root["rope_scaling"] is JsonObject rs)
        {
            p = rs;
        }
        else if (root["rope_scaling"] is JsonNode other)
        {
            throw new MatqException($"{source} rope_scaling must be an object or null, got {other.ToJsonString()}");
        }
        double theta = (p is not null && p.ContainsKey("rope_theta") ? GetDouble(p, "rope_theta", source) : null)
            ?? GetDouble(root, "rope_theta", source) ?? 10000.0;
        var type = p is null ? null : GetString(p, "rope_type", source) ?? GetString(p, "type", source);
        var pf = p is null ? null : GetDouble(p, "partial_rotary_factor", source);
        if (pf is double f0 && f0 != 1.0)
            throw new MatqException($"{source} {where}.partial_rotary_factor {f0} is not supported (only full rotary embeddings)");
        switch (type)
        {
            case null or "default":
                return (theta, RopeScaling.Default, 1.0);
            case "linear":
                var factor = GetDouble(p!, "factor", source)
                    ?? throw new MatqException($"{source} {where}.factor is missing (rope type 'linear' needs it)");
                return (theta, RopeScaling.Linear, factor);
            default:
                throw new MatqException($"rope type '{type}' in {source} is not supported (supported: default, linear)");
        }
    }

    /// <summary>HF config.json text for <paramref name="config"/>; <paramref name="dtype"/> is written as "dtype" ("float32", "bfloat16").</summary>
    public static string ToJson(LlamaConfig config, string dtype = "float32")
    {
        var (arch, type) = config.Family switch
        {
            LlamaFamily.Mistral => ("MistralForCausalLM", "mistral"),
            LlamaFamily.Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
            _ => ("LlamaForCausalLM", "llama"),
        };
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(arch),
            ["model_type"] = type,
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumLayers,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumKvHeads,
            ["head_dim"] = config.HeadDim,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = config.RmsNormEps,
            ["vocab_size"] = config.VocabSize,
            ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = config.TieWordEmbeddings,
            ["dtype"] = dtype,
        };
        if (config.Family == LlamaFamily.Llama)
        {
            o["attention_bias"] = config.QkvBias;
            o["mlp_bias"] = config.MlpBias;
        }
        if (config.Family != LlamaFamily.Llama) o["sliding_window"] = config.SlidingWindow;
        // both rope forms, so transformers 4.x (rope_theta/rope_scaling) and 5.x (rope_parameters) read the same values
        o["rope_theta"] = config.RopeTheta;
        o["rope_scaling"] = config.RopeScaling == RopeScaling.Linear
            ? new JsonObject { ["rope_type"] = "linear", ["type"] = "linear", ["factor"] = config.RopeFactor }
            : null;
        var rp = new JsonObject { ["rope_theta"] = config.RopeTheta, ["rope_type"] = config.RopeScaling == RopeScaling.Linear ? "linear" : "default" };
        if (config.RopeScaling == RopeScaling.Linear) rp["factor"] = config.RopeFactor;
        o["rope_parameters"] = rp;
        foreach (var (key, raw) in config.Extra.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (!o.ContainsKey(key)) o[key] = JsonNode.Parse(raw);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Writes folder/config.json atomically (temp file + rename).</summary>
    public static void Write(LlamaConfig config, string folder, string dtype = "float32")
    {
        Matq.Formats.IO.AtomicFile.WriteAllText(Path.Combine(folder, FileName), ToJson(config, dtype));
    }

    private static int Required(JsonObject o, string key, string source) =>
        GetInt(o, key, source) ?? throw new MatqException($"{source}: missing required field '{key}'");

    private static JsonValue? Value(JsonObject o, string key) => o[key] as JsonValue;

    private static int? GetInt(JsonObject o, string key, string source)
    {
        var v = o[key];
        if (v is null) return null;
        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Number)
        {
            if (jv.TryGetValue<int>(out var i)) return i;
            if (jv.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue) return (int)d;
        }
        throw new MatqException($"{source} field '{key}' must be an integer, got {v.ToJsonString()}");
    }

    private static double? GetDouble(JsonObject o, string key, string source)
    {
        var v = o[key];
        if (v is null) return null;
        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Number && jv.TryGetValue<double>(out var d)) return d;
        throw new MatqException($"{source} field '{key}' must be a number, got {v.ToJsonString()}");
    }

    private static bool? GetBool(JsonObject o, string key, string source)
    {
        var v = Value(o, key);
        if (o[key] is null) return null;
        return v?.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new MatqException($"{source} field '{key}' must be true or false, got {o[key]!.ToJsonString()}"),
        };
    }

    private static string? GetString(JsonObject o, string key, string source)
    {
        var v = o[key];
        if (v is null) return null;
        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String) return jv.GetValue<string>();
        throw new MatqException($"{source} field '{key}' must be a string, got {v.ToJsonString()}");
    }
}
