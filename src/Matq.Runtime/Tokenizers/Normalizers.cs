// tokenizer.json "normalizer" steps that matq supports: Prepend, Replace, NFC and Sequence of them. Each maps
// one text segment (the text between added tokens) to its normalized form, exactly as HF tokenizers does.
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Runtime.Tokenizers;

internal abstract class NormalizerStep
{
    public const string Supported = "Prepend, Replace, NFC, Sequence";

    public abstract string Describe();
    public abstract string Apply(string text);

    /// <summary>The step for a "normalizer" JSON value; null for JSON null (no normalization).</summary>
    public static NormalizerStep? Parse(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Null) return null;
        string type = TokenizerJson.Type(e, "normalizer");
        return type switch
        {
            "Prepend" => new PrependNormalizer(TokenizerJson.Str(e, "prepend", "normalizer Prepend")),
            "Replace" => new ReplaceNormalizer(TokenizerJson.Pattern(e, "normalizer Replace"),
                                               TokenizerJson.Str(e, "content", "normalizer Replace")),
            "NFC" => new NfcNormalizer(),
            "Sequence" => new SequenceNormalizer(TokenizerJson.Arr(e, "normalizers", "normalizer Sequence")
                .Select(x => Parse(x) ?? throw TokenizerJson.Bad("normalizer Sequence holds a null step")).ToArray()),
            _ => throw TokenizerJson.Unsupported("normalizer", type, Supported),
        };
    }
}

internal sealed class PrependNormalizer(string prefix) : NormalizerStep
{
    public override string Describe() => $"Prepend('{prefix}')";
    // HF prepends only to non-empty text, so "" stays "" (and encodes to BOS alone).
    public override string Apply(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer(Regex pattern, string content) : NormalizerStep
{
    public override string Describe() => $"Replace('{pattern}'→'{content}')";
    public override string Apply(string text) => pattern.Replace(text, content);
}

internal sealed class SequenceNormalizer(NormalizerStep[] steps) : NormalizerStep
{
    public override string Describe() => string.Join("+", steps.Select(s => s.Describe()));
    public override string Apply(string text)
    {
        foreach (var s in steps) text = s.Apply(text);
        return text;
    }
}

/// <summary>Unicode NFC by <see cref="ManagedNfc"/> (not string.Normalize: see ManagedNfc for why).</summary>
internal sealed class NfcNormalizer : NormalizerStep
{
    public override string Describe() => "NFC";
    public override string Apply(string text) => ManagedNfc.Normalize(text);
}
