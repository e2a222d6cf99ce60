// Reads and writes HF config.json for the decoder families of the description (llama incl. Llama 3 and SmolLM, mistral,
// qwen2, qwen3, gemma2, gemma3_text, phi3), in both key forms (transformers 5.x rope_parameters/dtype, incl. Gemma 3's
// per-layer-type dict; 4.x rope_theta + rope_scaling + rope_local_base_freq/torch_dtype). model_type picks the family's
// reader (defaults and family keys); every refusal is a one-line MatqException naming the field, its value and what is
// supported; keys we do not model are carried through LlamaConfig.Extra. ToJson writes both rope forms.
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Runtime.Models;

namespace Matq.Runtime.Loading;

public static class HfLlamaConfig
{
    public const string FileName = "config.json";

    private static readonly (string ModelType, string Architecture, LlamaFamily Family)[] Families =
    {
        ("llama", "LlamaForCausalLM", LlamaFamily.Llama), ("mistral", "MistralForCausalLM", LlamaFamily.Mistral),
        ("qwen2", "Qwen2ForCausalLM", LlamaFamily.Qwen2), ("qwen3", "Qwen3ForCausalLM", LlamaFamily.Qwen3),
        ("gemma2", "Gemma2ForCausalLM", LlamaFamily.Gemma2), ("gemma3_text", "Gemma3ForCausalLM", LlamaFamily.Gemma3),
        ("phi3", "Phi3ForCausalLM", LlamaFamily.Phi3),
    };

    private static readonly string SupportedTypes = string.Join(", ", Families.Select(f => f.ModelType));
    private static readonly string[] SupportedArchitectures = Families.Select(f => f.Architecture).ToArray();

    // keys this reader consumes or regenerates on write; everything else goes to Extra
    private static readonly HashSet<string> Modeled = new(StringComparer.Ordinal)
    {
        "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "hidden_activation", "rms_norm_eps", "vocab_size", "max_position_embeddings",
        "tie_word_embeddings", "attention_bias", "mlp_bias", "rope_theta", "rope_scaling", "rope_parameters", "rope_local_base_freq",
        "sliding_window", "use_sliding_window", "layer_types", "query_pre_attn_scalar", "attn_logit_softcapping",
        "final_logit_softcapping", "dtype", "torch_dtype", "transformers_version",
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
            throw new MatqException($"{source}: not valid JSON ({SafeText.Escape(e.Message.Split('\n')[0])})");
        }

        var modelType = GetString(root, "model_type", source)
            ?? throw new MatqException($"{source}: missing required field 'model_type' (supported: {SupportedTypes})");
        if (modelType == "gemma3" || root.ContainsKey("text_config") || root.ContainsKey("vision_config"))
            throw new MatqException($"{source} model_type {SafeText.Quote(modelType, 60)} is a multimodal config (text_config/vision_config), which is not supported (supported: the text decoders {SupportedTypes}; give the text model's config)");
        var entry = Families.FirstOrDefault(f => f.ModelType == modelType);
        if (entry.ModelType is null)
            throw new MatqException($"{source} model_type {SafeText.Quote(modelType, 60)} is not a Llama-family decoder (supported: {SupportedTypes})");
        var family = entry.Family;
        if (root["architectures"] is JsonArray archs)
        {
            foreach (var a in archs)
            {
                var name = a?.GetValueKind() == JsonValueKind.String ? a.GetValue<string>() : a?.ToJsonString();
                if (name is null || !SupportedArchitectures.Contains(name))
                    throw new MatqException($"{source} architectures {SafeText.Quote(name, 60)} is not a Llama-family decoder (supported: {string.Join(", ", SupportedArchitectures)})");
            }
        }
        foreach (var key in new[] { "num_local_experts", "num_experts", "n_routed_experts" })
            if (GetInt(root, key, source) is int experts && experts > 0)
                throw new MatqException($"{source} {key} {experts} is not supported: mixture-of-experts layers are not modeled (supported: dense decoders, {SupportedTypes})");
        bool gemma = family is LlamaFamily.Gemma2 or LlamaFamily.Gemma3;
        if (gemma && GetBool(root, "use_bidirectional_attention", source) == true)
            throw new MatqException($"{source} use_bidirectional_attention true is not supported (supported: false, causal decoders)");

