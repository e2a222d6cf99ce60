// Text ↔ token ids for a model, with the same ids as HF tokenizers for the files it loads. Create one with
// Load(folder) or a From.../Create... factory; Save(folder) makes a model folder self-contained.
namespace Matq.Runtime.Tokenizers;

/// <summary>Where a tokenizer came from, which decides the files <see cref="TextTokenizer.Save"/> writes.</summary>
public enum TokenizerKind
{
    /// <summary>An HF tokenizer.json (BPE model; SentencePiece-style or byte-level).</summary>
    TokenizerJson,
    /// <summary>GPT-2's encoder.json + vocab.bpe (byte-level BPE, no BOS).</summary>
    Gpt2Files,
    /// <summary>matq's built-in byte tokenizer: ids 0..255 are UTF-8 bytes.</summary>
    Bytes,
}

public abstract class TextTokenizer
{
    public abstract TokenizerKind Kind { get; }

    /// <summary>Short family name: "sentencepiece-bpe", "byte-level-bpe", "bpe" or "bytes".</summary>
    public abstract string Name { get; }

    /// <summary>One more than the largest id the tokenizer can produce (vocab plus added tokens).</summary>
    public abstract int VocabSize { get; }

    /// <summary>The beginning-of-sequence token, if the tokenizer has one (Encode adds it only where the file says so).</summary>
    public abstract int? BosId { get; }

    /// <summary>The end-of-sequence token generation stops at, if known.</summary>
    public abstract int? EosId { get; }

    /// <summary>
    /// Token ids for <paramref name="text"/>. addSpecialTokens adds what the tokenizer's post-processor adds
    /// (BOS for Llama 2 style files, nothing for GPT-2), as HF's encode(text) does by default.
    /// </summary>
    public abstract int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>
    /// Text for <paramref name="ids"/>. skipSpecialTokens drops BOS/EOS and other special tokens (HF's
    /// skip_special_tokens=True); ids the tokenizer does not know are skipped, as HF does.
    /// </summary>
    public abstract string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true);

    /// <summary>A one-paragraph description for model cards: family, source, vocab, pipeline, special ids.</summary>
    public abstract string Describe();

    /// <summary>Writes the files that <see cref="Load"/> reads back into <paramref name="folder"/> (created if missing).</summary>
    public abstract void Save(string folder);

    public override string ToString() => $"{Name} tokenizer, vocab {VocabSize}";

    /// <summary>
    /// Loads a model folder's tokenizer, looking in order for tokenizer.json (with tokenizer_config.json for
    /// BOS/EOS if present), encoder.json + vocab.bpe, vocab.json + merges.txt, and matq_tokenizer.json — matq's
    /// marker for the built-in byte tokenizer, <c>{ "kind": "bytes", "bos_eos": true }</c> ("bos_eos" defaults to
    /// false: vocab 256, no specials). A missing tokenizer throws a MatqException listing these files.
    /// </summary>
    public static TextTokenizer Load(string folder) => TokenizerFolder.Load(folder);

    /// <summary>An HF tokenizer.json; the optional tokenizer_config.json names BOS/EOS.</summary>
    public static TextTokenizer FromTokenizerJson(string tokenizerJsonPath, string? tokenizerConfigPath = null) =>
        BpeTextTokenizer.ReadTokenizerJson(tokenizerJsonPath, tokenizerConfigPath);

    /// <summary>GPT-2 byte-level BPE from its encoder.json (token → id) and vocab.bpe (merges, rank order).</summary>
    public static TextTokenizer FromGpt2Files(string encoderJsonPath, string vocabBpePath) =>
        BpeTextTokenizer.ReadGpt2Files(encoderJsonPath, vocabBpePath);

    /// <summary>
    /// The built-in byte tokenizer: ids 0..255 are the UTF-8 bytes of the text. With BOS/EOS, 256 = BOS (added by
    /// Encode) and 257 = EOS (never added; generation stops on it), so VocabSize is 258; without, 256.
    /// </summary>
    public static TextTokenizer CreateBytes(bool withBosEos = false) => new ByteTextTokenizer(withBosEos);
}
