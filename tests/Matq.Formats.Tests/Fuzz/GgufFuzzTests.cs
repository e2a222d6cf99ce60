// Fuzz tier, GGUF: a file shaped like matq's exporter output (llama metadata, alignment key, tokenizer arrays, tensors of
// every type matq writes) corrupted 1,200 ways — byte mutations, and every header field (counts, string and array
// lengths, value types, dimensions, ggml types, offsets, the alignment value) set to extremes — and read as `matq inspect`
// does (ModelInspector) and as the GGUF reader does including every tensor's data. See FuzzKit for the pass rule.
using System.Text;
using Matq.Formats.Gguf;
using Matq.Formats.Inspection;
using Matq.Fuzz;
using Xunit.Abstractions;

namespace Matq.Formats.Tests.Fuzz;

public sealed class GgufFuzzTests(ITestOutputHelper output)
{
    public const int Cases = 1200;

    private static readonly Lazy<byte[]> Seed = new(() => SeedWriter().ToBytes());

    /// <summary>What GgufExporter writes, in miniature.</summary>
    private static GgufWriter SeedWriter()
    {
        var tokens = Enumerable.Range(0, 40).Select(i => i < 26 ? ((char)('a' + i)).ToString() : "t" + i).ToArray();
        var w = new GgufWriter()
            .Add("general.architecture", "llama").Add("general.name", "tiny").Add("general.alignment", (uint)GgufWriter.Alignment)
            .Add("general.file_type", 3u).Add("llama.context_length", 256u).Add("llama.embedding_length", 64u).Add("llama.block_count", 1u)
            .Add("llama.attention.head_count", 4u).Add("llama.attention.head_count_kv", 2u).Add("llama.rope.freq_base", 10000f)
            .Add("llama.attention.layer_norm_rms_epsilon", 1e-6f).Add("matq.group_size", 32).Add("matq.algorithm", "rtn")
            .Add("tokenizer.ggml.model", "gpt2").Add("tokenizer.ggml.tokens", tokens)
            .Add("tokenizer.ggml.token_type", tokens.Select(_ => 1).ToArray()).Add("tokenizer.ggml.merges", ["a b", "ab c"])
            .Add("tokenizer.ggml.scores", tokens.Select(t => (float)t.Length).ToArray()).Add("tokenizer.add_bos", true);
        w.AddTensor("token_embd.weight", [64, 40], GgmlType.F16, GgufBlocks.Encode(GgmlType.F16, Bytes.Seeded(64 * 40, 1)));
        w.AddTensor("blk.0.attn_norm.weight", [64], GgmlType.F32, GgufBlocks.Encode(GgmlType.F32, Bytes.Seeded(64, 2)));
        w.AddTensor("blk.0.attn_q.weight", [64, 4], GgmlType.Q4_1, GgufBlocks.Encode(GgmlType.Q4_1, Bytes.Seeded(256, 3)));
        w.AddTensor("blk.0.attn_k.weight", [64, 2], GgmlType.Q4_0, GgufBlocks.Encode(GgmlType.Q4_0, Bytes.Seeded(128, 4)));
        w.AddTensor("blk.0.ffn_down.weight", [64, 3], GgmlType.Q8_0, GgufBlocks.Encode(GgmlType.Q8_0, Bytes.Seeded(192, 5)));
        return w;
    }

    /// <summary>Header fields of the seed: (offset, size in bytes, label), found by walking the valid file.</summary>
    private static readonly Lazy<List<(int At, int Size, string Label)>> Fields = new(() => Walk(Seed.Value));

