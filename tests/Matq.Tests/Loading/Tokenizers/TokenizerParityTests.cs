// Exact id parity with HF tokenizers 0.23.2 for the fixture files, and decode(encode(t)) round trips.
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class TokenizerParityTests
{
    private static readonly string[] Texts = TokenizerFixtures.Texts;

    [Theory]
    [MemberData(nameof(TokenizerFixtures.TextIndices), MemberType = typeof(TokenizerFixtures))]
    public void SentencePieceBpeMatchesHf(int i) =>
        TokenizerFixtures.AssertIds(TokenizerFixtures.Llama2Ids[i], TokenizerFixtures.Sp.Value.Encode(Texts[i]), $"llama2 text #{i}");

    [Theory]
    [MemberData(nameof(TokenizerFixtures.TextIndices), MemberType = typeof(TokenizerFixtures))]
    public void Gpt2BpeMatchesHf(int i) =>
        TokenizerFixtures.AssertIds(TokenizerFixtures.Gpt2Ids[i], TokenizerFixtures.Gpt2.Value.Encode(Texts[i]), $"gpt2 text #{i}");

    [Theory]
    [MemberData(nameof(TokenizerFixtures.TextIndices), MemberType = typeof(TokenizerFixtures))]
    public void Gpt2DecodeRoundTripsExactly(int i) =>
        Assert.Equal(Texts[i], TokenizerFixtures.Gpt2.Value.Decode(TokenizerFixtures.Gpt2Ids[i]));

    // HF's Llama-2 decoder (Replace ▁→' ', ByteFallback, Fuse, Strip one leading ' ') undoes the prepended ▁, and
    // every fixture text is covered by vocab or byte-fallback tokens, so skipping <s> gives the text back.
    [Theory]
    [MemberData(nameof(TokenizerFixtures.TextIndices), MemberType = typeof(TokenizerFixtures))]
    public void SentencePieceDecodeRoundTrips(int i) =>
        Assert.Equal(Texts[i], TokenizerFixtures.Sp.Value.Decode(TokenizerFixtures.Llama2Ids[i]));

    [Fact]
    public void SentencePieceDecodeKeepsBosWhenAskedLikeHf()
    {
        // HF: decode([1, ...Hello...], skip_special_tokens=False) == "<s> Hello, world!" — the Strip step only
        // removes a leading space, and after fusing the string starts with "<s>".
        Assert.Equal("<s> Hello, world!", TokenizerFixtures.Sp.Value.Decode(TokenizerFixtures.Llama2Ids[0], skipSpecialTokens: false));
    }

    [Fact]
    public void ByteFallbackTokensDecodeToTheirBytesAndInvalidRunsToReplacementChars()
    {
        var sp = TokenizerFixtures.Sp.Value;
        // "<0x09>" is id 12 (tab) and "<0x0A>" id 13 in this vocab: 3 specials + byte value.
        Assert.Equal("a\tb", sp.Decode([1, 28708, 12, 28726]));
        // "é" = C3 A9 as two byte tokens fuses to one char; a lone C3 is invalid: one U+FFFD per byte (HF's rule).
        Assert.Equal("é", sp.Decode([3 + 0xC3, 3 + 0xA9]));
        Assert.Equal("\uFFFD\uFFFDx", sp.Decode([3 + 0xC3, 3 + 0xC3, 28744]));
    }

    [Fact]
    public void DescribeNamesFamilyAndSpecials()
    {
        string sp = TokenizerFixtures.Sp.Value.Describe(), gpt2 = TokenizerFixtures.Gpt2.Value.Describe();
        Assert.StartsWith("sentencepiece-bpe", sp);
        Assert.Contains("BOS <s> = 1", sp);
        Assert.Contains("EOS </s> = 2", sp);
        Assert.StartsWith("byte-level-bpe", gpt2);
        Assert.Contains("EOS <|endoftext|> = 50256", gpt2);
        Assert.Equal(32000, TokenizerFixtures.Sp.Value.VocabSize);
        Assert.Equal(50257, TokenizerFixtures.Gpt2.Value.VocabSize);
    }

    [Fact]
    public void Gpt2SplitsOutEndOfTextAndAddsNoBos()
    {
        var g = TokenizerFixtures.Gpt2.Value;
        int[] expected = [.. g.Encode("Hello"), 50256, .. g.Encode(" world")];
        TokenizerFixtures.AssertIds(expected, g.Encode("Hello<|endoftext|> world"), "added token split");
        Assert.Equal("Hello world", g.Decode(expected));
        Assert.Equal("Hello<|endoftext|> world", g.Decode(expected, skipSpecialTokens: false));
        Assert.Equal(g.Encode("x", addSpecialTokens: false), g.Encode("x"));
    }
}
