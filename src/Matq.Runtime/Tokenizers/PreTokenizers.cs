// tokenizer.json "pre_tokenizer" steps that matq supports: ByteLevel, Metaspace, Split, Digits and Sequence.
// Each splits pieces of a normalized segment into smaller pieces (and may rewrite them) as HF tokenizers does.
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Runtime.Tokenizers;

/// <summary>A piece of text on its way to the BPE model. AtStart: it begins at offset 0 of the original text.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

internal abstract class PreTokenizerStep
{
    public const string Supported = "ByteLevel, Metaspace, Split, Digits, Sequence";

    public abstract string Describe();

    /// <summary>Appends the pieces <paramref name="piece"/> becomes to <paramref name="into"/>.</summary>
    public abstract void Split(Piece piece, List<Piece> into);

    public static PreTokenizerStep? Parse(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Null) return null;
        string type = TokenizerJson.Type(e, "pre_tokenizer");
        return type switch
        {
            "ByteLevel" => new ByteLevelPreTokenizer(TokenizerJson.Bool(e, "add_prefix_space", false),
                                                     TokenizerJson.Bool(e, "use_regex", true)),
            "Metaspace" => MetaspacePreTokenizer.FromJson(e),
            "Split" => new SplitPreTokenizer(TokenizerJson.Pattern(e, "pre_tokenizer Split"),
                                             ParseBehavior(TokenizerJson.Str(e, "behavior", "pre_tokenizer Split")),
                                             TokenizerJson.Bool(e, "invert", false)),
            // HF's Digits uses char::is_numeric (Nd, Nl, No) = .NET \p{N}.
            "Digits" => new SplitPreTokenizer(new Regex(@"\p{N}", RegexOptions.CultureInvariant),
                TokenizerJson.Bool(e, "individual_digits", false) ? SplitBehavior.Isolated : SplitBehavior.Contiguous,
                invert: false),
            "Sequence" => new SequencePreTokenizer(TokenizerJson.Arr(e, "pretokenizers", "pre_tokenizer Sequence")
                .Select(x => Parse(x) ?? throw TokenizerJson.Bad("pre_tokenizer Sequence holds a null step")).ToArray()),
            _ => throw TokenizerJson.Unsupported("pre_tokenizer", type, Supported),
        };
    }

    private static SplitBehavior ParseBehavior(string s) => Enum.TryParse<SplitBehavior>(s, out var b)
        ? b
        : throw TokenizerJson.Unsupported("pre_tokenizer Split behavior", s,
            "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>Splits at regex matches; the behaviour says what becomes of the matched (delimiter) spans.</summary>
internal sealed class SplitPreTokenizer(Regex pattern, SplitBehavior behavior, bool invert) : PreTokenizerStep
{
    public override string Describe() => $"Split({behavior}{(invert ? ", inverted" : "")})";

    private readonly bool patternHasSurrogates = pattern.ToString().Any(char.IsSurrogate);

    /// <summary>
    /// The non-empty matches of the pattern in <paramref name="text"/>, as (start, end) offsets. HF's regex (Rust's
    /// Oniguruma/regex) steps by code point, .NET's by UTF-16 unit, so \p{L}, [^...] and {1,3} see an astral char as two
    /// units (𝐀 is no letter, 𝐀's splits as 𝐀' + s). Text with surrogate pairs is therefore matched through a view with
    /// one char per code point, each astral one replaced by a BMP stand-in of the same general category (all the
    /// patterns of real tokenizer.json files test); offsets map back. A pattern that itself names astral chars keeps
    /// UTF-16 matching.
    /// </summary>
    private List<(int Start, int End)> Matches(string text)
    {
        var found = new List<(int, int)>();
        var view = patternHasSurrogates ? null : CodePointView.Create(text);
        if (view is null)
        {
            foreach (var m in pattern.EnumerateMatches(text))
                if (m.Length > 0) found.Add((m.Index, m.Index + m.Length));
            return found;
        }
        foreach (var m in pattern.EnumerateMatches(view.Value.Chars))
            if (m.Length > 0) found.Add((view.Value.Offsets[m.Index], view.Value.Offsets[m.Index + m.Length]));
        return found;
    }

    public override void Split(Piece piece, List<Piece> into)
    {
        string text = piece.Text;
        if (behavior == SplitBehavior.Isolated && !invert) { SplitIsolated(piece, into); return; }
        // Alternating spans; IsMatch marks the delimiter spans (the non-matches when inverted).
        var spans = new List<(int Start, int End, bool IsMatch)>();
        int pos = 0;
        foreach (var (start, end) in Matches(text))
        {
            if (start > pos) spans.Add((pos, start, invert));
            spans.Add((start, end, !invert));
            pos = end;
        }
        if (pos < text.Length) spans.Add((pos, text.Length, invert));

        // The folds below follow HF's SplitDelimiterBehavior: a delimiter merges into its neighbour only when
        // that neighbour is not itself a delimiter; Contiguous joins runs of delimiters.
        var merged = new List<(int Start, int End, bool IsMatch)>(spans.Count);
        bool previousMatch = false;
        switch (behavior)
        {
            case SplitBehavior.Removed: merged.AddRange(spans.Where(s => !s.IsMatch)); break;
            case SplitBehavior.Isolated: merged.AddRange(spans); break;
            case SplitBehavior.MergedWithPrevious:
                foreach (var s in spans)
                {
                    if (s.IsMatch && !previousMatch && merged.Count > 0) merged[^1] = (merged[^1].Start, s.End, false);
                    else merged.Add(s);
                    previousMatch = s.IsMatch;
                }
                break;
            case SplitBehavior.MergedWithNext:
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    var s = spans[i];
                    if (s.IsMatch && !previousMatch && merged.Count > 0) merged[^1] = (s.Start, merged[^1].End, false);
                    else merged.Add(s);
                    previousMatch = s.IsMatch;
                }
                merged.Reverse();
                break;
            case SplitBehavior.Contiguous:
                foreach (var s in spans)
                {
                    if (s.IsMatch && previousMatch && merged.Count > 0) merged[^1] = (merged[^1].Start, s.End, true);
                    else merged.Add(s);
                    previousMatch = s.IsMatch;
                }
                break;
        }
        foreach (var (start, end, _) in merged)
            into.Add(new Piece(start == 0 && end == text.Length ? text : text[start..end], piece.AtStart && start == 0));
    }

    // The byte-level hot path (GPT-2, Llama 3, Qwen2): every match and every gap becomes a piece, with no span lists.
    private void SplitIsolated(Piece piece, List<Piece> into)
    {
        string text = piece.Text;
        int pos = 0;
        foreach (var (start, end) in Matches(text))
        {
            if (start > pos) into.Add(new Piece(text[pos..start], piece.AtStart && pos == 0));
            into.Add(new Piece(end - start == text.Length ? text : text[start..end], piece.AtStart && start == 0));
            pos = end;
        }
        if (pos < text.Length) into.Add(new Piece(text[pos..], piece.AtStart && pos == 0));
    }
}

