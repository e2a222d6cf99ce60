// tokenizer.json "normalizer" steps that matq supports: Prepend, Replace, NFC and Sequence of them. Each maps
// one text segment (the text between added tokens) to its normalized form, exactly as HF tokenizers does.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Loading.Tokenizers;

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

/// <summary>
/// Unicode NFC. Under InvariantGlobalization (this repo's setting) .NET's string.Normalize silently returns its
/// input for non-ASCII text, so this step then accepts only text it can prove NFC leaves unchanged and throws
/// for the rest instead of producing ids that differ from HF.
/// </summary>
internal sealed class NfcNormalizer : NormalizerStep
{
    private static readonly bool RuntimeComposes = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9";

    public override string Describe() => "NFC";

    public override string Apply(string text)
    {
        if (RuntimeComposes) return text.Normalize(NormalizationForm.FormC);
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] < 0x300) continue;                        // Latin-1 and Latin Extended: always NFC
            int cp = char.IsSurrogatePair(text, i) ? char.ConvertToUtf32(text[i], text[++i]) : text[i];
            if (!IsNfcStable(cp))
                throw new MatqException($"tokenizer.json normalizer NFC: the text holds U+{cp:X4}, which needs Unicode " +
                    "normalization tables that this process lacks (InvariantGlobalization=true); build with " +
                    "InvariantGlobalization=false and ICU installed, or pre-normalize the text to NFC");
        }
        return text;
    }

    // Conservative: true only for code points that NFC can never change or compose with a neighbour.
    // Combining marks (Mn/Mc) may reorder or compose; the ranges hold Hangul jamo, Indic/Tibetan/Balinese
    // composing letters, Greek singletons and CJK compatibility ideographs.
    private static bool IsNfcStable(int cp)
    {
        if (cp is >= 0xFE00 and <= 0xFE0F or >= 0xE0100 and <= 0xE01EF) return true;   // variation selectors
        var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
        if (cat is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark) return false;
        return cp is not (>= 0x0340 and <= 0x0344 or 0x0374 or 0x037E or 0x0387 or >= 0x0900 and <= 0x0DFF
            or >= 0x0F00 and <= 0x0FFF or >= 0x1100 and <= 0x11FF or >= 0x1B00 and <= 0x1B7F
            or >= 0x1F00 and <= 0x1FFF or 0x2000 or 0x2001 or 0x2126 or 0x212A or 0x212B or 0x2329 or 0x232A
            or 0x2ADC or >= 0xF900 and <= 0xFAFF or >= 0xFB1D and <= 0xFB4F or >= 0x1D15E and <= 0x1D1C0
            or >= 0x2F800 and <= 0x2FA1F);
    }
}
