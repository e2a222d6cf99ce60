// GPT-2's reversible byte <-> printable-char table: every byte 0..255 maps to one BMP char, so byte-level
// BPE vocabularies can be stored as ordinary strings. Bytes that are printable Latin-1 map to themselves.
using System.Text;

namespace Matq.Runtime.Tokenizers;

internal static class ByteLevelAlphabet
{
    /// <summary>Byte value → its char in byte-level vocabularies (space 0x20 → 'Ġ' U+0120).</summary>
    public static readonly char[] ByteToChar = BuildTable();

    /// <summary>Inverse of <see cref="ByteToChar"/>; chars outside the alphabet are absent.</summary>
    public static readonly Dictionary<char, byte> CharToByte =
        Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    // The bytes GPT-2 keeps as themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'. Every other byte takes the next
    // unused code point from 256 up, in byte order. This is the published convention, not a choice.
    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool keeps = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = keeps ? (char)b : (char)next++;
        }
        return table;
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, each written as its alphabet char.</summary>
    public static string Map(string text)
    {
        // ASCII (most pieces) is one byte per char, so skip the UTF-8 round trip.
        if (System.Text.Ascii.IsValid(text))
            return string.Create(text.Length, text, static (chars, src) =>
            {
                for (int i = 0; i < chars.Length; i++) chars[i] = ByteToChar[src[i]];
            });
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        return string.Create(bytes.Length, bytes, static (chars, src) =>
        {
            for (int i = 0; i < chars.Length; i++) chars[i] = ByteToChar[src[i]];
        });
    }

    /// <summary>
    /// Appends the bytes a token stands for. A token with any char outside the alphabet (an added token such
    /// as "&lt;|im_start|&gt;" written with other chars) contributes its own UTF-8 instead, as HF does.
    /// </summary>
    public static void AppendBytes(string token, List<byte> into)
    {
        foreach (char c in token)
        {
            if (!CharToByte.ContainsKey(c))
            {
                into.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (char c in token) into.Add(CharToByte[c]);
    }
}