    private static List<(int, int, string)> Walk(byte[] b)
    {
        var f = new List<(int, int, string)> { (8, 8, "n_tensors"), (16, 8, "n_kv") };
        int p = 24;
        ulong U64() { ulong v = BitConverter.ToUInt64(b, p); p += 8; return v; }
        uint U32() { uint v = BitConverter.ToUInt32(b, p); p += 4; return v; }
        string Str(string label) { f.Add((p, 8, label + " length")); int n = (int)U64(); var s = Encoding.UTF8.GetString(b, p, n); p += n; return s; }
        void Value(uint t, string key)
        {
            switch ((GgufValueType)t)
            {
                case GgufValueType.String: Str(key + " value"); break;
                case GgufValueType.Array:
                    f.Add((p, 4, key + " element type"));
                    uint et = U32();
                    f.Add((p, 8, key + " item count"));
                    ulong n = U64();
                    for (ulong i = 0; i < n; i++) Value(et, key + $"[{i}]");
                    break;
                case GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32: f.Add((p, 4, key + " value")); p += 4; break;
                case GgufValueType.Bool: f.Add((p, 1, key + " value")); p += 1; break;
                default: throw new InvalidOperationException($"seed walker: type {t}");
            }
        }
        ulong nt = BitConverter.ToUInt64(b, 8), nkv = BitConverter.ToUInt64(b, 16);
        for (ulong i = 0; i < nkv; i++)
        {
            var key = Str("key");
            f.Add((p, 4, key + " value type"));
            Value(U32(), key);
        }
        for (ulong i = 0; i < nt; i++)
        {
            var name = Str("tensor name");
            f.Add((p, 4, name + " n_dims"));
            uint nd = U32();
            for (int d = 0; d < nd; d++) { f.Add((p, 8, $"{name} ne[{d}]")); p += 8; }
            f.Add((p, 4, name + " type")); p += 4;
            f.Add((p, 8, name + " offset")); p += 8;
        }
        return f;
    }

    private static readonly ulong[] Extremes =
        [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 31, 32, 33, 48, 64, 255, 1 << 20, (1 << 20) + 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
         0x1_0000_0000, 1UL << 62, long.MaxValue, 1UL << 63, ulong.MaxValue];

    /// <summary>Case <paramref name="seed"/>: the corrupted bytes and what was done.</summary>
    internal static (byte[] Bytes, string What) Corrupt(int seed)
    {
        var rng = new Random(seed);
        var valid = Seed.Value;
        var fields = Fields.Value;
        int headerEnd = fields[^1].At + 8;
        if (rng.Next(2) == 0) { var b = ByteMutator.Mutate(valid, rng, headerEnd, out var what); return (b, what); }
        var bytes = (byte[])valid.Clone();
        var parts = new List<string>();
        int n = 1 + (rng.Next(4) == 0 ? 1 : 0);
        for (int i = 0; i < n; i++)
        {
            var (at, size, label) = fields[rng.Next(fields.Count)];
            ulong v = rng.Next(5) == 0 ? (ulong)rng.NextInt64() : Extremes[rng.Next(Extremes.Length)];
            if (size == 8) BitConverter.TryWriteBytes(bytes.AsSpan(at), v);
            else if (size == 4) BitConverter.TryWriteBytes(bytes.AsSpan(at), (uint)v);
            else bytes[at] = (byte)v;
            parts.Add($"{label} = {(size == 8 ? v : size == 4 ? (uint)v : (byte)v)}");
        }
        return (bytes, string.Join("; ", parts));
    }

    /// <summary>Every in-process GGUF reading path: inspect, and the reader with each readable tensor's data decoded.</summary>
    internal static void ReadAll(string path)
    {
        _ = ModelInspector.Inspect(path);
        var f = GgufFile.Open(path);
        foreach (var kv in f.Metadata) _ = GgufFile.Describe(kv.Value);
        foreach (var t in f.Tensors)
        {
            if (t.Type is not { } type) continue;
            var data = f.ReadTensorBytes(t);
            _ = GgufBlocks.Decode(type, data, t.Count);
        }
    }

    [Fact]
    public void The_seed_is_valid_and_reads()
    {
        using var tmp = new TempDir();
        ReadAll(WriteCase(tmp, Seed.Value));
    }

    [Fact]
    public void Corrupted_gguf_files_end_in_success_or_one_clear_MatqException_line()
    {
        using var tmp = new TempDir();
        FuzzRunner.Run("gguf", 1, Cases, seed =>
        {
            var (bytes, what) = Corrupt(seed);
            var path = WriteCase(tmp, bytes);
            return new FuzzCase(what, () => ReadAll(path));
        }, output);
    }

    private static string WriteCase(TempDir tmp, byte[] bytes)
    {
        var path = tmp.File("case.gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
