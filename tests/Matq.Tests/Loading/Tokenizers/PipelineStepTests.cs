// The pipeline steps on small closed-form cases: Split behaviours, unk/fuse_unk, added-token stripping, NFC.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Matq.Loading.Tokenizers;

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