        // Gemma names its MLP activation hidden_activation (hidden_act is a leftover of Gemma 1 there)
        var actKey = gemma && root.ContainsKey("hidden_activation") ? "hidden_activation" : "hidden_act";
        var actName = GetString(root, actKey, source) ?? (gemma ? "gelu_pytorch_tanh" : "silu");
        var activation = actName switch
        {
            "silu" or "swish" => Activation.Silu,
            "gelu_pytorch_tanh" => Activation.GeluTanh,
            _ => throw new MatqException($"{source} {actKey} {SafeText.Quote(actName, 60)} is not supported (supported: silu, gelu_pytorch_tanh)"),
        };

        int numLayers = Required(root, "num_hidden_layers", source);
        var (rope, localRope) = ParseRope(root, family, source);
        var (slidingWindow, slidingLayers) = ParseWindows(root, family, numLayers, source);

        var extra = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in root)
            if (!Modeled.Contains(key)) extra[key] = value?.ToJsonString() ?? "null";

        double? Optional(string key, double? absent) => root.ContainsKey(key) ? GetDouble(root, key, source) : absent;
        return new LlamaConfig(
            hiddenSize: Required(root, "hidden_size", source),
            intermediateSize: Required(root, "intermediate_size", source),
            numLayers: numLayers,
            numHeads: Required(root, "num_attention_heads", source),
            vocabSize: Required(root, "vocab_size", source),
            family: family,
            numKvHeads: GetInt(root, "num_key_value_heads", source),
            headDim: GetInt(root, "head_dim", source) ?? (gemma ? 256 : family == LlamaFamily.Qwen3 ? 128 : null),
            rmsNormEps: GetDouble(root, "rms_norm_eps", source) ?? (family == LlamaFamily.Phi3 ? 1e-5 : 1e-6),
            maxPositionEmbeddings: GetInt(root, "max_position_embeddings", source) ?? family switch
            {
                LlamaFamily.Llama => 2048, LlamaFamily.Phi3 => 4096, LlamaFamily.Gemma2 => 8192, LlamaFamily.Gemma3 => 131072, _ => 32768,
            },
            tieWordEmbeddings: GetBool(root, "tie_word_embeddings", source) ?? gemma,
            attentionBias: GetBool(root, "attention_bias", source) ?? false,
            mlpBias: GetBool(root, "mlp_bias", source) ?? false,
            slidingWindow: slidingWindow, extra: extra,
            rope: rope, localRope: localRope, slidingLayers: slidingLayers, activation: activation,
            attnLogitSoftcap: gemma ? Optional("attn_logit_softcapping", family == LlamaFamily.Gemma2 ? 50.0 : null) : null,
            finalLogitSoftcap: gemma ? Optional("final_logit_softcapping", family == LlamaFamily.Gemma2 ? 30.0 : null) : null,
            queryPreAttnScalar: gemma ? GetDouble(root, "query_pre_attn_scalar", source) ?? 256 : null);
    }

    // Which layers slide and the window W. layer_types (5.x, and Gemma 2/3 4.x files that carry it) decides per layer;
    // without it: Gemma 2 alternates (even layers slide), Gemma 3 slides except every sliding_window_pattern-th layer,
    // Qwen slides layers >= max_window_layers when use_sliding_window, Mistral/Phi-3 slide every layer when W is set.
    private static (int? Window, IReadOnlyList<bool>? Sliding) ParseWindows(JsonObject root, LlamaFamily family, int numLayers, string source)
    {
        int? window = family switch
        {
            LlamaFamily.Llama => null,
            LlamaFamily.Qwen2 or LlamaFamily.Qwen3 => GetBool(root, "use_sliding_window", source) == true ? GetInt(root, "sliding_window", source) : null,
            LlamaFamily.Gemma2 or LlamaFamily.Gemma3 => root.ContainsKey("sliding_window") ? GetInt(root, "sliding_window", source) : 4096,
            _ => GetInt(root, "sliding_window", source),
        };
        if (root["layer_types"] is JsonArray types)
        {
            if (types.Count != numLayers)
                throw new MatqException($"{source} layer_types has {types.Count} entries but num_hidden_layers is {numLayers}");
            var sliding = new bool[numLayers];
            for (int i = 0; i < numLayers; i++)
            {
                var t = types[i] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : types[i]?.ToJsonString() ?? "null";
                sliding[i] = t switch
                {
                    "full_attention" => false,
                    "sliding_attention" => true,
                    _ => throw new MatqException($"{source} layer_types[{i}] {SafeText.Quote(t, 60)} is not supported (supported: full_attention, sliding_attention)"),
                };
            }
            return (window, sliding);
        }
        if (root.ContainsKey("layer_types") && root["layer_types"] is not null)
            throw new MatqException($"{source} field 'layer_types' must be a list of strings, got {SafeText.Escape(root["layer_types"]!.ToJsonString(), 60)}");
        switch (family)
        {
            case LlamaFamily.Gemma2:
                return (window, new LayerPattern(numLayers, [true, false]));
            case LlamaFamily.Gemma3:
                var pattern = GetInt(root, "sliding_window_pattern", source) ?? GetInt(root, "_sliding_window_pattern", source) ?? 6;
                if (pattern <= 0) throw new MatqException($"{source} sliding_window_pattern {pattern} must be a positive integer");
                if (pattern > numLayers) return (window, LayerPattern.Uniform(numLayers, true));
                if (pattern > 65536) throw new MatqException($"{source} sliding_window_pattern {pattern} is not supported (at most 65536; give layer_types instead)");
                return (window, new LayerPattern(numLayers, Enumerable.Range(0, pattern).Select(i => (i + 1) % pattern != 0).ToArray()));
            case LlamaFamily.Qwen2 or LlamaFamily.Qwen3 when window is not null:
                var first = GetInt(root, "max_window_layers", source) ?? 28;
                return (window, new LayerPattern(numLayers, [true], first));
            default:
                return (window, null);
        }
    }

    // Two HF forms: transformers >= 5 writes rope_parameters {rope_theta, rope_type, factor...}, or for Gemma 3 one such
    // object per layer type {full_attention: {...}, sliding_attention: {...}}; older files have a top-level rope_theta
    // plus an optional rope_scaling {type|rope_type, factor...} and, for Gemma 3, rope_local_base_freq (the sliding
    // layers' default rope). Returns the full-attention rope and the sliding layers' rope (null: the same).
    private static (RopeSpec Rope, RopeSpec? Local) ParseRope(JsonObject root, LlamaFamily family, string source)
    {
        double defaultTheta = family == LlamaFamily.Gemma3 ? 1_000_000.0 : 10000.0;
        if (root["rope_parameters"] is JsonObject rp && !rp.ContainsKey("rope_theta") && !rp.ContainsKey("rope_type") && rp.Any(kv => kv.Value is JsonObject))
        {
            foreach (var (key, _) in rp)
                if (key is not ("full_attention" or "sliding_attention"))
                    throw new MatqException($"{source} rope_parameters.{SafeText.Escape(key, 40)} is not supported (supported layer types: full_attention, sliding_attention)");
            var full = rp["full_attention"] as JsonObject
                ?? throw new MatqException($"{source} rope_parameters.full_attention is missing (the per-layer-type form needs it)");
            var global = RopeFrom(full, GetDouble(root, "rope_theta", source) ?? defaultTheta, "rope_parameters.full_attention", source);
            var local = rp["sliding_attention"] is JsonObject slid
                ? RopeFrom(slid, GetDouble(root, "rope_local_base_freq", source) ?? 10000.0, "rope_parameters.sliding_attention", source)
                : null;
            if (GetDouble(root, "rope_theta", source) is double t && t != global.Theta)
                throw new MatqException($"{source}: rope_theta {t} contradicts rope_parameters.full_attention.rope_theta {global.Theta}; the file holds both rope forms with different values: remove one of them (or make them equal)");
            if (local is not null && GetDouble(root, "rope_local_base_freq", source) is double lt && lt != local.Theta)
                throw new MatqException($"{source}: rope_local_base_freq {lt} contradicts rope_parameters.sliding_attention.rope_theta {local.Theta}; the file holds both rope forms with different values: remove one of them (or make them equal)");
            return (global, local);
        }

        JsonObject? p = null;
        string where = "rope_scaling";
        if (root["rope_parameters"] is JsonObject flat)
        {
            RefuseContradictingRopeForms(root, flat, source);
            p = flat;
            where = "rope_parameters";
        }
        else if (root["rope_scaling"] is JsonObject rs)
        {
            p = rs;
        }
        else if (root["rope_scaling"] is JsonNode other)
        {
            throw new MatqException($"{source} rope_scaling must be an object or null, got {SafeText.Escape(other.ToJsonString(), 60)}");
        }
        double theta = (p is not null && p.ContainsKey("rope_theta") ? GetDouble(p, "rope_theta", source) : null)
            ?? GetDouble(root, "rope_theta", source) ?? defaultTheta;
        var rope = p is null ? new RopeSpec(theta) : RopeFrom(p, theta, where, source);
        // Gemma 3 (4.x form, or a flat rope_parameters): the sliding layers use a default rope at rope_local_base_freq
        RopeSpec? localRope = family == LlamaFamily.Gemma3 ? new RopeSpec(GetDouble(root, "rope_local_base_freq", source) ?? 10000.0) : null;
        return (rope, localRope);
    }

    // one rope object: {rope_type|type, rope_theta?, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings, partial_rotary_factor}
    private static RopeSpec RopeFrom(JsonObject p, double theta, string where, string source)
    {
        theta = GetDouble(p, "rope_theta", source) ?? theta;
        var type = GetString(p, "rope_type", source) ?? GetString(p, "type", source);
        if (GetDouble(p, "partial_rotary_factor", source) is double f0 && f0 != 1.0)
            throw new MatqException($"{source} {where}.partial_rotary_factor {f0} is not supported (only full rotary embeddings)");
        double Need(string key) => GetDouble(p, key, source)
            ?? throw new MatqException($"{source} {where}.{key} is missing (rope type {SafeText.Quote(type, 20)} needs it)");
        switch (type)
        {
            case null or "default":
                return new RopeSpec(theta);
            case "linear":
                return new RopeSpec(theta, RopeScaling.Linear, Need("factor"));
            case "llama3":
                var original = GetInt(p, "original_max_position_embeddings", source)
                    ?? throw new MatqException($"{source} {where}.original_max_position_embeddings is missing (rope type 'llama3' needs it)");
                return new RopeSpec(theta, RopeScaling.Llama3, Need("factor"), Need("low_freq_factor"), Need("high_freq_factor"), original);
            default:
                throw new MatqException($"rope type {SafeText.Quote(type, 60)} in {source} is not supported (supported: default, linear, llama3)");
        }
    }

    // A file holding both forms (hand edits, or tools that write one form next to the other) must say one thing: when
    // the top-level rope_theta / rope_scaling and rope_parameters give different values, transformers 4.x and 5.x would
    // run different models, so neither is picked silently. Equal values (as ToJson writes) and null rope_scaling pass.
    private static void RefuseContradictingRopeForms(JsonObject root, JsonObject rp, string source)
    {
        void Refuse(string topKey, JsonNode top, string newKey, string shown) =>
            throw new MatqException($"{source}: {topKey} {top.ToJsonString()} contradicts rope_parameters.{newKey} {shown}; the file holds both rope "
                + $"forms (transformers 4.x top-level rope_theta/rope_scaling, 5.x rope_parameters) with different values: remove one of them (or make them equal)");

        if (root["rope_theta"] is JsonNode theta && rp["rope_theta"] is JsonNode pTheta && !SameJson(theta, pTheta))
            Refuse("rope_theta", theta, "rope_theta", pTheta.ToJsonString());
        if (root["rope_scaling"] is not JsonObject rs) return;
        // the rope type: 4.x wrote "type", later "rope_type"; an object without either is the default rope
        static (string Key, JsonNode? Value) TypeOf(JsonObject o) =>
            o.ContainsKey("rope_type") ? ("rope_type", o["rope_type"]) : o.ContainsKey("type") ? ("type", o["type"]) : ("rope_type", null);
        var (sKey, sType) = TypeOf(rs);
        var (pKey, pType) = TypeOf(rp);
        if (!SameJson(sType ?? "default", pType ?? "default"))
            Refuse($"rope_scaling.{sKey}", sType ?? "default", pKey, (pType ?? "default").ToJsonString() + (pType is null ? " (absent: the default rope)" : ""));
        foreach (var (key, value) in rs)
        {
            if (key is "type" or "rope_type" || value is null || rp[key] is not JsonNode other) continue;
            if (!SameJson(value, other)) Refuse($"rope_scaling.{key}", value, key, other.ToJsonString());
        }
    }

    // numbers compare by value (10000 == 10000.0), everything else by its JSON text
    private static bool SameJson(JsonNode a, JsonNode b) =>
        a is JsonValue va && b is JsonValue vb && va.GetValueKind() == JsonValueKind.Number && vb.GetValueKind() == JsonValueKind.Number
            ? va.GetValue<double>() == vb.GetValue<double>()
            : JsonNode.DeepEquals(a, b);

    /// <summary>
    /// HF config.json text for <paramref name="config"/> that reads back to an equal description; <paramref name="dtype"/>
    /// is written as "dtype" ("float32", "bfloat16"). Rope is written in both forms (5.x rope_parameters, 4.x rope_theta +
    /// rope_scaling + rope_local_base_freq) so transformers 4.x and 5.x read the same values.
    /// </summary>
    public static string ToJson(LlamaConfig config, string dtype = "float32")
    {
        var f = Families.First(x => x.Family == config.Family);
        bool gemma = config.Family is LlamaFamily.Gemma2 or LlamaFamily.Gemma3;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(f.Architecture),
            ["model_type"] = f.ModelType,
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumLayers,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumKvHeads,
            ["head_dim"] = config.HeadDim,
            [gemma ? "hidden_activation" : "hidden_act"] = config.Activation == Activation.GeluTanh ? "gelu_pytorch_tanh" : "silu",
            ["rms_norm_eps"] = config.RmsNormEps,
            ["vocab_size"] = config.VocabSize,
            ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["tie_word_embeddings"] = config.TieWordEmbeddings,
            ["dtype"] = dtype,
        };
        if (config.Family is LlamaFamily.Llama or LlamaFamily.Qwen3 or LlamaFamily.Gemma2 or LlamaFamily.Gemma3)
            o["attention_bias"] = config.OutputBias;
        if (config.Family == LlamaFamily.Llama)
            o["mlp_bias"] = config.MlpBias;
        if (config.Family != LlamaFamily.Llama) o["sliding_window"] = config.SlidingWindow;
        if (config.Family is LlamaFamily.Qwen2 or LlamaFamily.Qwen3) o["use_sliding_window"] = config.SlidingWindow is not null;
        if (gemma || config.SlidingLayers.Mixed)
            o["layer_types"] = new JsonArray(config.SlidingLayers.Select(sl => (JsonNode?)(sl ? "sliding_attention" : "full_attention")).ToArray());
        if (gemma)
        {
            o["query_pre_attn_scalar"] = config.QueryPreAttnScalar;
            o["attn_logit_softcapping"] = config.AttnLogitSoftcap;
            o["final_logit_softcapping"] = config.FinalLogitSoftcap;
        }
        o["rope_theta"] = config.Rope.Theta;
        o["rope_scaling"] = config.Rope.Type == RopeScaling.Default ? null : RopeObject(config.Rope, withTheta: false, legacyType: true);
        if (config.Family == LlamaFamily.Gemma3)
        {
            // Gemma 3's 4.x form holds the sliding layers' rope as a theta (a default rope); 5.x as an object per layer type
            o["rope_local_base_freq"] = config.LocalRope.Theta;
            o["rope_parameters"] = new JsonObject
            {
                ["full_attention"] = RopeObject(config.Rope, withTheta: true, legacyType: false),
                ["sliding_attention"] = RopeObject(config.LocalRope, withTheta: true, legacyType: false),
            };
        }
        else
        {
            o["rope_parameters"] = RopeObject(config.Rope, withTheta: true, legacyType: false);
        }
        foreach (var (key, raw) in config.Extra.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (!o.ContainsKey(key)) o[key] = JsonNode.Parse(raw);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonObject RopeObject(RopeSpec rope, bool withTheta, bool legacyType)
    {
        var name = rope.Type switch { RopeScaling.Linear => "linear", RopeScaling.Llama3 => "llama3", _ => "default" };
        var r = new JsonObject();
        if (withTheta) r["rope_theta"] = rope.Theta;
        r["rope_type"] = name;
        if (legacyType) r["type"] = name;
        if (rope.Type != RopeScaling.Default) r["factor"] = rope.Factor;
        if (rope.Type == RopeScaling.Llama3)
        {
            r["low_freq_factor"] = rope.LowFreqFactor;
            r["high_freq_factor"] = rope.HighFreqFactor;
            r["original_max_position_embeddings"] = rope.OriginalMaxPositions;
        }
        return r;
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
        throw new MatqException($"{source} field '{key}' must be an integer, got {SafeText.Escape(v.ToJsonString(), 60)}");
    }

    private static double? GetDouble(JsonObject o, string key, string source)
    {
        var v = o[key];
        if (v is null) return null;
        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Number && jv.TryGetValue<double>(out var d)) return d;
        throw new MatqException($"{source} field '{key}' must be a number, got {SafeText.Escape(v.ToJsonString(), 60)}");
    }

    private static bool? GetBool(JsonObject o, string key, string source)
    {
        var v = Value(o, key);
        if (o[key] is null) return null;
        return v?.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new MatqException($"{source} field '{key}' must be true or false, got {SafeText.Escape(o[key]!.ToJsonString(), 60)}"),
        };
    }

    private static string? GetString(JsonObject o, string key, string source)
    {
        var v = o[key];
        if (v is null) return null;
        if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String) return jv.GetValue<string>();
        throw new MatqException($"{source} field '{key}' must be a string, got {SafeText.Escape(v.ToJsonString(), 60)}");
    }
}
