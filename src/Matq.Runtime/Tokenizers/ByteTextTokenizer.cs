// matq's built-in tokenizer for tiny models: ids 0..255 are UTF-8 bytes; optionally 256 = BOS, 257 = EOS.
// Encode/Decode are exact for any valid string; invalid UTF-8 in ids decodes to U+FFFD.
using System.Text;

namespace Matq.Runtime.Tokenizers;

public sealed class ByteTextTokenizer : TextTokenizer
{
    public const int Bos = 256, Eos = 257;

    private readonly bool withBosEos;

    internal ByteTextTokenizer(bool withBosEos) => this.withBosEos = withBosEos;

    public override TokenizerKind Kind => TokenizerKind.Bytes;
    public override string Name => "bytes";
    public override int VocabSize => withBosEos ? 258 : 256;
    public override int? BosId => withBosEos ? Bos : null;
    public override int? EosId => withBosEos ? Eos : null;
    public bool HasBosEos => withBosEos;

    /// <summary>The UTF-8 bytes as ids (a lone surrogate becomes EF BF BD, U+FFFD), after BOS when it has one.</summary>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        bool bos = addSpecialTokens && withBosEos;
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length + (bos ? 1 : 0)];
        int o = 0;
        if (bos) ids[o++] = Bos;
        foreach (byte b in bytes) ids[o++] = b;
        return ids;
    }

    /// <summary>
    /// Bytes → text; each maximal invalid UTF-8 subsequence becomes one U+FFFD (the Unicode-recommended
    /// practice, which .NET and Rust's from_utf8_lossy share). Unskipped BOS/EOS render as "&lt;s&gt;"/"&lt;/s&gt;".
    /// </summary>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
    {
        var sb = new StringBuilder(ids.Length);
        var run = new List<byte>(ids.Length);
        foreach (int id in ids)
        {
            if (id is >= 0 and < 256) { run.Add((byte)id); continue; }
            if (!withBosEos || id is not (Bos or Eos) || skipSpecialTokens) continue;
            Flush();
            sb.Append(id == Bos ? "<s>" : "</s>");
        }
        Flush();
        return sb.ToString();

        void Flush()
        {
            sb.Append(Encoding.UTF8.GetString(run.ToArray()));
            run.Clear();
        }
    }

    public override string Describe() => withBosEos
        ? "bytes (matq built-in): ids 0..255 are UTF-8 bytes, 256 = BOS (added by Encode), 257 = EOS; vocab 258"
        : "bytes (matq built-in): ids 0..255 are UTF-8 bytes, no special tokens; vocab 256";

    public override void Save(string folder) => TokenizerFolder.SaveBytes(folder, withBosEos);
}
