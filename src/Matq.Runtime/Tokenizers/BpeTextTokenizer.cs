// A BPE tokenizer with HF's pipeline: added tokens → normalizer → pre-tokenizer → BPE (Microsoft.ML.Tokenizers)
// → post-processor, and the decoder chain back. Built from tokenizer.json or GPT-2's encoder.json + vocab.bpe.
using System.Text;
using System.Text.Json;

namespace Matq.Runtime.Tokenizers;

public sealed class BpeTextTokenizer : TextTokenizer
{
    private readonly BpeSpec spec;
    private readonly BpeWordModel model;
    private readonly AddedTokenSplitter addedTokens;
    private readonly string?[] idToToken;      // id → token string (added tokens override the model vocab)
    private readonly bool[] isSpecial;
    private readonly string source;
    private readonly IReadOnlyDictionary<string, byte[]> files;   // file name → bytes, written back by Save

    private BpeTextTokenizer(BpeSpec spec, TokenizerKind kind, string source, IReadOnlyDictionary<string, byte[]> files,
                             string? bosToken, string? eosToken, bool allowSafeSplit = true)
    {
        this.spec = spec;
        Kind = kind;
        this.source = source;
        this.files = files;
        model = new BpeWordModel(spec, allowSafeSplit);
        addedTokens = new AddedTokenSplitter(spec.AddedTokens);

        int size = 1 + Math.Max(spec.Vocab.Count == 0 ? -1 : spec.Vocab.Values.Max(),
                                spec.AddedTokens.Length == 0 ? -1 : spec.AddedTokens.Max(t => t.Id));
        VocabSize = size;
        idToToken = new string?[size];
        isSpecial = new bool[size];
        foreach (var (token, id) in spec.Vocab) idToToken[id] = token;
        foreach (var t in spec.AddedTokens) { idToToken[t.Id] = t.Content; isSpecial[t.Id] = t.Special; }

        BosId = Find(bosToken) ?? (spec.PrefixIds.Length > 0 ? spec.PrefixIds[0] : (int?)null) ?? FindFirst("<s>", "<|begin_of_text|>", "<bos>");
        EosId = Find(eosToken) ?? (spec.SuffixIds.Length > 0 ? spec.SuffixIds[^1] : (int?)null) ?? FindFirst("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>");
        string pipeline = $"{spec.Normalizer?.Describe()} {spec.PreTokenizer?.Describe()} {spec.Decoder?.Describe()}";
        Name = pipeline.Contains("ByteLevel") ? "byte-level-bpe"
             : spec.ByteFallback || pipeline.Contains("Metaspace") || pipeline.Contains('▁') ? "sentencepiece-bpe"
             : "bpe";
    }

    private int? Find(string? token) =>
        token is null ? null
        : spec.AddedTokens.FirstOrDefault(t => t.Content == token)?.Id
          ?? (spec.Vocab.TryGetValue(token, out int id) ? id : null);

    private int? FindFirst(params string[] tokens) => tokens.Select(Find).FirstOrDefault(id => id is not null);

    internal static BpeTextTokenizer ReadTokenizerJson(string path, string? configPath, bool allowSafeSplit = true)
    {
        var files = new Dictionary<string, byte[]> { [TokenizerFolder.TokenizerJsonFile] = ReadFile(path, "tokenizer.json") };
        string? bos = null, eos = null;
        if (configPath is not null)
        {
            files[TokenizerFolder.ConfigFile] = ReadFile(configPath, "tokenizer_config.json");
            (bos, eos) = ReadBosEos(files[TokenizerFolder.ConfigFile], configPath);
        }
        var spec = TokenizerJson.Read(Encoding.UTF8.GetString(files[TokenizerFolder.TokenizerJsonFile]));
        return new BpeTextTokenizer(spec, TokenizerKind.TokenizerJson, "tokenizer.json", files, bos, eos, allowSafeSplit);
    }

    internal static BpeTextTokenizer ReadGpt2Files(string encoderPath, string mergesPath)
    {
        byte[] encoderBytes = ReadFile(encoderPath, "GPT-2 encoder.json"), mergesBytes = ReadFile(mergesPath, "GPT-2 vocab.bpe");
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(encoderBytes) ?? throw new JsonException("null"); }
        catch (JsonException e) { throw new MatqException($"GPT-2 encoder '{encoderPath}' is not a JSON object of token → id ({e.Message})"); }

