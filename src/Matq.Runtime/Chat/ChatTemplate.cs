// Contract: a model's chat template as transformers applies it (apply_chat_template with tokenize=False): the Jinja text
// from a tokenizer folder (chat_template.jinja, else tokenizer_config.json's "chat_template": a string, or a list of
// {name, template} where "default" is used) or from a file the user names, rendered with messages, tools (None when
// there are none), documents (None), add_generation_prompt, the special tokens tokenizer_config.json names (bos_token,
// eos_token, unk_token, pad_token) and any extra keyword variables (enable_thinking, date_string, ...).
using System.Text.Json;

namespace Matq.Runtime.Chat;

public sealed class ChatTemplate
{
    public const string ConfigFile = "tokenizer_config.json";
    public const string JinjaFile = "chat_template.jinja";
    public const string GenerationConfigFile = "generation_config.json";

    private readonly Dictionary<string, object?> _specialTokens;

    public JinjaTemplate Template { get; }
    /// <summary>Where the template text came from (a file path, or "folder/tokenizer_config.json").</summary>
    public string Source { get; }
    /// <summary>The end-of-sequence text tokenizer_config.json names (a turn's end for most instruct models), or null.</summary>
    public string? EosToken => _specialTokens.GetValueOrDefault("eos_token") as string;
    public string? BosToken => _specialTokens.GetValueOrDefault("bos_token") as string;
    /// <summary>
    /// Ids that end the assistant's turn: generation_config.json's eos_token_id (an id or a list) next to the template's
    /// tokenizer files, e.g. Phi-3's &lt;|end|&gt; or Gemma's &lt;end_of_turn&gt;; empty when there is none.
    /// </summary>
    public IReadOnlyList<int> EndIds { get; init; } = [];

    public ChatTemplate(string text, string source, IReadOnlyDictionary<string, string>? specialTokens = null)
    {
        Source = source;
        Template = JinjaTemplate.Parse(text, source);
        _specialTokens = (specialTokens ?? new Dictionary<string, string>()).ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
    }

    /// <summary>The template of a tokenizer folder, or null with the reason when it has none.</summary>
    public static (ChatTemplate? Template, string? Problem) FromFolder(string folder)
    {
        string config = Path.Combine(folder, ConfigFile), jinja = Path.Combine(folder, JinjaFile);
        var tokens = File.Exists(config) ? SpecialTokens(config) : new Dictionary<string, string>();
        var endIds = EndOfTurnIds(folder);
        if (File.Exists(jinja)) return (new ChatTemplate(ReadText(jinja), jinja, tokens) { EndIds = endIds }, null);
        if (!File.Exists(config)) return (null, $"{SafeText.Quote(folder)} has no {ConfigFile} (nor {JinjaFile})");
        using var doc = ParseJson(config);
        if (!doc.RootElement.TryGetProperty("chat_template", out var t) || t.ValueKind == JsonValueKind.Null)
            return (null, $"{SafeText.Quote(config)} has no chat_template");
        string text = t.ValueKind switch
        {
            JsonValueKind.String => t.GetString()!,
            JsonValueKind.Array => NamedTemplate(t, config),
            _ => throw new MatqException($"{SafeText.Quote(config)}: chat_template is a JSON {t.ValueKind.ToString().ToLowerInvariant()}; it must be a string or a list of {{\"name\", \"template\"}}"),
        };
        return (new ChatTemplate(text, config, tokens) { EndIds = endIds }, null);
    }

    /// <summary>A template file the user names (--template); special tokens from <paramref name="tokenizerFolder"/> when given.</summary>
    public static ChatTemplate FromFile(string path, string? tokenizerFolder)
    {
        if (!File.Exists(path)) throw new MatqException($"--template {SafeText.Quote(path)} does not exist: give a Jinja chat-template file");
        string? config = tokenizerFolder is null ? null : Path.Combine(tokenizerFolder, ConfigFile);
        return new ChatTemplate(ReadText(path), path, config is not null && File.Exists(config) ? SpecialTokens(config) : null)
        {
            EndIds = tokenizerFolder is null ? [] : EndOfTurnIds(tokenizerFolder),
        };
    }

    /// <summary>The prompt text for <paramref name="messages"/> (each a mapping with "role" and "content", as in the OpenAI API).</summary>
    public string Render(IReadOnlyList<TemplateDict> messages, bool addGenerationPrompt, IReadOnlyList<object?>? tools = null,
        IReadOnlyDictionary<string, object?>? extra = null, Func<DateTime>? now = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var vars = new Dictionary<string, object?>(_specialTokens, StringComparer.Ordinal)
        {
            ["messages"] = messages.Cast<object?>().ToList(),
            ["tools"] = tools is null ? null : tools.ToList(),
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (extra is not null) foreach (var kv in extra) vars[kv.Key] = kv.Value;
        return Template.Render(vars, now);
    }

    /// <summary>One message mapping {"role", "content"}.</summary>
    public static TemplateDict Message(string role, string content) => new() { ["role"] = role, ["content"] = content };

    private static string NamedTemplate(JsonElement list, string config)
    {
        string? first = null;
        foreach (var e in list.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("template", out var t) || t.ValueKind != JsonValueKind.String) continue;
            first ??= t.GetString();
            if (e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default") return t.GetString()!;
        }
        return first ?? throw new MatqException($"{SafeText.Quote(config)}: chat_template is a list without a {{\"name\", \"template\"}} entry");
    }

    // generation_config.json's eos_token_id: an id, a list of ids, or absent.
    private static int[] EndOfTurnIds(string folder)
    {
        string path = Path.Combine(folder, GenerationConfigFile);
        if (!File.Exists(path)) return [];
        using var doc = ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("eos_token_id", out var e)) return [];
        var items = e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().ToArray() : e.ValueKind == JsonValueKind.Null ? [] : [e];
        return items.Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int id) && id >= 0 ? id
            : throw new MatqException($"{SafeText.Quote(path)}: eos_token_id holds {SafeText.Escape(x.GetRawText(), 40)}; it must be a token id or a list of ids")).ToArray();
    }

    // bos/eos/unk/pad as a string, or an {"content": ...} object (AddedToken form).
    private static Dictionary<string, string> SpecialTokens(string config)
    {
        using var doc = ParseJson(config);
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new MatqException($"{SafeText.Quote(config)} is not a JSON object");
        foreach (var name in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
        {
            if (!doc.RootElement.TryGetProperty(name, out var v)) continue;
            string? s = v.ValueKind == JsonValueKind.String ? v.GetString()
                : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            if (s is not null) result[name] = s;
        }
        return result;
    }

    private static JsonDocument ParseJson(string path)
    {
        try { return JsonDocument.Parse(ReadText(path)); }
        catch (JsonException e) { throw new MatqException($"{SafeText.Quote(path)} is not valid JSON ({e.Message.Split(" Path:")[0].TrimEnd('.')}); fix or replace the file"); }
    }

    private static string ReadText(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new MatqException($"{SafeText.Quote(path)} cannot be read ({e.Message})"); }
    }
}
