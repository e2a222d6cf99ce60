// Contract: writes a .matq artifact (or an HF folder) as a llama.cpp GGUF v3 file (Gguf/GgufWriter) with the metadata,
// tensor names and fused tensors of its family's llama.cpp architecture (GgufArchitecture: llama, qwen2, qwen3, gemma2,
// gemma3, phi3; what llama.cpp cannot run as matq does is refused in one line), the tokenizer and tensors as f32 | f16 | q8_0 | q4_0 | q4_1. Quantized weights take the lossless path (codes copied, scales → fp16)
// where the GGUF block type expresses our grid exactly, else they are re-quantized from ŵ_r (ExportReport says which):
//   q4_1 ← int4 slice, any group that is a multiple of 32 (or per-channel with in % 32 == 0), no act-order perm:
//          ŵ_4 = α(S·16 − z) = d·S + m with d = 16α, m = −αz (each 32-block takes its group's d, m).
//   q4_0 ← int4 slice when z = 128 (symmetric): ŵ_4 = 16α(S − 8) = d(q − 8).    q8_0 ← int8 master when z = 128: d = α, q = c − 128.
// On the llama architecture, q_proj/k_proj rows (and biases) are permuted per head from HF's rotate-half order to the
// interleaved pairs llama.cpp's rope expects there (the other architectures rotate halves, NEOX-style, and keep HF's order):
// GGUF row h·D + 2i + j = HF row h·D + j·D/2 + i (D = head_dim; k uses the KV head count). Rows move whole, so codes stay exact.
// k-quants (q2_K..q6_K, 256-value super-blocks; GgufKQuants) take the r-bit slice, r = the type's code bits (2..6):
//   exact where the grid fits the super-block format: no act-order perm, groups a whole number of sub-blocks (16 or 32
//   wide), symmetric codes (z = 2^(r−1)·2^k) for q3_K/q6_K, and in each super-block the sub-block scales α·2^k (and mins
//   α·z) are integer multiples (6-bit, q2_K 4-bit) of one fp16 d (dmin) — e.g. a per-channel grid; codes are copied.
//   Otherwise each super-block is re-quantized from ŵ_r (the artifact's group grid tried as a candidate), and the export
//   reports exact vs re-quantized tensors with max/RMS |Δw| against ŵ_r. Rows that are not a multiple of 256 fall back
//   as llama.cpp's quantizer does (q2_K/q3_K → q4_0, q4_K → q5_0, q5_K → q5_1, q6_K → q8_0; f16 when not a multiple of 32).
// A quantized embedding (quantize --embedding-bits) takes the linears' path at the embedding type (--embed-type: q8_0 is
// lossless for symmetric 8-bit codes, else re-quantized from ŵ); a report note says which type it got and how.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Tokenizers;

namespace Matq.Export;

public sealed record GgufExportReport(int Lossless, int Requantized, int Float, IReadOnlyList<string> Notes)
{
    /// <summary>For a k-quant export of an artifact: how its quantized linears were written (null otherwise).</summary>
    public GgufKQuantStats? KQuant { get; init; }
}

/// <summary>
/// A k-quant export's linears (counted per model tensor): Exact (codes copied), Requantized (from ŵ_r), Fallback (rows not
/// a multiple of 256); max |Δw| and RMS Δw against ŵ_r over the exact and the re-quantized tensors' values.
/// </summary>
public sealed record GgufKQuantStats(GgmlType Type, int Bits, int Exact, int Requantized, int Fallback,
    double MaxErrExact, double MaxErrRequantized, double RmsRequantized, double RmsAll)
{
    public string Line =>
        $"{Type}: {Exact} linear(s) exact ({Bits}-bit codes copied, fp16 super-block scales; max |Δw| {MaxErrExact:E2}), " +
        $"{Requantized} re-quantized from the {Bits}-bit weights (max |Δw| {MaxErrRequantized:E2}, RMS {RmsRequantized:E2}), " +
        $"{Fallback} fell back (rows not a multiple of 256); RMS Δw over all k-quant linears {RmsAll:E2}";
}

