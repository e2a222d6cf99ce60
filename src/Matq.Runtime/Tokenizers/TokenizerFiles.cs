// Contract: the tokenizer file names matq reads (and copies next to an artifact), and the kind a set of them is
// recorded as in the artifact's tokenizer reference.
namespace Matq.Runtime.Tokenizers;

public static class TokenizerFiles
{
    /// <summary>
    /// Tokenizer file names copied from the source folder, and the kind each set is recorded as; generation_config.json
    /// rides along for its end-of-turn ids (eos_token_id), which chat stops on.
    /// </summary>
    public static readonly IReadOnlyList<string> Names =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
         "encoder.json", "vocab.bpe", "vocab.json", "merges.txt", "matq_tokenizer.json", "generation_config.json"];

    /// <summary>"hf-tokenizer-json", "gpt2-bpe" or "matq-bytes" from the file names present; null when none fits.</summary>
    public static string? DetectKind(IReadOnlyCollection<string> fileNames)
    {
        ArgumentNullException.ThrowIfNull(fileNames);
        bool Has(string f) => fileNames.Contains(f);
        if (Has("tokenizer.json")) return "hf-tokenizer-json";
        if ((Has("encoder.json") && Has("vocab.bpe")) || (Has("vocab.json") && Has("merges.txt"))) return "gpt2-bpe";
        if (Has("matq_tokenizer.json")) return "matq-bytes";
        return null;
    }
}
