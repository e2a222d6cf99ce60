// tokenizer.json variants built from the fixtures: other spellings of the same pipelines must give the HF ids,
// and components matq does not support must fail at load with a message naming the component and type.
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class TokenizerJsonVariantTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("matq-tok-").FullName;
    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static JsonObject SpJson() => JsonNode.Parse(File.ReadAllText(TokenizerFixtures.SpJson))!.AsObject();

    private TextTokenizer Load(JsonObject json)
    {
        string path = Path.Combine(dir, $"t{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        return TextTokenizer.FromTokenizerJson(path);
    }

    // GPT-2's files restated as a tokenizer.json, with the given pre-tokenizer.
    private static JsonObject Gpt2Json(JsonNode preTokenizer)
    {
        var vocab = JsonNode.Parse(File.ReadAllText(TokenizerFixtures.Gpt2Encoder))!;
        var merges = new JsonArray(File.ReadAllLines(TokenizerFixtures.Gpt2Merges)
            .Where(l => l.Length > 0 && !l.StartsWith("#version"))
            .Select(l => (JsonNode)new JsonArray(l.Split(' ')[0], l.Split(' ')[1])).ToArray());
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 50256, ["content"] = "<|endoftext|>", ["special"] = true }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["trim_offsets"] = false },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges, ["byte_fallback"] = false },
        };
    }

    private static JsonObject ByteLevel(bool useRegex) =>
        new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = useRegex };

    [Fact]
    public void ByteLevelTokenizerJsonWithPairMergesMatchesGpt2Ids()
    {
        var t = Load(Gpt2Json(ByteLevel(useRegex: true)));
        Assert.Equal("byte-level-bpe", t.Name);
        for (int i = 0; i < TokenizerFixtures.Texts.Length; i++)
            TokenizerFixtures.AssertIds(TokenizerFixtures.Gpt2Ids[i], t.Encode(TokenizerFixtures.Texts[i]), $"gpt2 tokenizer.json #{i}");
    }

    [Fact]
    public void Llama3StyleSplitThenByteLevelMatchesGpt2Ids()
    {
        // Llama 3 / Qwen2 spell the pipeline as Split(regex, Isolated) then ByteLevel without its own regex.
        var split = new JsonObject
        {
            ["type"] = "Split", ["behavior"] = "Isolated", ["invert"] = false,
            ["pattern"] = new JsonObject { ["Regex"] = ByteLevelPreTokenizer.Gpt2Pattern.ToString() },
        };
        var t = Load(Gpt2Json(new JsonObject { ["type"] = "Sequence", ["pretokenizers"] = new JsonArray(split, ByteLevel(useRegex: false)) }));
        for (int i = 0; i < TokenizerFixtures.Texts.Length; i++)
            TokenizerFixtures.AssertIds(TokenizerFixtures.Gpt2Ids[i], t.Encode(TokenizerFixtures.Texts[i]), $"split+bytelevel #{i}");
    }

    [Fact]
    public void DigitsPreTokenizerIsolatesEachDigit()
    {
        // SmolLM: Digits(individual) before ByteLevel. Each digit then stands alone: "2024" → 4 single-digit tokens.
        var digits = new JsonObject { ["type"] = "Digits", ["individual_digits"] = true };
        var t = Load(Gpt2Json(new JsonObject { ["type"] = "Sequence", ["pretokenizers"] = new JsonArray(digits, ByteLevel(useRegex: true)) }));
        var g = TokenizerFixtures.Gpt2.Value;
        int[] expected = [.. g.Encode("year"), .. g.Encode(" "), .. g.Encode("2"), .. g.Encode("0"), .. g.Encode("2"), .. g.Encode("4")];
        TokenizerFixtures.AssertIds(expected, t.Encode("year 2024"), "digits");
    }

    [Fact]
    public void PairMergesGiveTheSameIdsAsStringMerges()
    {
        var json = SpJson();
        var model = json["model"]!.AsObject();
        model["merges"] = new JsonArray(model["merges"]!.AsArray()
            .Select(m => (JsonNode)new JsonArray(m!.GetValue<string>().Split(' ')[0], m.GetValue<string>().Split(' ')[1])).ToArray());
        var t = Load(json);
        for (int i = 0; i < TokenizerFixtures.Texts.Length; i++)
            TokenizerFixtures.AssertIds(TokenizerFixtures.Llama2Ids[i], t.Encode(TokenizerFixtures.Texts[i]), $"pair merges #{i}");
    }

    [Fact]
    public void MetaspacePreTokenizerMatchesLegacyNormalizerWhereTheyAgree()
    {
        // The newer Llama/Mistral spelling: no normalizer, Metaspace(prepend always, split). It differs from the
        // legacy Prepend+Replace normalizer only for text that starts with or repeats spaces (HF does not prepend
        // '▁' before an existing one, and split isolates each '▁'), so compare on the other fixture texts.
        var json = SpJson();
        json["normalizer"] = null;
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "always", ["split"] = true };
        json["decoder"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "always", ["split"] = true };
        var t = Load(json);
        foreach (int i in new[] { 0, 1, 3, 4, 5, 6, 7 })
        {
            TokenizerFixtures.AssertIds(TokenizerFixtures.Llama2Ids[i], t.Encode(TokenizerFixtures.Texts[i]), $"metaspace #{i}");
            Assert.Equal(TokenizerFixtures.Texts[i], t.Decode(TokenizerFixtures.Llama2Ids[i]));
        }
        // "   leading": Metaspace leaves the spaces as "▁▁▁leading" (no extra '▁') and splits before each '▁', giving
        // "▁", "▁", "▁leading"; unsplit BPE would give "▁▁", "▁leading" = [259, 5374], as the legacy form does.
        int[] sp = [1, 28705, 28705, 5374];
        TokenizerFixtures.AssertIds(sp, t.Encode("   leading"), "metaspace leading spaces");
    }

    [Theory]
    [InlineData("pre_tokenizer", """{"type": "Whitespace"}""", "tokenizer.json pre_tokenizer type 'Whitespace' is not supported (supported: ByteLevel, Metaspace, Split, Digits, Sequence)")]
    [InlineData("normalizer", """{"type": "Lowercase"}""", "tokenizer.json normalizer type 'Lowercase' is not supported (supported: Prepend, Replace, NFC, Sequence)")]
    [InlineData("normalizer", """{"type": "Sequence", "normalizers": [{"type": "NFKD"}]}""", "tokenizer.json normalizer type 'NFKD' is not supported")]
    [InlineData("decoder", """{"type": "WordPiece", "prefix": "##"}""", "tokenizer.json decoder type 'WordPiece' is not supported")]
    [InlineData("post_processor", """{"type": "Custom"}""", "tokenizer.json post_processor type 'Custom' is not supported")]
    public void UnsupportedComponentsFailAtLoadNamingComponentAndType(string component, string value, string message)
    {
        var json = SpJson();
        json[component] = JsonNode.Parse(value);
        var e = Assert.Throws<MatqException>(() => Load(json));
        Assert.StartsWith(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void UnsupportedModelTypeFails()
    {
        var json = SpJson();
        json["model"] = new JsonObject { ["type"] = "Unigram", ["vocab"] = new JsonArray() };
        Assert.Equal("tokenizer.json model type 'Unigram' is not supported (supported: BPE)",
                     Assert.Throws<MatqException>(() => Load(json)).Message);
    }

    [Fact]
    public void InvalidJsonFailsWithMatqException()
    {
        string path = Path.Combine(dir, "broken.json");
        File.WriteAllText(path, "{ \"model\": ");
        Assert.StartsWith("tokenizer.json is not valid JSON", Assert.Throws<MatqException>(() => TextTokenizer.FromTokenizerJson(path)).Message);
    }
}
