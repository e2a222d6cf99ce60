// Long inputs: the pieces matq hands the library must give the same ids as tokenizing without those splits.
using System.Text;
using Matq.Runtime.Tokenizers;
using Microsoft.ML.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class LongTextTests
{
    private static string MultiParagraph(int paragraphs, int seed)
    {
        var rng = new Random(seed);
        var words = string.Join(" ", TokenizerFixtures.Texts).Split(' ', '\t', '\n').Where(w => w.Length > 0).ToArray();
        var sb = new StringBuilder();
        for (int p = 0; p < paragraphs; p++)
        {
            int n = rng.Next(5, 60);
            for (int w = 0; w < n; w++) sb.Append(words[rng.Next(words.Length)]).Append(rng.Next(15) == 0 ? "  " : " ");
            sb.Append(rng.Next(3) == 0 ? "\n\n" : rng.Next(2) == 0 ? " \n" : "\n");
        }
        return sb.ToString();
    }

    [Fact]
    public void SpVocabAllowsTheExactSplitBeforeSpaceMarkers() =>
        Assert.Equal('▁', new BpeWordModel(TokenizerJson.Read(File.ReadAllText(TokenizerFixtures.SpJson))).SafeSplitChar);

    [Fact]
    public void SentencePieceSplitPiecesEqualWholeLineEncoding()
    {
        // The same file with the split disabled hands each line to the library whole (quadratic, so keep it ~8 KB).
        string text = MultiParagraph(40, seed: 7);
        var split = TokenizerFixtures.Sp.Value;
        var whole = BpeTextTokenizer.ReadTokenizerJson(TokenizerFixtures.SpJson, null, allowSafeSplit: false);
        TokenizerFixtures.AssertIds(whole.Encode(text), split.Encode(text), "split vs whole");
    }

    [Fact]
    public void Gpt2PipelineEqualsTheLibrarysOwnByteLevelPipelineOnLongText()
    {
        // An independent path: Microsoft.ML.Tokenizers' ByteLevel BPE with its own regex pre-tokenizer over the
        // whole multi-paragraph text (it matched the HF fixtures when this was written).
        string text = MultiParagraph(2000, seed: 11);
        var vocab = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(TokenizerFixtures.Gpt2Encoder))!;
        var merges = File.ReadAllLines(TokenizerFixtures.Gpt2Merges).Where(l => l.Length > 0 && !l.StartsWith("#version"));
        var lib = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges, ByteLevel = true, PreTokenizer = new RegexPreTokenizer(ByteLevelPreTokenizer.Gpt2Pattern, null),
        });
        TokenizerFixtures.AssertIds(lib.EncodeToIds(text).ToArray(), TokenizerFixtures.Gpt2.Value.Encode(text), "matq vs library");
    }

    [Fact]
    public void Gpt2ParagraphChunksEqualWholeText()
    {
        // Encoding paragraph by paragraph at "\n" + letter boundaries (where no GPT-2 regex match can straddle:
        // the whitespace run ends at the newline, and the preceding char is not whitespace) equals one pass.
        string[] paragraphs = MultiParagraph(300, seed: 3).Split('\n').Select(p => p.TrimEnd()).Where(p => p.Length > 0).ToArray();
        string text = string.Join("\n", paragraphs);
        var g = TokenizerFixtures.Gpt2.Value;
        var chunks = paragraphs.Select((p, i) => i < paragraphs.Length - 1 ? p + "\n" : p);
        int[] chunked = chunks.SelectMany(c => g.Encode(c)).ToArray();
        Assert.True(paragraphs.Length > 100);
        TokenizerFixtures.AssertIds(g.Encode(text), chunked, "chunked vs whole");
    }
}
