// Contract: makes untrusted text (tensor names, metadata keys and values read from a file) safe to put into a
// one-line MatqException message or a terminal: control characters, line/paragraph separators, bidi overrides,
// lone surrogates and the backslash are escaped in a visible form (\x1B, \n, \u2028, \\), and the result is cut
// to MaxChars characters with "…" appended. Clean text passes through unchanged.
using System.Globalization;
using System.Text;

namespace Matq;

public static class SafeText
{
    /// <summary>Default bound on the escaped text's length (the quotes and the ellipsis not counted).</summary>
    public const int MaxChars = 200;

    /// <summary><paramref name="text"/> escaped and bounded, in single quotes: <c>'model.layers.0\x1B[31m'</c>.</summary>
    public static string Quote(string? text, int maxChars = MaxChars) => "'" + Escape(text, maxChars) + "'";

    /// <summary><paramref name="text"/> escaped and bounded, without quotes (null reads as "null").</summary>
    public static string Escape(string? text, int maxChars = MaxChars)
    {
        if (text is null) return "null";
        if (maxChars < 1) maxChars = 1;
        if (text.Length <= maxChars && !NeedsEscape(text)) return text;
        var sb = new StringBuilder(Math.Min(text.Length, maxChars) + 8);
        for (int i = 0; i < text.Length; i++)
        {
            if (sb.Length >= maxChars) return sb.Append('…').ToString();
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb.Append(c).Append(text[++i]);
                continue;
            }
            if (!IsUnsafe(c)) { sb.Append(c); continue; }
            switch (c)
            {
                case '\\': sb.Append(@"\\"); break;
                case '\n': sb.Append(@"\n"); break;
                case '\r': sb.Append(@"\r"); break;
                case '\t': sb.Append(@"\t"); break;
                default: sb.Append(Visible(c)); break;
            }
        }
        return sb.ToString();
    }

    /// <summary>True when <paramref name="text"/> holds a character Escape would rewrite (a lone surrogate included).</summary>
    public static bool NeedsEscape(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (IsUnsafe(c)) return true;
        }
        return false;
    }

    /// <summary>\xNN (up to U+00FF) or \uNNNN: how an unsafe character is shown.</summary>
    public static string Visible(char c) => c <= 0xFF
        ? @"\x" + ((int)c).ToString("X2", CultureInfo.InvariantCulture)
        : @"\u" + ((int)c).ToString("X4", CultureInfo.InvariantCulture);

    /// <summary>C0/C1 controls and DEL, U+2028/U+2029, bidi embeddings/overrides/isolates, BOM, lone surrogates, the backslash.</summary>
    public static bool IsUnsafe(char c) =>
        c < 0x20 || c is >= '\x7F' and <= '\x9F' || c == '\\'
        || c is '\u2028' or '\u2029' or (>= '\u202A' and <= '\u202E') or (>= '\u2066' and <= '\u2069') or '\u200E' or '\u200F' or '\uFEFF'
        || char.IsSurrogate(c);
}