        // vocab.bpe: a "#version" header, then one "left right" merge per line in rank order.
        var merges = new List<(string, string)>();
        foreach (var line in Encoding.UTF8.GetString(mergesBytes).Split('\n'))
        {
            string l = line.TrimEnd('\r');
            if (l.Length == 0 || l.StartsWith("#version", StringComparison.Ordinal)) continue;
            int sp = l.IndexOf(' ');
            if (sp <= 0 || sp == l.Length - 1) throw new MatqException($"GPT-2 merges '{mergesPath}' has a line that is not two tokens: \"{l}\"");
            merges.Add((l[..sp], l[(sp + 1)..]));
        }

        // What HF's GPT2TokenizerFast builds: ByteLevel pre-tokenizer and decoder, no BOS, "<|endoftext|>" special.
        const string eot = "<|endoftext|>";
        AddedToken[] added = vocab.TryGetValue(eot, out int eotId) ? [new AddedToken(eotId, eot, true, false, false, false)] : [];
        var spec = new BpeSpec(vocab, merges, added, null, new ByteLevelPreTokenizer(false, true), [], [], "none",
            new ByteLevelDecoder(), null, false, false, false);
        var files = new Dictionary<string, byte[]> { [TokenizerFolder.Gpt2Encoder] = encoderBytes, [TokenizerFolder.Gpt2Merges] = mergesBytes };
        return new BpeTextTokenizer(spec, TokenizerKind.Gpt2Files, "GPT-2 encoder.json + vocab.bpe", files, eot, eot);
    }

    private static byte[] ReadFile(string path, string what)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new MatqException($"{what} '{path}' cannot be read ({e.Message})", e); }
    }

    // tokenizer_config.json writes bos_token/eos_token as a string, an {"content": ...} object, or null.
    private static (string? Bos, string? Eos) ReadBosEos(byte[] json, string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return (Token(doc.RootElement, "bos_token"), Token(doc.RootElement, "eos_token"));
        }
        catch (JsonException e) { throw new MatqException($"tokenizer_config.json '{path}' is not valid JSON ({e.Message})"); }

        static string? Token(JsonElement root, string name) =>
            !root.TryGetProperty(name, out var v) ? null
            : v.ValueKind == JsonValueKind.String ? v.GetString()
            : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString() : null;
    }

    public override TokenizerKind Kind { get; }
    public override string Name { get; }
    public override int VocabSize { get; }
    public override int? BosId { get; }
    public override int? EosId { get; }

    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(spec.PrefixIds);
        if (addedTokens.IsEmpty) EncodeText(text, atStart: true, ids);
        else
        {
            foreach (var seg in addedTokens.Split(text))
            {
                if (seg.Id >= 0) ids.Add(seg.Id);
                else EncodeText(seg.Length == text.Length ? text : text.Substring(seg.Start, seg.Length), seg.Start == 0, ids);
            }
        }
        if (addSpecialTokens) ids.AddRange(spec.SuffixIds);
        return ids.ToArray();
    }

    // One stretch of text between added tokens: HF normalizes and pre-tokenizes each stretch on its own.
    private void EncodeText(string text, bool atStart, List<int> ids)
    {
        string normalized = spec.Normalizer?.Apply(text) ?? text;
        if (normalized.Length == 0) return;
        if (spec.PreTokenizer is null) { model.Encode(normalized, ids); return; }
        var pieces = new List<Piece>();
        spec.PreTokenizer.Split(new Piece(normalized, atStart), pieces);
        foreach (var p in pieces) model.Encode(p.Text, ids);
    }

    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)idToToken.Length || idToToken[id] is not { } token) continue;
            if (skipSpecialTokens && isSpecial[id]) continue;
            tokens.Add(token);
        }
        return DecoderStep.Run(spec.Decoder, tokens);
    }

    public override string Describe()
    {
        string Special(int? id) => id is { } i ? $"{idToToken[i]} = {i}" : "none";
        string adds = spec.PrefixIds.Length + spec.SuffixIds.Length == 0 ? "adds no special tokens"
            : $"adds [{string.Join(", ", spec.PrefixIds)}] before and [{string.Join(", ", spec.SuffixIds)}] after";
        return $"{Name} from {source}: vocab {VocabSize} ({model.Describe()}, {spec.Merges.Count} merges, {spec.AddedTokens.Length} added tokens); " +
               $"normalizer {spec.Normalizer?.Describe() ?? "none"}; pre-tokenizer {spec.PreTokenizer?.Describe() ?? "none"}; " +
               $"post-processor {spec.PostProcessor}, {adds}; decoder {spec.Decoder?.Describe() ?? "none"}; " +
               $"BOS {Special(BosId)}; EOS {Special(EosId)}";
    }

    public override void Save(string folder) => TokenizerFolder.SaveFiles(folder, Kind, files);
}
