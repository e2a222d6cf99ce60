// The built-in byte tokenizer: exact round trips for any valid string, U+FFFD for invalid UTF-8, BOS/EOS ids.
using System.Text;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class ByteTextTokenizerTests
{
    // Random strings over ASCII, Latin-1, CJK, emoji (surrogate pairs), combining marks and control chars.
    private static string RandomText(Random rng)
    {
        var sb = new StringBuilder();
        int n = rng.Next(0, 40);
        for (int i = 0; i < n; i++)
        {
            int cp = rng.Next(6) switch
            {
                0 => rng.Next(0, 0x80),
                1 => rng.Next(0x80, 0x800),
                2 => rng.Next(0x4E00, 0x9FFF),
                3 => rng.Next(0x1F300, 0x1FAFF),
                4 => rng.Next(0x300, 0x370),
                _ => rng.Next(0x10000, 0x10FFFF),
            };
            if (cp is >= 0xD800 and <= 0xDFFF) cp = 'x';
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RoundTripsArbitraryUnicode(bool withBosEos)
    {
        var t = TextTokenizer.CreateBytes(withBosEos);
        var rng = new Random(1234);
        for (int k = 0; k < 2000; k++)
        {
            string s = RandomText(rng);
            int[] ids = t.Encode(s);
            Assert.Equal(Encoding.UTF8.GetByteCount(s) + (withBosEos ? 1 : 0), ids.Length);
            Assert.All(ids, id => Assert.InRange(id, 0, t.VocabSize - 1));
            Assert.Equal(s, t.Decode(ids));
        }
    }

    [Fact]
    public void IdsAreUtf8BytesAndBosComesFirst()
    {
        var t = TextTokenizer.CreateBytes(withBosEos: true);
        Assert.Equal([256, 0x68, 0xC3, 0xA9], t.Encode("hé"));
        Assert.Equal([0x68, 0xC3, 0xA9], t.Encode("hé", addSpecialTokens: false));
        Assert.Equal((258, 256, 257), (t.VocabSize, t.BosId, t.EosId));
        var plain = TextTokenizer.CreateBytes();
        Assert.Equal((256, (int?)null, (int?)null), (plain.VocabSize, plain.BosId, plain.EosId));
        Assert.Equal("bytes", plain.Name);
    }

    [Fact]
    public void InvalidUtf8DecodesToReplacementChars()
    {
        var t = TextTokenizer.CreateBytes(withBosEos: true);
        Assert.Equal("a\uFFFDb", t.Decode([0x61, 0xFF, 0x62]));
        // A truncated 3-byte sequence (E6 97 of "日") is one maximal invalid subpart → one U+FFFD.
        Assert.Equal("\uFFFDz", t.Decode([0xE6, 0x97, 0x7A]));
        // Specials split byte runs; skipped by default, shown as <s>/</s> otherwise; unknown ids are skipped.
        Assert.Equal("é", t.Decode([256, 0xC3, 0xA9, 257, 999]));
        Assert.Equal("<s>é</s>", t.Decode([256, 0xC3, 0xA9, 257], skipSpecialTokens: false));
    }

    [Fact]
    public void LoneSurrogateEncodesAsReplacementChar()
    {
        var t = TextTokenizer.CreateBytes();
        Assert.Equal([0xEF, 0xBF, 0xBD], t.Encode("\uD800"));
    }
}
