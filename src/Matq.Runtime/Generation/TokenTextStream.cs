// Contract: turns generated token ids into text as they arrive. The whole continuation is decoded after each id and only
// the new characters are released; a trailing U+FFFD (a multi-byte character cut in half by a byte or BPE token) is held
// back until its remaining bytes arrive, and Finish releases what is left. With stop sequences (OpenAI `stop`) the text
// ends just before the first occurrence of any of them, and a tail that could still grow into one is held back, so the
// released pieces always concatenate to the final text.
using Matq.Runtime.Tokenizers;

namespace Matq.Runtime.Generation;

public sealed class TokenTextStream
{
    private readonly TextTokenizer _tokenizer;
    private readonly string[] _stops;
    private readonly List<int> _ids = new();
    private string _released = "";

    public TokenTextStream(TextTokenizer tokenizer, IReadOnlyList<string>? stops = null)
    {
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _stops = (stops ?? []).ToArray();
        if (_stops.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop sequences must be non-empty", nameof(stops));
    }

    /// <summary>The text released so far (after Finish: the whole continuation, cut before a stop sequence).</summary>
    public string Text => _released;

    /// <summary>Ids seen (every id given to Add, including the one that completed a stop sequence).</summary>
    public int TokenCount => _ids.Count;

    /// <summary>True once a stop sequence has appeared; later ids are ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds one generated id; returns the text it releases ("" when it only extends a held-back tail).</summary>
    public string Add(int id)
    {
        if (Stopped) return "";
        _ids.Add(id);
        return Release(final: false);
    }

    /// <summary>Releases whatever is still held back (a trailing U+FFFD, a partial stop sequence that never completed).</summary>
    public string Finish() => Stopped ? "" : Release(final: true);

    private string Release(bool final)
    {
        var text = _tokenizer.Decode(_ids.ToArray());
        int upto = text.Length;
        if (!final) while (upto > 0 && text[upto - 1] == '\uFFFD') upto--;
        var ready = text[..upto];
        int cut = FirstStop(ready);
        if (cut >= 0)
        {
            Stopped = true;
            upto = cut;
        }
        else if (!final) upto -= HeldStopPrefix(ready);
        if (upto <= _released.Length) return "";
        var piece = text[_released.Length..upto];
        _released = text[..upto];
        return piece;
    }

    // Index of the earliest stop sequence in text, or −1.
    private int FirstStop(string text)
    {
        int first = -1;
        foreach (var s in _stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (first < 0 || i < first)) first = i;
        }
        return first;
    }

    // Length of the longest suffix of text that is a proper prefix of a stop sequence (it may still complete one).
    private int HeldStopPrefix(string text)
    {
        int hold = 0;
        foreach (var s in _stops)
            for (int n = Math.Min(s.Length - 1, text.Length); n > hold; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(s.AsSpan(0, n))) { hold = n; break; }
        return hold;
    }
}
