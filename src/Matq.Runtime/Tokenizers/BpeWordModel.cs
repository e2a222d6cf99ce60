// The BPE model step: ids for one pre-tokenized piece. Microsoft.ML.Tokenizers' BpeTokenizer runs the merge loop;
// this class adds what HF's BPE model does around it (ignore_merges, byte fallback, unk and fuse_unk).
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Matq.Runtime.Tokenizers;

internal sealed class BpeWordModel
{
    private readonly BpeTokenizer bpe;
    private readonly Dictionary<string, int> vocab;
    private readonly bool[] knownBmp = new bool[65536];   // BMP chars whose one-char string is a vocab token
    private readonly HashSet<int> knownAstral = [];       // the same for code points above U+FFFF
    private readonly int[] byteIds;                  // "<0xHH>" ids, -1 where absent; all -1 without byte fallback
    private readonly int unkId;                      // -1: no unk token, unknown chars are dropped (as HF does)
    private readonly bool byteFallback, fuseUnk, ignoreMerges;

    /// <summary>
    /// '▁' when splitting a piece before each '▁' that follows a non-'▁' char is exact, else null. The library's
    /// merge loop is quadratic in piece length (1M chars took minutes), and SentencePiece-style files without a
    /// pre-tokenizer hand it whole lines. Exactness: if every vocab token holds '▁' only as its first char or
    /// holds nothing but '▁', no token can span such a position, so no merge crosses it, and BPE on the two
    /// sides separately applies the same merges in the same relative order.
    /// </summary>
    internal char? SafeSplitChar { get; }

    public BpeWordModel(BpeSpec spec, bool allowSafeSplit = true)
    {
        vocab = spec.Vocab;
        foreach (var (l, r) in spec.Merges)
            if (l.Contains(' ') || r.Contains(' '))
                throw new MatqException($"tokenizer.json merge [\"{l}\", \"{r}\"] has a token with a space, which Microsoft.ML.Tokenizers' merge list cannot hold; use a tokenizer whose vocabulary encodes spaces (byte-level 'Ġ' or SentencePiece '▁')");
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = spec.Merges.Select(m => m.Left + " " + m.Right) });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new MatqException($"tokenizer BPE vocab/merges were rejected by Microsoft.ML.Tokenizers ({e.Message}); check that every merge's parts and result are vocab tokens", e);
        }

        foreach (var token in vocab.Keys)
            if (token.Length == 1) knownBmp[token[0]] = true;
            else if (token.Length == 2 && char.IsSurrogatePair(token, 0)) knownAstral.Add(char.ConvertToUtf32(token, 0));
        byteIds = new int[256];
        for (int b = 0; b < 256; b++)
            byteIds[b] = spec.ByteFallback && vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        unkId = spec.UnkToken is { } unk && vocab.TryGetValue(unk, out int u) ? u : -1;
        byteFallback = spec.ByteFallback;
        fuseUnk = spec.FuseUnk;
        ignoreMerges = spec.IgnoreMerges;
        SafeSplitChar = allowSafeSplit && vocab.ContainsKey("▁") && vocab.Keys.All(t => IsSplitSafe(t, '▁')) ? '▁' : null;
    }

    private static bool IsSplitSafe(string token, char c)
    {
        int inner = token.IndexOf(c, 1);
        return inner < 0 || token.AsSpan().IndexOfAnyExcept(c) < 0;
    }

    public string Describe() =>
        $"{vocab.Count} vocab tokens{(byteFallback ? ", byte fallback" : "")}{(unkId >= 0 ? $", unk {unkId}" : "")}{(ignoreMerges ? ", ignore_merges" : "")}";

    /// <summary>Appends the ids of one piece (already normalized, pre-tokenized and, if byte-level, mapped).</summary>
    public void Encode(string piece, List<int> ids)
    {
        if (piece.Length == 0) return;
        if (ignoreMerges && vocab.TryGetValue(piece, out int whole)) { ids.Add(whole); return; }
        if (SafeSplitChar is not { } c) { EncodeKnownRuns(piece, ids); return; }
        int start = 0;
        for (int i = 1; i < piece.Length; i++)
        {
            if (piece[i] == c && piece[i - 1] != c)
            {
                EncodeKnownRuns(piece[start..i], ids);
                start = i;
            }
        }
        EncodeKnownRuns(start == 0 ? piece : piece[start..], ids);
    }

    // HF's BPE starts from one symbol per char: a vocab char, else its "<0xHH>" bytes (byte fallback, only if all
    // exist), else unk (consecutive unks fused when fuse_unk), else nothing. No merge can involve a byte or unk
    // symbol, so the runs of vocab chars between them are encoded independently by the library.
    private void EncodeKnownRuns(string text, List<int> ids)
    {
        int runStart = 0;
        bool lastWasUnk = false;
        for (int i = 0; i < text.Length;)
        {
            int width = char.IsSurrogatePair(text, i) ? 2 : 1;
            if (width == 1 ? knownBmp[text[i]] : knownAstral.Contains(char.ConvertToUtf32(text[i], text[i + 1]))) { i += width; continue; }

            if (i > runStart) { Merge(text, runStart, i, ids); lastWasUnk = false; }
            if (!TryAddBytes(text.AsSpan(i, width), ids))
            {
                if (unkId >= 0 && !(fuseUnk && lastWasUnk)) ids.Add(unkId);
                lastWasUnk = unkId >= 0;
            }
            else lastWasUnk = false;
            i += width;
            runStart = i;
        }
        if (runStart < text.Length) Merge(text, runStart, text.Length, ids);
    }

    private bool TryAddBytes(ReadOnlySpan<char> ch, List<int> ids)
    {
        if (!byteFallback) return false;
        Span<byte> utf8 = stackalloc byte[4];
        int n = Encoding.UTF8.GetBytes(ch, utf8);   // a lone surrogate becomes EF BF BD, as Rust strings cannot hold one
        for (int k = 0; k < n; k++) if (byteIds[utf8[k]] < 0) return false;
        for (int k = 0; k < n; k++) ids.Add(byteIds[utf8[k]]);
        return true;
    }

    private void Merge(string text, int start, int end, List<int> ids)
    {
        string run = start == 0 && end == text.Length ? text : text[start..end];
        if (run.Length <= CachedRunLength && cache.TryGetValue(run, out int[]? hit)) { ids.AddRange(hit); return; }
        // considerPreTokenization: false makes the library treat the run as one word (its default pre-tokenizer
        // would split at non-word chars such as '▁').
        int[] merged = [.. bpe.EncodeToIds(run, considerPreTokenization: false, considerNormalization: false)];
        if (run.Length <= CachedRunLength && cache.Count < CacheCapacity) cache.TryAdd(run, merged);
        ids.AddRange(merged);
    }

    // Natural text repeats its words, so short runs are cached (as HF's BPE does); bounded so that a corpus of
    // unique strings cannot grow it without limit. Concurrent: one tokenizer may serve several data loaders.
    private const int CachedRunLength = 64, CacheCapacity = 200_000;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);
}
