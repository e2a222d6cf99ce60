// Loading a tokenizer from a model folder (file lookup order, missing files) and saving it back self-contained.
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class TokenizerFolderTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("matq-tokdir-").FullName;
    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string Sub(string name) => Directory.CreateDirectory(Path.Combine(dir, name)).FullName;

    [Fact]
    public void LoadsTokenizerJsonWithConfigBosEos()
    {
        string f = Sub("sp");
        File.Copy(TokenizerFixtures.SpJson, Path.Combine(f, "tokenizer.json"));
        File.WriteAllText(Path.Combine(f, "tokenizer_config.json"), """{"bos_token": {"content": "<s>"}, "eos_token": "<unk>"}""");
        var t = TextTokenizer.Load(f);
        Assert.Equal(TokenizerKind.TokenizerJson, t.Kind);
        Assert.Equal((1, 0), (t.BosId, t.EosId));   // the config decides EOS, even an odd choice
        TokenizerFixtures.AssertIds(TokenizerFixtures.Llama2Ids[1], t.Encode(TokenizerFixtures.Texts[1]), "loaded sp");
    }

    [Theory]
    [InlineData("encoder.json", "vocab.bpe")]
    [InlineData("vocab.json", "merges.txt")]
    public void LoadsGpt2FilesUnderEitherNaming(string encoder, string merges)
    {
        string f = Sub(encoder);
        File.Copy(TokenizerFixtures.Gpt2Encoder, Path.Combine(f, encoder));
        File.Copy(TokenizerFixtures.Gpt2Merges, Path.Combine(f, merges));
        var t = TextTokenizer.Load(f);
        Assert.Equal(TokenizerKind.Gpt2Files, t.Kind);
        TokenizerFixtures.AssertIds(TokenizerFixtures.Gpt2Ids[3], t.Encode(TokenizerFixtures.Texts[3]), "loaded gpt2");
    }

    [Fact]
    public void EmptyFolderNamesEveryFileLookedFor()
    {
        var e = Assert.Throws<MatqException>(() => TextTokenizer.Load(Sub("empty")));
        foreach (var name in new[] { "tokenizer.json", "encoder.json + vocab.bpe", "vocab.json + merges.txt", "matq_tokenizer.json" })
            Assert.Contains(name, e.Message);
        Assert.Contains("does not exist", Assert.Throws<MatqException>(() => TextTokenizer.Load(Path.Combine(dir, "nope"))).Message);
    }

    [Fact]
    public void HalfAGpt2PairIsNamed()
    {
        string f = Sub("half");
        File.Copy(TokenizerFixtures.Gpt2Encoder, Path.Combine(f, "encoder.json"));
        Assert.Contains("has encoder.json but not vocab.bpe", Assert.Throws<MatqException>(() => TextTokenizer.Load(f)).Message);
    }

    [Fact]
    public void BadMarkerKindIsNamed()
    {
        string f = Sub("marker");
        File.WriteAllText(Path.Combine(f, "matq_tokenizer.json"), """{"kind": "chars"}""");
        Assert.Contains("kind 'chars'", Assert.Throws<MatqException>(() => TextTokenizer.Load(f)).Message);
    }

    [Fact]
    public void SaveThenLoadGivesTheSameTokenizer()
    {
        string text = string.Join("\n", TokenizerFixtures.Texts);
        foreach (var (name, t) in new[] {
            ("sp", TokenizerFixtures.Sp.Value), ("gpt2", TokenizerFixtures.Gpt2.Value),
            ("bytes", TextTokenizer.CreateBytes()), ("bytes-bos", TextTokenizer.CreateBytes(withBosEos: true)) })
        {
            string f = Path.Combine(dir, "saved-" + name);   // Save creates it
            t.Save(f);
            var back = TextTokenizer.Load(f);
            Assert.Equal((t.Kind, t.VocabSize, t.BosId, t.EosId), (back.Kind, back.VocabSize, back.BosId, back.EosId));
            Assert.Equal(t.Encode(text), back.Encode(text));
            Assert.Empty(Directory.GetFiles(f, "*.tmp-*"));
        }
        Assert.True(File.Exists(Path.Combine(dir, "saved-gpt2", "encoder.json")));
        Assert.Contains("\"bos_eos\": true", File.ReadAllText(Path.Combine(dir, "saved-bytes-bos", "matq_tokenizer.json")));
    }

    [Fact]
    public void SaveRefusesAFolderWhoseFilesWouldShadowIt()
    {
        string f = Sub("shadow");
        File.Copy(TokenizerFixtures.SpJson, Path.Combine(f, "tokenizer.json"));
        var e = Assert.Throws<MatqException>(() => TextTokenizer.CreateBytes().Save(f));
        Assert.Contains("tokenizer.json would be loaded instead", e.Message);
        Assert.False(File.Exists(Path.Combine(f, "matq_tokenizer.json")));
    }
}