/// <summary>SentencePiece whitespace handling: ' ' → '▁', an optional leading '▁', optional split before each '▁'.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, string prependScheme, bool split) : PreTokenizerStep
{
    public static MetaspacePreTokenizer FromJson(JsonElement e)
    {
        string rep = TokenizerJson.Str(e, "replacement", "pre_tokenizer Metaspace");
        if (rep.Length != 1) throw TokenizerJson.Bad($"pre_tokenizer Metaspace replacement '{rep}' must be one char");
        // Older files carry add_prefix_space (bool) instead of prepend_scheme.
        string scheme = e.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String
            ? ps.GetString()!
            : TokenizerJson.Bool(e, "add_prefix_space", true) ? "always" : "never";
        if (scheme is not ("always" or "first" or "never"))
            throw TokenizerJson.Unsupported("pre_tokenizer Metaspace prepend_scheme", scheme, "always, first, never");
        return new MetaspacePreTokenizer(rep[0], scheme, TokenizerJson.Bool(e, "split", true));
    }

    public char Replacement => replacement;
    public bool PrependsPrefix => prependScheme != "never";

    public override string Describe() => $"Metaspace(prepend={prependScheme}, split={split})";

    public override void Split(Piece piece, List<Piece> into)
    {
        string text = piece.Text.Replace(' ', replacement);
        bool prepend = prependScheme == "always" || (prependScheme == "first" && piece.AtStart);
        if (prepend && text.Length > 0 && text[0] != replacement) text = replacement + text;
        if (!split) { into.Add(piece with { Text = text }); return; }
        int start = 0;
        for (int i = 1; i <= text.Length; i++)
        {
            // MergedWithNext: every '▁' begins a new piece.
            if (i == text.Length || text[i] == replacement)
            {
                into.Add(new Piece(text[start..i], piece.AtStart && start == 0));
                start = i;
            }
        }
    }
}

