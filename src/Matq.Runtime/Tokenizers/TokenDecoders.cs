// tokenizer.json "decoder" steps that matq supports: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip and
// Sequence. Like HF's decode_chain, each step maps the list of token strings to a new list; the result is their join.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Runtime.Tokenizers;

internal abstract class DecoderStep
{
    public const string Supported = "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence";

    public abstract string Describe();
    public abstract List<string> Apply(List<string> tokens);

    public static DecoderStep? Parse(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Null) return null;
        string type = TokenizerJson.Type(e, "decoder");
        return type switch
        {
            "ByteLevel" => new ByteLevelDecoder(),
            "Metaspace" => new MetaspaceDecoder(MetaspacePreTokenizer.FromJson(e)),
            "Replace" => new ReplaceDecoder(TokenizerJson.Pattern(e, "decoder Replace"), TokenizerJson.Str(e, "content", "decoder Replace")),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(TokenizerJson.Str(e, "content", "decoder Strip"),
                TokenizerJson.Int(e, "start", "decoder Strip"), TokenizerJson.Int(e, "stop", "decoder Strip")),
            "Sequence" => new SequenceDecoder(TokenizerJson.Arr(e, "decoders", "decoder Sequence")
                .Select(x => Parse(x) ?? throw TokenizerJson.Bad("decoder Sequence holds a null step")).ToArray()),
            _ => throw TokenizerJson.Unsupported("decoder", type, Supported),
        };
    }

    /// <summary>Runs <paramref name="decoder"/> over the token strings; HF joins with ' ' when there is no decoder.</summary>
    public static string Run(DecoderStep? decoder, List<string> tokens) =>
        decoder is null ? string.Join(' ', tokens) : string.Concat(decoder.Apply(tokens));
}

/// <summary>All tokens → their bytes → one string; invalid UTF-8 becomes U+FFFD (per maximal invalid subpart, as Rust's from_utf8_lossy).</summary>
internal sealed class ByteLevelDecoder : DecoderStep
{
    public override string Describe() => "ByteLevel";
    public override List<string> Apply(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) ByteLevelAlphabet.AppendBytes(t, bytes);
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>'▁' → ' ' per token, except that HF drops every '▁' of the first token when the encoder prepends one.</summary>
internal sealed class MetaspaceDecoder(MetaspacePreTokenizer config) : DecoderStep
{
    public override string Describe() => "Metaspace";
    public override List<string> Apply(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
            result.Add(i == 0 && config.PrependsPrefix
                ? tokens[i].Replace(config.Replacement.ToString(), "")
                : tokens[i].Replace(config.Replacement, ' '));
        return result;
    }
}

internal sealed class ReplaceDecoder(Regex pattern, string content) : DecoderStep
{
    public override string Describe() => $"Replace('{pattern}'→'{content}')";
    public override List<string> Apply(List<string> tokens) => tokens.Select(t => pattern.Replace(t, content)).ToList();
}

/// <summary>
/// Runs of "&lt;0xHH&gt;" tokens become the string their bytes spell; a run that is not valid UTF-8 becomes one
/// U+FFFD per byte (HF's rule, which differs from the maximal-subpart rule of the ByteLevel decoder).
/// </summary>
internal sealed class ByteFallbackDecoder : DecoderStep
{
    public override string Describe() => "ByteFallback";
    public override List<string> Apply(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        foreach (var t in tokens)
        {
            if (TryParseByteToken(t, out byte b)) { run.Add(b); continue; }
            Flush();
            result.Add(t);
        }
        Flush();
        return result;

        void Flush()
        {
            if (run.Count == 0) return;
            try { result.Add(Strict.GetString(run.ToArray())); }
            catch (DecoderFallbackException) { result.Add(new string('\uFFFD', run.Count)); }
            run.Clear();
        }
    }

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static bool TryParseByteToken(string t, out byte b)
    {
        b = 0;
        return t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
            && byte.TryParse(t.AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out b);
    }
}

internal sealed class FuseDecoder : DecoderStep
{
    public override string Describe() => "Fuse";
    public override List<string> Apply(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing occurrences of one char from each token.</summary>
internal sealed class StripDecoder : DecoderStep
{
    private readonly char content;
    private readonly int start, stop;

    public StripDecoder(string content, int start, int stop)
    {
        if (content.Length != 1) throw TokenizerJson.Bad($"decoder Strip content '{content}' must be one char");
        (this.content, this.start, this.stop) = (content[0], start, stop);
    }

    public override string Describe() => $"Strip('{content}', {start}, {stop})";
    public override List<string> Apply(List<string> tokens) => tokens.Select(t =>
    {
        int a = 0, b = t.Length;
        while (a < start && a < b && t[a] == content) a++;
        while (t.Length - b < stop && b > a && t[b - 1] == content) b--;
        return t[a..b];
    }).ToList();
}

internal sealed class SequenceDecoder(DecoderStep[] steps) : DecoderStep
{
    public override string Describe() => string.Join("+", steps.Select(s => s.Describe()));
    public override List<string> Apply(List<string> tokens)
    {
        foreach (var s in steps) tokens = s.Apply(tokens);
        return tokens;
    }
}
