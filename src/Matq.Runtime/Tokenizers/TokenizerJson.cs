// Reads an HF tokenizer.json into a BpeSpec: the BPE model, added tokens and the pipeline components matq
// supports. Anything else fails here, at load, with a MatqException naming the component and its type.
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Runtime.Tokenizers;

/// <summary>One entry of tokenizer.json "added_tokens" (matched in raw text before normalization).</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool SingleWord);

/// <summary>Everything a <see cref="BpeTextTokenizer"/> needs, whatever file format it came from.</summary>
internal sealed record BpeSpec(
    Dictionary<string, int> Vocab,
    List<(string Left, string Right)> Merges,
    AddedToken[] AddedTokens,
    NormalizerStep? Normalizer,
    PreTokenizerStep? PreTokenizer,
    int[] PrefixIds,
    int[] SuffixIds,
    string PostProcessor,
    DecoderStep? Decoder,
    string? UnkToken,
    bool FuseUnk,
    bool ByteFallback,
    bool IgnoreMerges);

internal static class TokenizerJson
{
    public const string SupportedPostProcessors = "TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence";

    public static BpeSpec Read(string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw Bad($"is not valid JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw Bad("has no \"model\" object");
            // Files written by old tokenizers versions omit model.type for BPE; "merges" identifies it.
            string modelType = model.TryGetProperty("type", out var mt) ? mt.GetString() ?? "" : model.TryGetProperty("merges", out _) ? "BPE" : "";
            if (modelType != "BPE") throw Unsupported("model", modelType, "BPE");
            if (model.TryGetProperty("dropout", out var d) && d.ValueKind == JsonValueKind.Number && d.GetDouble() != 0)
                throw Bad("model BPE dropout is set; matq encodes deterministically, so set \"dropout\": null");
            foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
                if (model.TryGetProperty(affix, out var a) && a.ValueKind == JsonValueKind.String && a.GetString() != "")
                    throw Bad($"model BPE {affix} is not supported (only SentencePiece-style and byte-level BPE are)");

            var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var p in Obj(model, "vocab", "model").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
            var merges = new List<(string, string)>();
            foreach (var m in Arr(model, "merges", "model"))
                merges.Add(ParseMerge(m));

            var added = root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array
                ? at.EnumerateArray().Select(t => new AddedToken(
                    Int(t, "id", "added_tokens"), Str(t, "content", "added_tokens"), Bool(t, "special", false),
                    Bool(t, "lstrip", false), Bool(t, "rstrip", false), Bool(t, "single_word", false))).ToArray()
                : [];
            var specialIds = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var a in added) specialIds[a.Content] = a.Id;   // a repeated content: the last entry wins