/// <summary>GPT-2 byte-level step: optional prefix space, optional GPT-2 regex split, then bytes → alphabet chars.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizerStep
{
    // The GPT-2 pattern HF's ByteLevel uses (matched per code point, see SplitPreTokenizer.Matches).
    public static readonly Regex Gpt2Pattern = new(
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static readonly SplitPreTokenizer RegexSplit = new(Gpt2Pattern, SplitBehavior.Isolated, invert: false);

    public override string Describe() => $"ByteLevel(prefix_space={addPrefixSpace}, regex={useRegex})";

    public override void Split(Piece piece, List<Piece> into)
    {
        if (addPrefixSpace && piece.Text.Length > 0 && piece.Text[0] != ' ') piece = piece with { Text = " " + piece.Text };
        int first = into.Count;
        if (useRegex) RegexSplit.Split(piece, into); else into.Add(piece);
        for (int i = first; i < into.Count; i++) into[i] = into[i] with { Text = ByteLevelAlphabet.Map(into[i].Text) };
    }
}

internal sealed class SequencePreTokenizer(PreTokenizerStep[] steps) : PreTokenizerStep
{
    public override string Describe() => string.Join("+", steps.Select(s => s.Describe()));

    public override void Split(Piece piece, List<Piece> into)
    {
        var current = new List<Piece> { piece };
        var next = new List<Piece>();
        foreach (var step in steps)
        {
            foreach (var p in current) step.Split(p, next);
            (current, next) = (next, current);
            next.Clear();
        }
        into.AddRange(current);
    }
}

/// <summary>
/// Text with one char per code point for regex matching: astral code points become a BMP char of the same Unicode
/// general category; Offsets[i] is where view char i starts in the original text (Offsets[^1] = its length).
/// </summary>
internal readonly record struct CodePointView(string Chars, int[] Offsets)
{
    // Stand-ins come from U+2C00 up (then U+0100 up): away from ASCII and from chars that case-fold to ASCII
    // (U+017F ſ → s, U+212A K → k), so a case-insensitive literal such as (?i:'s) cannot match a stand-in.
    private static readonly char[] StandIn = BuildStandIns();

    private static char[] BuildStandIns()
    {
        var table = new char[32];
        foreach (int start in new[] { 0x2C00, 0x0100 })
            for (int c = start; c < 0x10000; c++)
            {
                if (char.IsSurrogate((char)c) || c is 0x212A or 0x212B) continue;
                int cat = (int)char.GetUnicodeCategory((char)c);
                if (table[cat] == 0) table[cat] = (char)c;
            }
        return table;
    }

    /// <summary>The view of <paramref name="text"/>, or null when it holds no surrogate pair (match it as is).</summary>
    public static CodePointView? Create(string text)
    {
        int firstPair = -1;
        for (int i = 0; i + 1 < text.Length; i++)
            if (char.IsSurrogatePair(text[i], text[i + 1])) { firstPair = i; break; }
        if (firstPair < 0) return null;
        var chars = new System.Text.StringBuilder(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            offsets.Add(i);
            if (i + 1 < text.Length && char.IsSurrogatePair(text[i], text[i + 1]))
            {
                var cat = System.Globalization.CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]));
                chars.Append(StandIn[(int)cat]);
                i++;
            }
            else chars.Append(text[i]);
        }
        offsets.Add(text.Length);
        return new CodePointView(chars.ToString(), offsets.ToArray());
    }
}
