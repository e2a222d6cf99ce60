// Contract: the OpenAI completions wire format as `matq serve` speaks it. ParseCompletion turns a request body into
// CompletionParameters or throws ApiException (status 400 naming the field and the fix, 404 for another model);
// fields OpenAI defines but matq does not serve (n > 1, echo, logprobs, penalties, ...) are refused, not ignored, and so
// are unknown fields. The builders give the response objects: text_completion bodies and stream chunks, model lists,
// and errors {"error": {"message", "type", "param", "code"}}. Extensions: "bits" (served precision, 1..master),
// "top_k" in requests; a "matq" object (bits and bytes actually served, tokens/s) in responses.
using System.Text.Json;
using Matq.Runtime.Generation;
using Matq.Runtime.Serving;

namespace Matq.Cli.Serving;

/// <summary>An error answered as OpenAI-style JSON with <see cref="Status"/>.</summary>
public sealed class ApiException(int status, string message, string type = ApiException.InvalidRequest, string? param = null, string? code = null)
    : Exception(message)
{
    public const string InvalidRequest = "invalid_request_error";
    public const string RateLimit = "rate_limit_error";
    public const string Server = "server_error";

    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public object Body() => OpenAiProtocol.Error(Message, Type, Param, Code);
}

/// <summary>A parsed request: what to generate, and how to answer.</summary>
public sealed record CompletionRequest(CompletionParameters Parameters, bool Stream, bool IncludeUsage);

public static class OpenAiProtocol
{
    /// <summary>OpenAI's legacy default for max_tokens.</summary>
    public const int DefaultMaxTokens = 16;
    public const int MaxStopSequences = 4;

    /// <summary>Compact JSON; quotes and apostrophes in messages stay readable (the body is JSON, never embedded in HTML).</summary>
    public static readonly JsonSerializerOptions Json = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static object Error(string message, string type, string? param, string? code) =>
        new { error = new { message, type, param, code } };

    /// <summary>Parses a /v1/completions body; <paramref name="modelId"/> is the one model served.</summary>
    public static CompletionRequest ParseCompletion(ReadOnlyMemory<byte> body, string modelId, Func<int>? randomSeed = null)
    {
        string? prompt = null;
        var common = ParseRequest(body, modelId, CompletionFields, "{\"prompt\": \"Hello\", \"max_tokens\": 16}", (name, v) =>
        {
            switch (name)
            {
                case "prompt": prompt = Prompt(v); return true;
                case "best_of":
                    if (Int(v, name) is int n && n != 1) throw Invalid(name, $"{name} {n} is not served: one completion per request ({name} = 1); send several requests instead");
                    return true;
                case "echo":
                    if (Bool(v, "echo") == true) throw Invalid("echo", "echo is not served: the response holds the completion only; leave echo out or false");
                    return true;
                case "suffix":
                    if (v.ValueKind != JsonValueKind.Null && !(v.ValueKind == JsonValueKind.String && v.GetString() == ""))
                        throw Invalid("suffix", "suffix (insertion) is not served; leave suffix out");
                    return true;
                case "logprobs":
                    if (v.ValueKind != JsonValueKind.Null) throw Invalid("logprobs", "logprobs are not served; leave logprobs out or null");
                    return true;
                default: return false;
            }
        }, randomSeed);
        if (prompt is null) throw Invalid("prompt", "prompt is required: give the text to continue, e.g. \"prompt\": \"Hello\"");
        var p = new CompletionParameters { Prompt = prompt, MaxTokens = common.MaxTokens ?? DefaultMaxTokens, Sampling = common.Sampling, Stop = common.Stop, Bits = common.Bits };
        return new CompletionRequest(p, common.Stream, common.IncludeUsage);
    }

    private const string CompletionFields = "model, prompt, max_tokens, temperature, top_p, top_k, seed, stop, stream, stream_options, n (1), bits";

    /// <summary>The fields both endpoints share (model, sampling, stop, stream, bits, ...); max_tokens null when absent.</summary>
    internal sealed record CommonFields(int? MaxTokens, SamplingOptions Sampling, IReadOnlyList<string> Stop, int? Bits, bool Stream, bool IncludeUsage);

