// Finds added tokens (e.g. "<|endoftext|>", "<s>") in raw text, leftmost-longest as HF does, so they encode to
// their own id and the text between them goes through the normalizer/pre-tokenizer/BPE pipeline.
namespace Matq.Runtime.Tokenizers;

/// <summary>A span of the input: either an added token (Id ≥ 0) or ordinary text (Id = -1).</summary>
internal readonly record struct Segment(int Start, int Length, int Id);

internal sealed class AddedTokenSplitter
{
    // Candidates grouped by first char, longest first, so a scan costs one dictionary probe per char.
    private readonly Dictionary<char, AddedToken[]> byFirstChar;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => byFirstChar.Count == 0;

    /// <summary>
    /// Splits <paramref name="text"/> into segments. Known differences from HF: all added tokens are matched in
    /// the raw text (HF matches "normalized": true tokens after normalization; the supported byte-level files
    /// have no normalizer, and SentencePiece files mark their specials "normalized": false).
    /// </summary>
    public List<Segment> Split(string text)
    {
        var segments = new List<Segment>();
        int textStart = 0;   // start of the ordinary text not yet emitted
        for (int i = 0; i < text.Length; i++)
        {
            if (!byFirstChar.TryGetValue(text[i], out var candidates)) continue;
            var match = candidates.FirstOrDefault(t => string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0
                                                       && (!t.SingleWord || IsWordBoundary(text, i, i + t.Content.Length)));
            if (match is null) continue;
            int start = i, end = i + match.Content.Length;
            // lstrip/rstrip: the token swallows the whitespace beside it.
            if (match.LStrip) while (start > textStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (match.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > textStart) segments.Add(new Segment(textStart, start - textStart, -1));
            segments.Add(new Segment(start, end - start, match.Id));
            textStart = end;
            i = end - 1;
        }
        if (textStart < text.Length) segments.Add(new Segment(textStart, text.Length - textStart, -1));
        return segments;
    }

    private static bool IsWordBoundary(string text, int start, int end) =>
        (start == 0 || !IsWordChar(text[start - 1])) && (end == text.Length || !IsWordChar(text[end]));

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';
}