            var (prefix, suffix, post) = ParsePostProcessor(Prop(root, "post_processor"), specialIds, vocab);
            return new BpeSpec(vocab, merges, added,
                NormalizerStep.Parse(Prop(root, "normalizer")),
                PreTokenizerStep.Parse(Prop(root, "pre_tokenizer")),
                prefix, suffix, post,
                DecoderStep.Parse(Prop(root, "decoder")),
                model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String ? unk.GetString() : null,
                Bool(model, "fuse_unk", false), Bool(model, "byte_fallback", false), Bool(model, "ignore_merges", false));
        }
    }

    // Two on-disk forms: "a b" (tokens cannot hold spaces) and ["a", "b"] (newer files; tokens may).
    private static (string, string) ParseMerge(JsonElement m)
    {
        if (m.ValueKind == JsonValueKind.String)
        {
            string s = m.GetString()!;
            int sp = s.IndexOf(' ');
            if (sp <= 0 || sp == s.Length - 1 || s.IndexOf(' ', sp + 1) >= 0) throw Bad($"model merge \"{s}\" is not two tokens separated by one space");
            return (s[..sp], s[(sp + 1)..]);
        }
        if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
            return (m[0].GetString() ?? "", m[1].GetString() ?? "");
        throw Bad($"model merge {m.GetRawText()} is neither \"a b\" nor [\"a\", \"b\"]");
    }

    private static (int[] Prefix, int[] Suffix, string Description) ParsePostProcessor(
        JsonElement e, Dictionary<string, int> addedIds, Dictionary<string, int> vocab)
    {
        if (e.ValueKind == JsonValueKind.Null) return ([], [], "none");
        string type = Type(e, "post_processor");
        switch (type)
        {
            case "ByteLevel": return ([], [], "ByteLevel");   // only trims offsets; ids are unchanged
            case "BertProcessing":
            case "RobertaProcessing":
                // "cls": ["<s>", 0], "sep": ["</s>", 2]; a single sequence becomes cls A sep.
                return ([Arr(e, "cls", type)[1].GetInt32()], [Arr(e, "sep", type)[1].GetInt32()], type);
            case "TemplateProcessing":
            {
                var specials = Obj(e, "special_tokens", type);
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool seenSequence = false;
                foreach (var item in Arr(e, "single", type))
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    if (!item.TryGetProperty("SpecialToken", out var st)) throw Bad($"post_processor TemplateProcessing item {item.GetRawText()} is neither Sequence nor SpecialToken");
                    string name = Str(st, "id", type);
                    int[] ids = specials.TryGetProperty(name, out var sp)
                        ? Arr(sp, "ids", type).Select(x => x.GetInt32()).ToArray()
                        : addedIds.TryGetValue(name, out int id) || vocab.TryGetValue(name, out id) ? [id]
                        : throw Bad($"post_processor TemplateProcessing names special token '{name}' that the file does not define");
                    (seenSequence ? suffix : prefix).AddRange(ids);
                }
                return (prefix.ToArray(), suffix.ToArray(), "TemplateProcessing");
            }
            case "Sequence":
            {
                // Processors apply in order, so a later one wraps the ids an earlier one produced.
                int[] prefix = [], suffix = [];
                var names = new List<string>();
                foreach (var p in Arr(e, "processors", type))
                {
                    var (pp, ps, d) = ParsePostProcessor(p, addedIds, vocab);
                    prefix = [.. pp, .. prefix];
                    suffix = [.. suffix, .. ps];
                    names.Add(d);
                }
                return (prefix, suffix, string.Join("+", names));
            }
            default: throw Unsupported("post_processor", type, SupportedPostProcessors);
        }
    }

    // ---- small JSON accessors whose failures name the component ----

    public static MatqException Bad(string what) => new($"tokenizer.json {what}");

    public static MatqException Unsupported(string component, string type, string supported) =>
        new($"tokenizer.json {component} type '{type}' is not supported (supported: {supported})");

    public static JsonElement Prop(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) ? v : NullElement;   // a missing component reads as null

    private static readonly JsonElement NullElement = JsonDocument.Parse("null").RootElement.Clone();

    public static string Type(JsonElement e, string component) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : throw Bad($"{component} {e.GetRawText()} has no \"type\"");

    public static string Str(JsonElement e, string name, string component) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Bad($"{component} lacks string \"{name}\"");

    public static int Int(JsonElement e, string name, string component) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : throw Bad($"{component} lacks integer \"{name}\"");

    public static bool Bool(JsonElement e, string name, bool fallback) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;

    public static JsonElement[] Arr(JsonElement e, string name, string component) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToArray() : throw Bad($"{component} lacks array \"{name}\"");

    public static JsonElement Obj(JsonElement e, string name, string component) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Object ? v : throw Bad($"{component} lacks object \"{name}\"");

    /// <summary>A "pattern": {"String": s} (literal) or {"Regex": r} as a .NET regex.</summary>
    public static Regex Pattern(JsonElement e, string component)
    {
        var p = Obj(e, "pattern", component);
        if (p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String)
            return new Regex(Regex.Escape(s.GetString()!), RegexOptions.CultureInvariant);
        if (p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String)
        {
            try { return new Regex(r.GetString()!, RegexOptions.Compiled | RegexOptions.CultureInvariant); }
            catch (ArgumentException ex) { throw Bad($"{component} regex '{r.GetString()}' is not valid in .NET ({ex.Message})"); }
        }
        throw Bad($"{component} pattern {p.GetRawText()} is neither String nor Regex");
    }
}