    /// <summary>
    /// Parses a request object: <paramref name="own"/> sees each field first and returns true for those of its endpoint;
    /// the shared fields are parsed here; anything else is refused naming <paramref name="served"/>.
    /// </summary>
    internal static CommonFields ParseRequest(ReadOnlyMemory<byte> body, string modelId, string served, string example,
        Func<string, JsonElement, bool> own, Func<int>? randomSeed)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON ({e.Message.Split(" Path:")[0].TrimEnd('.')}); send a JSON object such as {example}",
                code: "invalid_json");
        }
        using (doc)
        {
            RequireUnicodeText(body.Span);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ApiException(400, $"the request body is a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object; send {example}", code: "invalid_json");

            int? maxTokens = null;
            int topK = 0;
            int? seed = null, bits = null;
            double temperature = 1, topP = 1;
            bool stream = false, includeUsage = false;
            IReadOnlyList<string> stop = [];
            foreach (var f in root.EnumerateObject())
            {
                var v = f.Value;
                if (own(f.Name, v)) continue;
                switch (f.Name)
                {
                    case "model":
                        if (v.ValueKind is not (JsonValueKind.String or JsonValueKind.Null)) throw Invalid("model", "model must be a string");
                        if (v.ValueKind == JsonValueKind.String && v.GetString() != modelId)
                            throw new ApiException(404, $"the model '{v.GetString()}' does not exist: this server serves '{modelId}' (GET /v1/models)", param: "model", code: "model_not_found");
                        break;
                    case "max_tokens": maxTokens = Int(v, "max_tokens"); break;
                    case "temperature":
                        temperature = Number(v, "temperature") ?? 1;
                        if (temperature is < 0 or > 2) throw Invalid("temperature", $"temperature {temperature} is out of range: 0 (greedy) to 2");
                        break;
                    case "top_p":
                        topP = Number(v, "top_p") ?? 1;
                        if (!(topP > 0 && topP <= 1)) throw Invalid("top_p", $"top_p {topP} is out of range: more than 0, at most 1");
                        break;
                    case "top_k":
                        topK = Int(v, "top_k") ?? 0;
                        if (topK < 0) throw Invalid("top_k", $"top_k {topK} is out of range: 0 (no limit) or more");
                        break;
                    case "seed": seed = Int(v, "seed"); break;
                    case "stop": stop = Stop(v); break;
                    case "stream": stream = Bool(v, "stream") ?? false; break;
                    case "stream_options":
                        if (v.ValueKind == JsonValueKind.Null) break;
                        if (v.ValueKind != JsonValueKind.Object) throw Invalid("stream_options", "stream_options must be an object such as {\"include_usage\": true}");
                        foreach (var o in v.EnumerateObject())
                        {
                            if (o.Name != "include_usage") throw Invalid("stream_options", $"stream_options.{o.Name} is not supported: only include_usage");
                            includeUsage = Bool(o.Value, "stream_options.include_usage") ?? false;
                        }
                        break;
                    case "bits": bits = Int(v, "bits"); break;
                    case "n":
                        if (Int(v, f.Name) is int n && n != 1) throw Invalid(f.Name, $"{f.Name} {n} is not served: one completion per request ({f.Name} = 1); send several requests instead");
                        break;
                    case "presence_penalty":
                    case "frequency_penalty":
                        if (Number(v, f.Name) is double pen && pen != 0) throw Invalid(f.Name, $"{f.Name} is not served; leave it out or 0");
                        break;
                    case "logit_bias":
                        if (v.ValueKind != JsonValueKind.Null && !(v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any()))
                            throw Invalid("logit_bias", "logit_bias is not served; leave it out");
                        break;
                    case "user": break;   // an end-user id for abuse tracking: nothing to do on a local server
                    default:
                        throw new ApiException(400, $"unrecognized request argument '{SafeText.Escape(f.Name)}'; the fields served are {served}",
                            param: f.Name, code: "unknown_parameter");
                }
            }
            var sampling = new SamplingOptions
            {
                Temperature = temperature, TopP = topP, TopK = topK, Seed = seed ?? (randomSeed ?? (() => Random.Shared.Next()))(),
            };
            return new CommonFields(maxTokens, sampling, stop, bits, stream, includeUsage);
        }
    }

    // System.Text.Json accepts invalid UTF-8 inside strings and lone surrogate escapes ("\ud800") when it parses, and
    // fails only when such a string or key is read (InvalidOperationException, a 500). So every key and string of the
    // (syntactically valid) body is checked here once, before any is read, and the first bad one is named by its path.
    private static void RequireUnicodeText(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 16 });
        var path = new List<(bool Array, int Index, string? Name)>();   // one frame per open object/array
        void Element()
        {
            if (path.Count > 0 && path[^1].Array) path[^1] = path[^1] with { Index = path[^1].Index + 1 };
        }
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject or JsonTokenType.StartArray:
                    Element();
                    path.Add((reader.TokenType == JsonTokenType.StartArray, -1, null));
                    break;
                case JsonTokenType.EndObject or JsonTokenType.EndArray:
                    path.RemoveAt(path.Count - 1);
                    break;
                case JsonTokenType.PropertyName:
                    CheckText(ref reader, path, key: true);
                    path[^1] = path[^1] with { Name = reader.GetString() };
                    break;
                case JsonTokenType.String:
                    Element();
                    CheckText(ref reader, path, key: false);
                    break;
                default:
                    Element();
                    break;
            }
        }
    }

    private static void CheckText(ref Utf8JsonReader reader, List<(bool Array, int Index, string? Name)> path, bool key)
    {
        var raw = reader.ValueSpan;   // the text between the quotes, escapes as written
        long start = reader.TokenStartIndex + 1;
        // a value's path is every open frame's current child (prompt, stop[1]); a key's is that of the object holding it
        string At(int frames) => string.Concat(path.Take(frames).Select((f, i) => f.Array ? $"[{f.Index}]" : i == 0 ? f.Name : "." + f.Name));
        string where = key ? (path.Count == 1 ? "a key of the request object" : $"a key inside {At(path.Count - 1)}") : $"the value of {At(path.Count)}";
        string? param = key || path.Count == 0 ? null : path[0].Name;
        for (int i = 0; i < raw.Length;)
        {
            var status = System.Text.Rune.DecodeFromUtf8(raw[i..], out _, out int used);
            if (status != System.Buffers.OperationStatus.Done)
                throw new ApiException(400, $"the request body is not valid UTF-8: {where} holds the byte 0x{raw[i]:X2} at byte offset {start + i}, "
                    + "which is not part of a UTF-8 character; send the JSON as UTF-8 text (JSON requires it)", param: param, code: "invalid_encoding");
            i += used;
        }
        if (!reader.ValueIsEscaped) return;
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] != '\\') continue;
            i++;
            if (raw[i] != 'u') continue;
            int unit = Hex(raw.Slice(i + 1, 4));
            i += 4;
            bool high = unit is >= 0xD800 and <= 0xDBFF, low = unit is >= 0xDC00 and <= 0xDFFF;
            if (high && i + 6 < raw.Length && raw[i + 1] == '\\' && raw[i + 2] == 'u' && Hex(raw.Slice(i + 3, 4)) is >= 0xDC00 and <= 0xDFFF)
            {
                i += 6;   // a surrogate pair: one character outside the BMP
                continue;
            }
            if (high || low)
                throw new ApiException(400, $"the request body holds text that is not Unicode: {where} holds the escape \\u{unit:x4} at byte offset {start + i - 5}, "
                    + $"a lone UTF-16 {(high ? "high" : "low")} surrogate ({(high ? "not followed by a low surrogate \\udc00-\\udfff" : "not after a high surrogate \\ud800-\\udbff")}); "
                    + "write a character outside the BMP as a surrogate pair such as \\ud83d\\ude00, or as UTF-8", param: param, code: "invalid_encoding");
        }
    }

    private static int Hex(ReadOnlySpan<byte> four) => int.Parse(four, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);

    internal static ApiException Invalid(string param, string message) => new(400, message, param: param, code: "invalid_value");

    private static string Prompt(JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.String) return v.GetString()!;
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 1 && v[0].ValueKind == JsonValueKind.String) return v[0].GetString()!;
        throw Invalid("prompt", "prompt must be one string (token arrays and batches of prompts are not served)");
    }

    private static IReadOnlyList<string> Stop(JsonElement v)
    {
        string[] stops = v.ValueKind switch
        {
            JsonValueKind.Null => [],
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => v.EnumerateArray().Select(e => e.GetString()!).ToArray(),
            _ => throw Invalid("stop", "stop must be a string or an array of strings"),
        };
        if (stops.Length > MaxStopSequences) throw Invalid("stop", $"stop holds {stops.Length} sequences; give at most {MaxStopSequences}");
        if (stops.Any(s => s.Length == 0)) throw Invalid("stop", "stop holds an empty string; give non-empty stop sequences");
        return stops;
    }

    internal static int? Int(JsonElement v, string name)
    {
        if (v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        throw Invalid(name, $"{name} must be an integer, got {Describe(v)}");
    }

    private static double? Number(JsonElement v, string name)
    {
        if (v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d)) return d;
        throw Invalid(name, $"{name} must be a number, got {Describe(v)}");
    }

    internal static bool? Bool(JsonElement v, string name) => v.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Invalid(name, $"{name} must be true or false, got {Describe(v)}"),
    };

    internal static string Describe(JsonElement v)
    {
        var raw = v.GetRawText();
        return raw.Length <= 40 ? raw : raw[..37] + "...";
    }

    // ---- responses ----

    public static object Usage(int promptTokens, int completionTokens) =>
        new { prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens };

    /// <summary>matq's extension: the precision actually served and how fast.</summary>
    public static object Served(CompletionResult r) => new
    {
        bits = r.Bits,
        plan = r.Precision == Matq.Runtime.Packed.PackedPrecisionCache.PlanKey,
        mean_layer_bits = Math.Round(r.MeanLayerBits, 4),
        weight_bytes = r.WeightBytes,
        prefill_tokens_per_second = Math.Round(r.Stats.PrefillTokensPerSecond, 1),
        decode_tokens_per_second = Math.Round(r.Stats.DecodeTokensPerSecond, 1),
    };

    public static object Completion(string id, long created, string model, CompletionResult r) => new
    {
        id,
        @object = "text_completion",
        created,
        model,
        choices = new[] { new { text = r.Text, index = 0, logprobs = (object?)null, finish_reason = r.FinishReason } },
        usage = Usage(r.PromptTokens, r.CompletionTokens),
        matq = Served(r),
    };

    /// <summary>A stream chunk carrying a piece of text (finish_reason null).</summary>
    public static object Chunk(string id, long created, string model, string text) => new
    {
        id,
        @object = "text_completion",
        created,
        model,
        choices = new[] { new { text, index = 0, logprobs = (object?)null, finish_reason = (string?)null } },
    };

    /// <summary>The last text chunk: no text, the finish reason, and the precision served.</summary>
    public static object FinalChunk(string id, long created, string model, CompletionResult r) => new
    {
        id,
        @object = "text_completion",
        created,
        model,
        choices = new[] { new { text = "", index = 0, logprobs = (object?)null, finish_reason = r.FinishReason } },
        matq = Served(r),
    };

    /// <summary>The usage chunk sent last when stream_options.include_usage is true (no choices); chat names its chunk object.</summary>
    public static object UsageChunk(string id, long created, string model, CompletionResult r) => UsageChunk(id, created, model, r, "text_completion");

    public static object UsageChunk(string id, long created, string model, CompletionResult r, string objectName) => new
    {
        id,
        @object = objectName,
        created,
        model,
        choices = Array.Empty<object>(),
        usage = Usage(r.PromptTokens, r.CompletionTokens),
    };
}