public static class GgufExporter
{
    public static readonly IReadOnlyList<string> Types = ["f32", "f16", "q8_0", "q4_0", "q4_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"];

    public static GgmlType ParseType(string text) => text.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32, "f16" => GgmlType.F16, "q8_0" => GgmlType.Q8_0, "q4_0" => GgmlType.Q4_0, "q4_1" => GgmlType.Q4_1,
        "q2_k" => GgmlType.Q2_K, "q3_k" => GgmlType.Q3_K, "q4_k" => GgmlType.Q4_K, "q5_k" => GgmlType.Q5_K, "q6_k" => GgmlType.Q6_K,
        _ => throw new MatqException($"--type {text} is not supported for GGUF: use one of {string.Join(", ", Types)}"),
    };

    /// <summary>
    /// Writes <paramref name="matqPath"/> as GGUF for the llama.cpp architecture of its family (GgufArchitecture).
    /// Quantized linears take <paramref name="type"/>; the token embedding and an untied output head take
    /// <paramref name="embedType"/> (a quantized embedding from its codes, by the linears' rules; default: q8_0 for the block types, q6_K for the k-quants, as llama.cpp's own quantizer does for the head, else
    /// <paramref name="type"/>); norms stay f32. A tensor whose rows are not a multiple of 32 values cannot take a block
    /// type: it falls back to f16, and the report's notes name it. Phi-3's q/k/v and gate/up are fused again by rows; the
    /// fused tensor takes the lossless path when every part does (rows are independent blocks, so codes stay exact).
    /// </summary>
    public static GgufExportReport Export(string matqPath, GgmlType type, string outPath, GgmlType? embedType = null)
    {
        var embed = embedType ?? DefaultEmbed(type);
        // memory-mapped: each tensor is read when the writer reaches its GGUF tensor, so a real-size model is never held whole
        using var a = MappedMatqArtifact.Open(matqPath);
        // the same check eval/generate make: model_config parses as a Llama config and the tensors are exactly the ones it implies
        var cfg = ArtifactSource.ModelConfig(a);
        var arch = GgufArchitecture.For(cfg);
        var w = arch.Header(Path.GetFileNameWithoutExtension(matqPath), FileType(type))
            .Add("matq.master_bits", (uint)a.Metadata.MasterBits).Add("matq.group_size", a.Metadata.GroupSize)
            .Add("matq.algorithm", a.Metadata.Algorithm);
        var notes = new List<string>();
        var (tokFolder, tokProblem) = ArtifactSource.ArtifactTokenizer(matqPath, a.Metadata);
        AddTokenizer(w, tokFolder, tokProblem, a.Metadata.Tokenizer?.Kind, notes, cfg.VocabSize);
        var counts = new Counts { Floats = AddExtraTensors(w, arch) };
        var fallbacks = new List<string>();
        var kFallbacks = new List<(string Name, GgmlType To)>();
        var k = new KStats();
        var floatTensors = a.Floats.Select(f => new Part(f.Name, f.Shape, () => a.ReadFloat32(f.Name))).ToList();
        // 1-D tensors (norms, biases) stay f32; the embedding and output head take embedType; other 2-D floats f16 or f32
        AddFloats(w, arch, floatTensors, embed, type == GgmlType.F32 ? GgmlType.F32 : GgmlType.F16, fallbacks, kFallbacks, counts);
        Func<string>? embedNote = null;
        foreach (var (name, partIdx) in Group(arch, a.Quantized.Select(q => q.Name)))
        {
            var parts = partIdx.Select(i => new QuantizedSource(a, a.Quantized[i])).ToList();
            if (name != "token_embd.weight")
            {
                AddQuantized(w, arch, name, parts, a.Metadata.MasterBits, type, fallbacks, kFallbacks, counts, k);
                continue;
            }
            // a quantized embedding (quantize --embedding-bits) takes the embedding type, from its codes by the same rules as
            // the linears; its k-quant stats are kept apart so the linears' k-quant line stays theirs
            var (written, lossless) = AddQuantized(w, arch, name, parts, a.Metadata.MasterBits, embed, fallbacks, kFallbacks, counts, new KStats());
            embedNote = () => $"token_embd.weight written from the artifact's {a.Metadata.MasterBits}-bit embedding codes as {written}: "
                + (lossless() ? "codes copied (lossless)" : GgufBlocks.IsBlockType(written)
                    ? "re-quantized from the dequantized codes (asymmetric zero points, or a grid the type cannot hold)" : "the dequantized codes");
        }
        // llama.cpp's phi3 loads output.weight as a required tensor: a tied head is written as a copy of the embedding
        if (a.TryGetQuantized("model.embed_tokens.weight", out _) && arch.Fused && cfg.TieWordEmbeddings) w.CopyTensor("token_embd.weight", "output.weight");
        // every tensor is encoded as it is written (one at a time); what the notes say of them is known after
        w.Write(outPath);
        if (embedNote is not null) notes.Add(embedNote());
        GgufKQuantStats? kstats = null;
        if (GgufKQuants.IsKQuant(type))
        {
            kstats = k.Stats(type, Math.Min(GgufKQuants.Spec(type).Bits, a.Metadata.MasterBits));
            notes.Add(kstats.Line);
        }
        else if (counts.Quantized > 0) notes.Add($"{counts.Quantized} tensors were (re-)quantized to a GGUF block type from their values (float embedding/head, asymmetric zero points, act-order perm or groups not a multiple of 32)");
        AddFallbackNote(notes, fallbacks, kFallbacks);
        return new GgufExportReport(counts.Lossless, counts.Quantized, counts.Floats, notes) { KQuant = kstats };
    }

    /// <summary>
    /// Writes an HF model folder (float weights, no quantization done by matq) as GGUF: 2-D weights take
    /// <paramref name="type"/> (block types are quantized from the float values, as llama.cpp's quantizer does), the
    /// embedding and head <paramref name="embedType"/> (default q8_0 for block types), norms f32; rows that are not a
    /// multiple of 32 fall back to f16.
    /// </summary>
    public static GgufExportReport ExportFloat(string hfFolder, GgmlType type, string outPath, GgmlType? embedType = null)
    {
        var embed = embedType ?? DefaultEmbed(type);
        using var model = Loading.LlamaLoader.Load(hfFolder, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        var cfg = model.Config;
        var arch = GgufArchitecture.For(cfg);
        var w = arch.Header(Path.GetFileName(Path.GetFullPath(hfFolder).TrimEnd(Path.DirectorySeparatorChar)), FileType(type));
        var notes = new List<string>();
        var kind = TokenizerFiles.DetectKind(TokenizerFiles.Names.Where(f => File.Exists(Path.Combine(hfFolder, f))).ToArray());
        AddTokenizer(w, kind is null ? null : hfFolder, "the folder holds no tokenizer files", kind, notes, cfg.VocabSize);
        var counts = new Counts { Floats = AddExtraTensors(w, arch) };
        var fallbacks = new List<string>();
        var kFallbacks = new List<(string Name, GgmlType To)>();
        var tensors = LlamaTensors.Expected(cfg).Select(e =>
        {
            var p = model.get_parameter(e.Name) ?? throw new MatqException($"{hfFolder}: the model has no tensor '{e.Name}'");
            var values = p.detach().contiguous().data<float>().ToArray();
            return new Part(e.Name, e.Shape, () => values);
        }).ToList();
        AddFloats(w, arch, tensors, embed, type, fallbacks, kFallbacks, counts);
        if (counts.Quantized > 0) notes.Add($"{counts.Quantized} float tensors were quantized to GGUF block types from their values ({(GgufKQuants.IsKQuant(type) ? "least-squares sub-block scales and mins per 256-value super-block" : "round to nearest per 32-block, as llama.cpp's quantizer")})");
        AddFallbackNote(notes, fallbacks, kFallbacks);
        w.Write(outPath);
        return new GgufExportReport(0, counts.Quantized, counts.Floats, notes);
    }

    // a float tensor whose values are read when its GGUF tensor is written
    private sealed record Part(string Name, long[] Shape, Func<float[]> Values);

    // one quantized artifact tensor: its header entry now, its codes and grid read from the mapped file when needed
    private sealed class QuantizedSource(MappedMatqArtifact artifact, MatqQuantizedEntry entry)
    {
        public string Name => entry.Name;
        public int OutFeatures => entry.OutFeatures;
        public int InFeatures => entry.InFeatures;
        public int GroupWidth => entry.GroupWidth;
        public bool HasPerm => entry.HasPerm;

        /// <summary>Every zero point is 128 (symmetric 8-bit codes).</summary>
        public bool Symmetric8() => artifact.ReadParts(entry).Zeros.All(z => z == 128f);

        public MatqQuantizedTensor Load()
        {
            var p = artifact.ReadParts(entry);
            byte[] codes;
            using (var view = artifact.MapCodes(entry)) codes = view.Span.ToArray();
            return new MatqQuantizedTensor(entry.Name, entry.OutFeatures, entry.InFeatures, entry.GroupSize, codes, p.Scales, p.Zeros, p.Perm, p.SideTensors);
        }
    }

    private sealed class Counts { public int Lossless, Quantized, Floats; }

    private sealed class KStats
    {
        public int Exact, Requantized, Fallback;
        public double MaxExact, MaxRequant, SqRequant, SqAll;
        public long NRequant, NAll;

        public void Add(bool exact, int parts, ReadOnlySpan<float> want, ReadOnlySpan<float> got)
        {
            double max = 0, sq = 0;
            for (int i = 0; i < want.Length; i++) { double d = Math.Abs((double)got[i] - want[i]); max = Math.Max(max, d); sq += d * d; }
            SqAll += sq; NAll += want.Length;
            if (exact) { Exact += parts; MaxExact = Math.Max(MaxExact, max); }
            else { Requantized += parts; MaxRequant = Math.Max(MaxRequant, max); SqRequant += sq; NRequant += want.Length; }
        }

        public GgufKQuantStats Stats(GgmlType t, int bits) => new(t, bits, Exact, Requantized, Fallback, MaxExact, MaxRequant,
            NRequant == 0 ? 0 : Math.Sqrt(SqRequant / NRequant), NAll == 0 ? 0 : Math.Sqrt(SqAll / NAll));
    }

    /// <summary>The embedding/head type when --embed-type is not given: q8_0 for the 32-blocks, q6_K for the k-quants (what
    /// llama.cpp's quantizer gives the output head), else the type itself.</summary>
    public static GgmlType DefaultEmbed(GgmlType type) =>
        GgufKQuants.IsKQuant(type) ? GgmlType.Q6_K : GgufBlocks.IsBlockType(type) ? GgmlType.Q8_0 : type;

    // the type a tensor of rows of `cols` values takes: t, else llama.cpp's fallback for a k-quant, else f16 (notes list them)
    private static GgmlType Fit(GgmlType t, long cols, string name, List<string> fallbacks, List<(string Name, GgmlType To)> kFallbacks)
    {
        if (!GgufBlocks.IsBlockType(t) || cols % GgufBlocks.BlockValuesOf(t) == 0) return t;
        var fb = GgufKQuants.Fallback(t);
        if (fb != t && cols % GgufBlocks.BlockValuesOf(fb) == 0) { kFallbacks.Add((name, fb)); return fb; }
        fallbacks.Add(name);
        return GgmlType.F16;
    }

    // one GGUF tensor from quantized artifact weights (fused parts by rows): k-quant, lossless block copy, or re-quantized
    // (the tensor's bytes are produced when the writer writes it; Lossless is known once it has been written)
    private static (GgmlType Written, Func<bool> Lossless) AddQuantized(GgufWriter w, GgufArchitecture arch, string name, List<QuantizedSource> parts, int master, GgmlType type,
        List<string> fallbacks, List<(string Name, GgmlType To)> kFallbacks, Counts counts, KStats k)
    {
        int cols = parts[0].InFeatures;
        if (parts.Any(q => q.InFeatures != cols)) throw new MatqException($"{name}: fused parts have different input sizes");
        long[] ne = [cols, parts.Sum(q => (long)q.OutFeatures)];
        if (GgufKQuants.IsKQuant(type))
        {
            return AddKQuant(w, arch, name, ne, parts, master, type, fallbacks, kFallbacks, counts, k);
        }
        bool blocks32 = parts.All(q => q.GroupWidth % 32 == 0 && q.InFeatures % 32 == 0 && !q.HasPerm);
        bool sym = master == 8 && type is GgmlType.Q4_0 or GgmlType.Q8_0 && blocks32 && parts.All(q => q.Symmetric8());
        if (type == GgmlType.Q4_1 && blocks32 || type is GgmlType.Q4_0 or GgmlType.Q8_0 && blocks32 && sym)
        {
            w.AddTensor(name, ne, type, () => parts.Select(p => p.Load())
                .SelectMany(q => GgufQuantizedCodes.Encode(q, master, type, arch.RowPerm(q.Name, q.OutFeatures))).ToArray());
            counts.Lossless += parts.Count;
            return (type, () => true);
        }
        int r = type is GgmlType.Q4_0 or GgmlType.Q4_1 ? Math.Min(4, master) : master;
        var t = type;
        // llama.cpp's own quantizer does the same for rows its block type cannot hold
        if (GgufBlocks.IsBlockType(type) && cols % GgufBlocks.BlockValues != 0) { fallbacks.Add(parts[0].Name); t = GgmlType.F16; }
        w.AddTensor(name, ne, t, () => GgufBlocks.Encode(t, Dequantized(arch, parts.Select(p => p.Load()), master, r)));
        if (GgufBlocks.IsBlockType(t)) counts.Quantized += parts.Count; else counts.Floats += parts.Count;
        return (t, () => false);
    }

    // the parts' r-bit slices dequantized, GGUF row order, concatenated by rows
    private static float[] Dequantized(GgufArchitecture arch, IEnumerable<MatqQuantizedTensor> parts, int master, int r) =>
        parts.SelectMany(q => GgufQuantizedCodes.DequantizeSlice(q, master, r, arch.RowPerm(q.Name, q.OutFeatures))).ToArray();

    // one GGUF tensor of a k-quant export from its parts' r-bit slices (see the file header)
    // (exactness, the counts and k's statistics are known once the writer has produced the tensor)
    private static (GgmlType Written, Func<bool> Exact) AddKQuant(GgufWriter w, GgufArchitecture arch, string name, long[] ne, List<QuantizedSource> parts, int master,
        GgmlType type, List<string> fallbacks, List<(string Name, GgmlType To)> kFallbacks, Counts counts, KStats k)
    {
        var spec = GgufKQuants.Spec(type);
        int r = Math.Min(spec.Bits, master);
        var t = Fit(type, ne[0], parts[0].Name, fallbacks, kFallbacks);
        if (t != type)
        {
            w.AddTensor(name, ne, t, () => GgufBlocks.Encode(t, Dequantized(arch, parts.Select(p => p.Load()), master, r)));
            if (GgufBlocks.IsBlockType(t)) counts.Quantized += parts.Count; else counts.Floats += parts.Count;
            k.Fallback += parts.Count;
            return (t, () => false);
        }
        bool? exact = null;
        w.AddTensor(name, ne, type, () =>
        {
            var loaded = parts.Select(p => p.Load()).ToList();
            var deq = Dequantized(arch, loaded, master, r);
            var encoded = new byte[GgufBlocks.ByteLength(type, deq.Length)];
            bool all = true;
            long at = 0;
            int written = 0;
            foreach (var q in loaded)
            {
                long n = (long)q.OutFeatures * q.InFeatures;
                var (bytes, allExact) = GgufQuantizedCodes.EncodeK(q, master, spec, r, arch.RowPerm(q.Name, q.OutFeatures), deq, at);
                bytes.CopyTo(encoded.AsSpan(written));
                written += bytes.Length;
                all &= allExact;
                at += n;
            }
            k.Add(all, parts.Count, deq, GgufBlocks.Decode(type, encoded, deq.Length));
            if (all) counts.Lossless += parts.Count; else counts.Quantized += parts.Count;
            exact = all;
            return encoded;
        });
        return (type, () => exact ?? throw new InvalidOperationException($"{name} has not been written yet"));
    }

    // float tensors grouped into their GGUF tensors: 1-D → f32, embedding/head → embed, other 2-D → matrix
    private static void AddFloats(GgufWriter w, GgufArchitecture arch, List<Part> tensors, GgmlType embed, GgmlType matrix, List<string> fallbacks,
        List<(string Name, GgmlType To)> kFallbacks, Counts counts)
    {
        foreach (var (name, idx) in Group(arch, tensors.Select(t => t.Name)))
        {
            var parts = idx.Select(i => tensors[i]).ToList();
            long cols = parts[0].Shape.Skip(1).Aggregate(1L, (x, y) => x * y), rows = parts.Sum(p => p.Shape[0]);
            bool oneD = parts[0].Shape.Length == 1;
            var ft = oneD ? GgmlType.F32 : name is "token_embd.weight" or "output.weight" ? embed : matrix;
            ft = Fit(ft, cols, parts[0].Name, fallbacks, kFallbacks);
            long[] ne = oneD ? [rows] : [cols, rows];
            w.AddTensor(name, ne, ft, () => GgufBlocks.Encode(ft, Concat(arch, parts).Values));
            // llama.cpp's phi3 loads output.weight as a required tensor: a tied head is written as a copy of the embedding
            bool copyHead = name == "token_embd.weight" && arch.Fused && arch.Config.TieWordEmbeddings;
            if (copyHead) w.CopyTensor(name, "output.weight");
            int n = copyHead ? 2 : 1;
            if (GgufBlocks.IsBlockType(ft)) counts.Quantized += n; else counts.Floats += n;
        }
    }

    private static void AddFallbackNote(List<string> notes, List<string> fallbacks, List<(string Name, GgmlType To)> kFallbacks)
    {
        foreach (var g in kFallbacks.GroupBy(f => f.To))
            notes.Add($"{g.Count()} tensor(s) have rows that are not a multiple of 256 values and were written as {g.Key} (llama.cpp's fallback): " +
                      $"{string.Join(", ", g.Take(4).Select(f => f.Name))}{(g.Count() > 4 ? ", ..." : "")}");
        if (fallbacks.Count > 0)
            notes.Add($"{fallbacks.Count} tensor(s) have rows that are not a multiple of 32 values and were written as f16: {string.Join(", ", fallbacks.Take(4))}{(fallbacks.Count > 4 ? ", ..." : "")}");
    }

    // model tensors grouped by GGUF name in first-appearance order; a fused group's parts in row order (q, k, v; gate, up)
    private static List<(string Name, List<int> Parts)> Group(GgufArchitecture arch, IEnumerable<string> names)
    {
        var groups = new List<(string Name, List<(int Part, int Index)> Parts)>();
        var at = new Dictionary<string, int>(StringComparer.Ordinal);
        int i = 0;
        foreach (var hf in names)
        {
            var (name, part) = arch.TensorName(hf);
            if (!at.TryGetValue(name, out int g)) { at[name] = g = groups.Count; groups.Add((name, [])); }
            groups[g].Parts.Add((part, i++));
        }
        foreach (var (name, parts) in groups)
        {
            int want = arch.PartsOf(name);
            if (parts.Count != want || parts.Select(p => p.Part).Distinct().Count() != want)
                throw new MatqException($"GGUF tensor {name}: {parts.Count} model tensors map to it, expected {want} ({arch.Config.Family} model)");
        }
        return groups.Select(g => (g.Name, g.Parts.OrderBy(p => p.Part).Select(p => p.Index).ToList())).ToList();
    }

    // parts → (rows, row length, values): norms stored as 1 + w for Gemma, q/k rows (and biases) permuted for the llama
    // architecture, parts concatenated by rows. A 1-D tensor is `rows` values of length 1.
    private static (long Rows, long Cols, float[] Values) Concat(GgufArchitecture arch, List<Part> parts)
    {
        long cols = parts[0].Shape.Skip(1).Aggregate(1L, (x, y) => x * y), rows = parts.Sum(p => p.Shape[0]);
        var vals = new float[checked(rows * cols)];
        long at = 0;
        foreach (var (hf, shape, values) in parts)
        {
            var v = values();
            int r = checked((int)shape[0]);
            if (shape.Skip(1).Aggregate(1L, (x, y) => x * y) != cols) throw new MatqException($"{hf}: fused parts have different row lengths");
            var stored = arch.StoredNorm(hf, v);
            var perm = arch.RowPerm(hf, r);
            for (int i = 0; i < r; i++) Array.Copy(stored, (perm?[i] ?? i) * cols, vals, at + i * cols, cols);
            at += r * cols;
        }
        return (rows, cols, vals);
    }

    private static int AddExtraTensors(GgufWriter w, GgufArchitecture arch)
    {
        int n = 0;
        foreach (var (name, values) in arch.ExtraTensors()) { w.AddTensor(name, [values.Length], GgmlType.F32, GgufBlocks.Encode(GgmlType.F32, values)); n++; }
        return n;
    }

    // llama_ftype: the k-quants as their all-one-type variants (Q3_K_S, Q4_K_S, Q5_K_S)
    private static int FileType(GgmlType t) => t switch
    {
        GgmlType.F32 => 0, GgmlType.F16 => 1, GgmlType.Q4_0 => 2, GgmlType.Q4_1 => 3, GgmlType.Q2_K => 10, GgmlType.Q3_K => 11,
        GgmlType.Q4_K => 14, GgmlType.Q5_K => 16, GgmlType.Q6_K => 18, _ => 7,
    };

    /// <summary>GGUF row → HF row for q_proj/k_proj weights and biases (see the file header); null for every other tensor.
    /// The llama architecture only (GgufArchitecture.RowPerm): the NEOX-rope architectures keep HF's row order.</summary>
    public static int[]? RowPerm(string hf, int rows, int heads, int kvHeads, int headDim)
    {
        static bool Is(string hf, string module) =>
            hf.EndsWith(module + ".weight", StringComparison.Ordinal) || hf.EndsWith(module + ".bias", StringComparison.Ordinal);
        int h = Is(hf, "self_attn.q_proj") ? heads : Is(hf, "self_attn.k_proj") ? kvHeads : 0;
        if (h == 0) return null;
        if (rows != h * headDim || headDim % 2 != 0) throw new MatqException($"{hf}: {rows} rows do not split into {h} heads of even size {headDim}");
        var src = new int[rows];
        int half = headDim / 2;
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++) src[hh * headDim + 2 * i + j] = hh * headDim + j * half + i;
        return src;
    }

    /// <summary>GPT-2 BPE (encoder.json + vocab.bpe) → tokenizer.ggml.model = gpt2 with tokens, token_type, merges.
    /// The byte tokenizer (256 ids, id = byte) → also gpt2: 256 tokens spelled in GPT-2's byte-level alphabet and no
    /// merges, so llama.cpp's BPE yields exactly one token per byte, and decoding maps them back to the bytes.</summary>
    private static void AddTokenizer(GgufWriter w, string? folder, string? problem, string? kind, List<string> notes, int vocabSize)
    {
        if (folder is null)
        {
            // llama.cpp loads a model without a vocabulary when the model says so ("none"); without the key it refuses
            w.Add("tokenizer.ggml.model", "none");
            notes.Add($"no tokenizer written (tokenizer.ggml.model = none; feed token ids): {problem}");
            return;
        }
        string enc = Path.Combine(folder, "encoder.json"), bpe = Path.Combine(folder, "vocab.bpe");
        if (File.Exists(enc) && File.Exists(bpe))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(enc));
            var pairs = doc.RootElement.EnumerateObject().Select(p => (p.Name, Id: p.Value.GetInt32())).OrderBy(p => p.Id).ToList();
            if (pairs.Where((p, i) => p.Id != i).Any()) throw new MatqException($"{enc}: token ids are not 0..n−1");
            var tokens = pairs.Select(p => p.Name).ToArray();
            var merges = File.ReadLines(bpe).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToArray();
            int eot = Array.IndexOf(tokens, "<|endoftext|>");
            w.Add("tokenizer.ggml.model", "gpt2").Add("tokenizer.ggml.pre", "gpt-2").Add("tokenizer.ggml.tokens", tokens)
             .Add("tokenizer.ggml.token_type", tokens.Select((_, i) => i == eot ? 3 : 1).ToArray()).Add("tokenizer.ggml.merges", merges);
            if (eot >= 0) w.Add("tokenizer.ggml.bos_token_id", (uint)eot).Add("tokenizer.ggml.eos_token_id", (uint)eot);
            return;
        }
        if (kind?.Contains("byte", StringComparison.OrdinalIgnoreCase) == true || File.Exists(Path.Combine(folder, "matq_tokenizer.json")))
        {
            // 256 byte tokens, then BOS (256) and EOS (257) when the model's vocabulary holds them (matq's byte tokenizer with
            // bos_eos); a 256-token vocabulary has none, so BOS/EOS are switched off rather than left to llama.cpp's defaults
            var tokens = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.ByteToChar[b].ToString()).ToList();
            var types = Enumerable.Repeat(1, 256).ToList();
            bool special = vocabSize >= 258;
            if (special) { tokens.AddRange(["<s>", "</s>"]); types.AddRange([3, 3]); }
            for (int i = tokens.Count; i < vocabSize; i++) { tokens.Add($"<unused{i}>"); types.Add(5); }
            w.Add("tokenizer.ggml.model", "gpt2").Add("tokenizer.ggml.pre", "default").Add("tokenizer.ggml.tokens", tokens.ToArray())
             .Add("tokenizer.ggml.token_type", types.ToArray()).Add("tokenizer.ggml.merges", Array.Empty<string>())
             .Add("tokenizer.ggml.add_bos_token", special).Add("tokenizer.ggml.add_eos_token", false);
            if (special) w.Add("tokenizer.ggml.bos_token_id", 256u).Add("tokenizer.ggml.eos_token_id", 257u);
            notes.Add($"byte tokenizer written as gpt2 BPE with 256 byte-level tokens and no merges (one token per byte){(special ? ", BOS 256, EOS 257" : ", no BOS/EOS")}");
            return;
        }
        w.Add("tokenizer.ggml.model", "none");
        notes.Add($"no tokenizer written (tokenizer.ggml.model = none; feed token ids): tokenizer kind '{kind}' has no GGUF mapping in matq yet");
    }
}
