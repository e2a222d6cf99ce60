// The pipeline steps on small closed-form cases: Split behaviours, per-code-point regex matching, unk/fuse_unk,
// added-token stripping, NFC.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class PipelineStepTests
{
    private static string[] Split(string behavior, string text, bool invert = false) => Split(Enum.Parse<SplitBehavior>(behavior), text, invert);

    private static string[] Split(SplitBehavior behavior, string text, bool invert = false)
    {
        var into = new List<Piece>();
        new SplitPreTokenizer(new Regex("-"), behavior, invert).Split(new Piece(text, true), into);
        return into.Select(p => p.Text).ToArray();
    }

    [Theory]   // HF's SplitDelimiterBehavior on "a-b--c" with delimiter '-'
    [InlineData("Removed", "a|b|c")]
    [InlineData("Isolated", "a|-|b|-|-|c")]
    [InlineData("MergedWithPrevious", "a-|b-|-|c")]
    [InlineData("MergedWithNext", "a|-b|-|-c")]
    [InlineData("Contiguous", "a|-|b|--|c")]
    public void SplitBehavioursFollowHf(string behavior, string expected) =>
        Assert.Equal(expected, string.Join("|", Split(behavior, "a-b--c")));

    private const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // HF's regex steps by code point: 𝐀 (U+1D400) is a letter, 𝟎 (U+1D7CE) a digit, 😀 one non-letter.
    [Theory]
    [InlineData("x\U0001D400's", "x\U0001D400|'s")]
    [InlineData("\U0001D7CE\U0001D7CF\U0001D7D0\U0001D7D1", "\U0001D7CE\U0001D7CF\U0001D7D0|\U0001D7D1")]
    [InlineData("\U0001F600a \U0001F600\U0001F680!", "\U0001F600a| \U0001F600\U0001F680!")]
    [InlineData("I'M \U00020000\U00020001's", "I|'M| \U00020000\U00020001|'s")]
    [InlineData("a\uD800's", "a|\uD800'|s")]   // a lone surrogate stays one UTF-16 unit (not a letter)
    public void SplitRegexMatchesPerCodePoint(string text, string expected)
    {
        var into = new List<Piece>();
        new SplitPreTokenizer(new Regex(Llama3Pattern), SplitBehavior.Isolated, invert: false).Split(new Piece(text, true), into);
        Assert.Equal(expected, string.Join("|", into.Select(p => p.Text)));
    }

    [Fact]
    public void InvertedSplitTreatsTheGapsAsDelimiters() =>
        Assert.Equal("-|-|-", string.Join("|", Split(SplitBehavior.Removed, "a-b-c-", invert: true)));

    private static TextTokenizer SpWith(Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(TokenizerFixtures.SpJson))!.AsObject();
        edit(json);
        string path = Path.Combine(Path.GetTempPath(), $"matq-steps-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        try { return TextTokenizer.FromTokenizerJson(path); }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData(true, new[] { 1, 264, 0, 28726 })]       // "▁a", one fused <unk> for "\t\t", "b"
    [InlineData(false, new[] { 1, 264, 0, 0, 28726 })]
    public void UnknownCharsWithoutByteFallbackBecomeUnk(bool fuse, int[] expected)
    {
        var t = SpWith(j => { j["model"]!["byte_fallback"] = false; j["model"]!["fuse_unk"] = fuse; });
        TokenizerFixtures.AssertIds(expected, t.Encode("a\t\tb"), "unk");
    }

    [Fact]
    public void AddedTokensMatchInRawTextAndStripWhenAsked()
    {
        // The fixture lists </s> (id 2) as a special added token; make it swallow whitespace on its left.
        var t = SpWith(j => j["added_tokens"]!.AsArray().Single(a => (string?)a!["content"] == "</s>")!["lstrip"] = true);
        // "a </s>b": lstrip swallows the space before </s>; each side is normalized alone, so "b" gets its own '▁'.
        TokenizerFixtures.AssertIds([1, 264, 2, 287], t.Encode("a </s>b"), "added token");
        Assert.Equal(287, t.Encode("b", addSpecialTokens: false).Single());   // "▁b"
    }

    [Fact]
    public void NfcNormalizerComposesWithoutIcu()
    {
        var nfc = new NfcNormalizer();
        Assert.Equal("café 東京 🚀", nfc.Apply("café 東京 🚀"));
        Assert.Equal("caf\u00E9", nfc.Apply("cafe\u0301"));
    }
}
