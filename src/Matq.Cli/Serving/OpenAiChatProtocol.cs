// Contract: the OpenAI chat-completions wire format as `matq serve` speaks it (POST /v1/chat/completions). ParseChat
// turns a body into ChatParameters or throws ApiException (400 naming the field and the fix, 404 for another model):
// messages (role + content as a string, null or text parts, with name/tool_calls/tool_call_id/reasoning_content passed
// to the template), tools (rendered into the prompt by the template; tool calls in the output are not parsed out:
// the text comes back as content, which is said here and in the docs), max_tokens / max_completion_tokens (default:
// the rest of the context), chat_template_kwargs (template variables, e.g. enable_thinking), and the fields
// /v1/completions shares (sampling, stop, stream, stream_options, seed, and matq's per-request "bits").
// The builders give chat.completion bodies and chat.completion.chunk stream events.
using System.Text.Json;
using Matq.Runtime.Chat;
using Matq.Runtime.Serving;

namespace Matq.Cli.Serving;

public sealed record ChatRequest(ChatParameters Parameters, bool Stream, bool IncludeUsage);

public static class OpenAiChatProtocol
{
    private const string Fields = "model, messages, max_tokens, max_completion_tokens, temperature, top_p, top_k, seed, stop, stream, "
        + "stream_options, n (1), tools, tool_choice (auto, none), chat_template_kwargs, bits";
    private const string Example = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 64}";

    public static ChatRequest ParseChat(ReadOnlyMemory<byte> body, string modelId, Func<int>? randomSeed = null)
    {
        List<TemplateDict>? messages = null;
        List<object?>? tools = null;
        Dictionary<string, object?>? kwargs = null;
        int? maxCompletion = null;
        var common = OpenAiProtocol.ParseRequest(body, modelId, Fields, Example, (name, v) =>
        {
            switch (name)
            {
                case "messages": messages = Messages(v); return true;
                case "max_completion_tokens": maxCompletion = OpenAiProtocol.Int(v, name); return true;
                case "tools":
                    if (v.ValueKind == JsonValueKind.Null) return true;
                    if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(t => t.ValueKind != JsonValueKind.Object))
                        throw OpenAiProtocol.Invalid("tools", "tools must be an array of objects such as {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": {...}}}");
                    tools = (List<object?>)TemplateValues.FromJson(v)!;
                    return true;
                case "tool_choice":
                    if (v.ValueKind is JsonValueKind.Null || (v.ValueKind == JsonValueKind.String && v.GetString() is "auto" or "none")) return true;
                    throw OpenAiProtocol.Invalid("tool_choice", "tool_choice other than \"auto\" or \"none\" is not served: matq renders tools into the prompt and returns the model's text as content");
                case "parallel_tool_calls":
                    OpenAiProtocol.Bool(v, name);
                    return true;
                case "chat_template_kwargs":
                    if (v.ValueKind == JsonValueKind.Null) return true;
                    if (v.ValueKind != JsonValueKind.Object) throw OpenAiProtocol.Invalid(name, "chat_template_kwargs must be an object of template variables such as {\"enable_thinking\": false}");
                    kwargs = ((TemplateDict)TemplateValues.FromJson(v)!).ToDictionary(kv => kv.Key, kv => kv.Value);
                    foreach (var reserved in new[] { "messages", "tools", "add_generation_prompt" })
                        if (kwargs.ContainsKey(reserved)) throw OpenAiProtocol.Invalid(name, $"chat_template_kwargs.{reserved} is set by the request itself; leave it out of chat_template_kwargs");
                    return true;
                case "response_format":
                    if (v.ValueKind == JsonValueKind.Null || (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "text"))
                        return true;
                    throw OpenAiProtocol.Invalid("response_format", "response_format other than {\"type\": \"text\"} (JSON mode, schemas) is not served; leave it out");
                case "logprobs":
                    if (OpenAiProtocol.Bool(v, name) == true) throw OpenAiProtocol.Invalid(name, "logprobs are not served; leave logprobs out or false");
                    return true;
                case "top_logprobs":
                    if (v.ValueKind != JsonValueKind.Null) throw OpenAiProtocol.Invalid(name, "top_logprobs is not served; leave it out");
                    return true;
                default: return false;
            }
        }, randomSeed);
        if (messages is null) throw OpenAiProtocol.Invalid("messages", "messages is required: give the conversation, e.g. \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]");
        if (common.MaxTokens is int a && maxCompletion is int b && a != b)
            throw OpenAiProtocol.Invalid("max_completion_tokens", $"max_tokens {a} and max_completion_tokens {b} disagree; give one of them");
        var p = new ChatParameters
        {
            Messages = messages, Tools = tools, TemplateArguments = kwargs, MaxTokens = common.MaxTokens ?? maxCompletion,
            Sampling = common.Sampling, Stop = common.Stop, Bits = common.Bits,
        };
        return new ChatRequest(p, common.Stream, common.IncludeUsage);
    }

    // Each message: an object with a string role and content as a string, null or text parts (joined with "\n", as
    // OpenAI-compatible servers give string-only templates); other keys (name, tool_calls, ...) go to the template as is.
    private static List<TemplateDict> Messages(JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Array) throw OpenAiProtocol.Invalid("messages", $"messages must be an array of {{\"role\", \"content\"}} objects, got {OpenAiProtocol.Describe(v)}");
        var list = new List<TemplateDict>();
        int i = 0;
        foreach (var m in v.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw OpenAiProtocol.Invalid("messages", $"{at} must be an object such as {{\"role\": \"user\", \"content\": \"Hello\"}}");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(role.GetString()))
                throw OpenAiProtocol.Invalid("messages", $"{at}.role is required: system, user, assistant or tool");
            var d = (TemplateDict)TemplateValues.FromJson(m)!;
            if (m.TryGetProperty("content", out var content))
            {
                d["content"] = content.ValueKind switch
                {
                    JsonValueKind.String or JsonValueKind.Null => d["content"],
                    JsonValueKind.Array => TextParts(content, at),
                    _ => throw OpenAiProtocol.Invalid("messages", $"{at}.content must be a string, null or an array of text parts"),
                };
            }
            else if (!m.TryGetProperty("tool_calls", out _))
                throw OpenAiProtocol.Invalid("messages", $"{at}.content is required (or tool_calls for an assistant message)");
            list.Add(d);
        }
        if (list.Count == 0) throw OpenAiProtocol.Invalid("messages", "messages is empty: give at least one message such as {\"role\": \"user\", \"content\": \"Hello\"}");
        return list;
    }

    private static string TextParts(JsonElement parts, string at)
    {
        var texts = new List<string>();
        int k = 0;
        foreach (var part in parts.EnumerateArray())
        {
            string where = $"{at}.content[{k++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw OpenAiProtocol.Invalid("messages", $"{where} must be an object such as {{\"type\": \"text\", \"text\": \"Hello\"}}");
            if (type.GetString() != "text")
                throw OpenAiProtocol.Invalid("messages", $"{where} is a '{SafeText.Escape(type.GetString())}' part; matq serves text-only models: send text parts only");
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw OpenAiProtocol.Invalid("messages", $"{where}.text must be a string");
            texts.Add(text.GetString()!);
        }
        return string.Join("\n", texts);
    }

    // ---- responses ----

    public static object Completion(string id, long created, string model, CompletionResult r) => new
    {
        id,
        @object = "chat.completion",
        created,
        model,
        choices = new[] { new { index = 0, message = new { role = "assistant", content = r.Text }, logprobs = (object?)null, finish_reason = r.FinishReason } },
        usage = OpenAiProtocol.Usage(r.PromptTokens, r.CompletionTokens),
        matq = OpenAiProtocol.Served(r),
    };

    /// <summary>The first stream chunk: the assistant role, no text yet.</summary>
    public static object RoleChunk(string id, long created, string model) => Chunk(id, created, model, new { role = "assistant", content = "" }, null);

    public static object TextChunk(string id, long created, string model, string text) => Chunk(id, created, model, new { content = text }, null);

    /// <summary>The last choice chunk: an empty delta, the finish reason, and the precision served.</summary>
    public static object FinalChunk(string id, long created, string model, CompletionResult r) => new
    {
        id,
        @object = "chat.completion.chunk",
        created,
        model,
        choices = new[] { new { index = 0, delta = new { }, logprobs = (object?)null, finish_reason = (string?)r.FinishReason } },
        matq = OpenAiProtocol.Served(r),
    };

    public static object UsageChunk(string id, long created, string model, CompletionResult r) =>
        OpenAiProtocol.UsageChunk(id, created, model, r, "chat.completion.chunk");

    private static object Chunk(string id, long created, string model, object delta, string? finish) => new
    {
        id,
        @object = "chat.completion.chunk",
        created,
        model,
        choices = new[] { new { index = 0, delta, logprobs = (object?)null, finish_reason = finish } },
    };
}
