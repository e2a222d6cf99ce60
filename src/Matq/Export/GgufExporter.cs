// Contract: writes a .matq artifact as a llama.cpp-style GGUF v3 file (Gguf/GgufWriter) with Llama metadata, the tokenizer
// and tensors as f32 | f16 | q8_0 | q4_0 | q4_1. Quantized weights take the lossless path (codes copied, scales → fp16)
// where the GGUF block type expresses our grid exactly, else they are re-quantized from ŵ_r (ExportReport says which):
//   q4_1 ← int4 slice, any group that is a multiple of 32 (or per-channel with in % 32 == 0), no act-order perm:
//          ŵ_4 = α(S·16 − z) = d·S + m with d = 16α, m = −αz (each 32-block takes its group's d, m).
//   q4_0 ← int4 slice when z = 128 (symmetric): ŵ_4 = 16α(S − 8) = d(q − 8).    q8_0 ← int8 master when z = 128: d = α, q = c − 128.
// q_proj/k_proj rows are permuted per head from HF's rotate-half order to the interleaved pairs llama.cpp's rope expects:
// GGUF row h·D + 2i + j = HF row h·D + j·D/2 + i (D = head_dim; k uses the KV head count). Rows move whole, so codes stay exact.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Serving;

namespace Matq.Export;

public sealed record GgufExportReport(int Lossless, int Requantized, int Float, IReadOnlyList<string> Notes);

public static class GgufExporter
{
    public static readonly IReadOnlyList<string> Types = ["f32", "f16", "q8_0", "q4_0", "q4_1"];

    public static GgmlType ParseType(string text) => text.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32, "f16" => GgmlType.F16, "q8_0" => GgmlType.Q8_0, "q4_0" => GgmlType.Q4_0, "q4_1" => GgmlType.Q4_1,
        _ => throw new MatqException($"--type {text} is not supported for GGUF: use one of {string.Join(", ", Types)}"),
    };

    /// <summary>
    /// Writes <paramref name="matqPath"/> as GGUF. Quantized linears take <paramref name="type"/>; the token embedding and
    /// an untied output head take <paramref name="embedType"/> (default: q8_0 for the block types, as llama.cpp's own
    /// quantizer does, else <paramref name="type"/>); norms stay f32. A tensor whose rows are not a multiple of 32 values
    /// cannot take a block type: it falls back to f16, and the report's notes name it.
    /// </summary>
    public static GgufExportReport Export(string matqPath, GgmlType type, string outPath, GgmlType? embedType = null)
    {
        var embed = embedType ?? (GgufBlocks.IsBlockType(type) ? GgmlType.Q8_0 : type);
        var a = MatqArtifact.Open(matqPath);
        // the same check eval/generate make: model_config parses as a Llama config and the tensors are exactly the ones it implies
        var cfg = QuantizedModelLoader.ModelConfig(a);
        int heads = cfg.NumHeads, kvHeads = cfg.NumKvHeads, headDim = cfg.HeadDim;
        var w = Header(cfg, type, Path.GetFileNameWithoutExtension(matqPath))
            .Add("matq.master_bits", (uint)a.Metadata.MasterBits).Add("matq.group_size", a.Metadata.GroupSize)
            .Add("matq.algorithm", a.Metadata.Algorithm);
        var notes = new List<string>();
        var (tokFolder, tokProblem) = ModelSource.ArtifactTokenizer(matqPath, a.Metadata);
        AddTokenizer(w, tokFolder, tokProblem, a.Metadata.Tokenizer?.Kind, notes, cfg.VocabSize);
        int lossless = 0, requant = 0, floats = 0;
        var fallbacks = new List<string>();
        foreach (var f in a.Floats)
        {
            var name = GgufName(f.Name);
            var (rows, cols) = f.Shape.Length == 1 ? (1L, f.Shape[0]) : (f.Shape[0], f.Shape.Skip(1).Aggregate(1L, (x, y) => x * y));
            var vals = PermuteRows(f.Name, f.Values, (int)rows, (int)cols, heads, kvHeads, headDim);
            // 1-D tensors (norms) stay f32; the embedding and output head take embedType; other 2-D floats f16 or f32
            bool embedOrHead = name is "token_embd.weight" or "output.weight";
            var ft = f.Shape.Length == 1 ? GgmlType.F32 : embedOrHead ? embed : type == GgmlType.F32 ? GgmlType.F32 : GgmlType.F16;
            if (GgufBlocks.IsBlockType(ft) && cols % GgufBlocks.BlockValues != 0)
            {
                fallbacks.Add(f.Name);
                ft = GgmlType.F16;
            }
            w.AddTensor(name, f.Shape.Reverse().ToArray(), ft, GgufBlocks.Encode(ft, vals));
            if (GgufBlocks.IsBlockType(ft)) requant++; else floats++;
        }
        foreach (var q in a.Quantized)
        {
            var name = GgufName(q.Name);
            long[] ne = [q.InFeatures, q.OutFeatures];
            var perm = RowPerm(q.Name, q.OutFeatures, heads, kvHeads, headDim);
            bool blocks32 = q.GroupWidth % 32 == 0 && q.InFeatures % 32 == 0 && q.Perm is null;
            bool sym = q.Zeros.All(z => z == 128f) && a.Metadata.MasterBits == 8;
            byte[] data;
            if (type == GgmlType.Q4_1 && blocks32 || type is GgmlType.Q4_0 or GgmlType.Q8_0 && blocks32 && sym)
            {
                data = GgufQuantizedCodes.Encode(q, a.Metadata.MasterBits, type, perm);
                lossless++;
            }
            else
            {
                int r = type is GgmlType.Q4_0 or GgmlType.Q4_1 ? Math.Min(4, a.Metadata.MasterBits) : a.Metadata.MasterBits;
                var deq = GgufQuantizedCodes.DequantizeSlice(q, a.Metadata.MasterBits, r, perm);
                if (GgufBlocks.IsBlockType(type) && q.InFeatures % GgufBlocks.BlockValues != 0)
                {
                    // llama.cpp's own quantizer does the same for rows its block type cannot hold
                    fallbacks.Add(q.Name);
                    w.AddTensor(name, ne, GgmlType.F16, GgufBlocks.Encode(GgmlType.F16, deq));
                    floats++;
                    continue;
                }
                data = GgufBlocks.Encode(type, deq);
                if (GgufBlocks.IsBlockType(type)) requant++; else floats++;
            }
            w.AddTensor(name, ne, type, data);
        }
        if (requant > 0) notes.Add($"{requant} tensors were (re-)quantized to a GGUF block type from their values (float embedding/head, asymmetric zero points, act-order perm or groups not a multiple of 32)");
        if (fallbacks.Count > 0)
            notes.Add($"{fallbacks.Count} tensor(s) have rows that are not a multiple of 32 values and were written as f16: {string.Join(", ", fallbacks.Take(4))}{(fallbacks.Count > 4 ? ", ..." : "")}");
        w.Write(outPath);
        return new GgufExportReport(lossless, requant, floats, notes);
    }

    /// <summary>
    /// Writes an HF model folder (float weights, no quantization done by matq) as GGUF: 2-D weights take
    /// <paramref name="type"/> (block types are quantized from the float values, as llama.cpp's quantizer does), the
    /// embedding and head <paramref name="embedType"/> (default q8_0 for block types), norms f32; rows that are not a
    /// multiple of 32 fall back to f16.
    /// </summary>
    public static GgufExportReport ExportFloat(string hfFolder, GgmlType type, string outPath, GgmlType? embedType = null)
    {
        var embed = embedType ?? (GgufBlocks.IsBlockType(type) ? GgmlType.Q8_0 : type);
        using var model = Loading.LlamaLoader.Load(hfFolder, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        var cfg = model.Config;
        var w = Header(cfg, type, Path.GetFileName(Path.GetFullPath(hfFolder).TrimEnd(Path.DirectorySeparatorChar)));
        var notes = new List<string>();
        var kind = ArtifactExport.DetectTokenizerKind(ArtifactExport.TokenizerFileNames.Where(f => File.Exists(Path.Combine(hfFolder, f))).ToArray());
        AddTokenizer(w, kind is null ? null : hfFolder, "the folder holds no tokenizer files", kind, notes, cfg.VocabSize);
        int quantized = 0, floats = 0;
        var fallbacks = new List<string>();
        foreach (var (hf, shape) in Models.LlamaTensors.Expected(cfg))
        {
            var p = model.get_parameter(hf) ?? throw new MatqException($"{hfFolder}: the model has no tensor '{hf}'");
            var vals = p.detach().contiguous().data<float>().ToArray();
            long cols = shape[^1], rows = vals.LongLength / cols;
            vals = PermuteRows(hf, vals, (int)rows, (int)cols, cfg.NumHeads, cfg.NumKvHeads, cfg.HeadDim);
            var name = GgufName(hf);
            var ft = shape.Length == 1 ? GgmlType.F32 : name is "token_embd.weight" or "output.weight" ? embed : type;
            if (GgufBlocks.IsBlockType(ft) && cols % GgufBlocks.BlockValues != 0) { fallbacks.Add(hf); ft = GgmlType.F16; }
            w.AddTensor(name, shape.Reverse().ToArray(), ft, GgufBlocks.Encode(ft, vals));
            if (GgufBlocks.IsBlockType(ft)) quantized++; else floats++;
        }
        if (quantized > 0) notes.Add($"{quantized} float tensors were quantized to GGUF block types from their values (round to nearest per 32-block, as llama.cpp's quantizer)");
        if (fallbacks.Count > 0) notes.Add($"{fallbacks.Count} tensor(s) have rows that are not a multiple of 32 values and were written as f16: {string.Join(", ", fallbacks.Take(4))}{(fallbacks.Count > 4 ? ", ..." : "")}");
        w.Write(outPath);
        return new GgufExportReport(0, quantized, floats, notes);
    }

    // general.* and llama.* keys from the model config, as llama.cpp's llama architecture reads them.
    private static GgufWriter Header(Models.LlamaConfig cfg, GgmlType type, string name)
    {
        // llama.cpp's llama3 rope needs a rope_freqs tensor, and the other families their own GGUF architectures: not written yet
        cfg.RequireClassicLlama("the GGUF export");
        int hidden = cfg.HiddenSize, heads = cfg.NumHeads, kvHeads = cfg.NumKvHeads, headDim = cfg.HeadDim;
        var w = new GgufWriter()
            .Add("general.architecture", "llama").Add("general.name", name)
            .Add("general.alignment", (uint)GgufWriter.Alignment).Add("general.file_type", (uint)FileType(type))
            .Add("llama.context_length", (uint)cfg.MaxPositionEmbeddings).Add("llama.embedding_length", (uint)hidden)
            .Add("llama.block_count", (uint)cfg.NumLayers).Add("llama.feed_forward_length", (uint)cfg.IntermediateSize)
            .Add("llama.attention.head_count", (uint)heads).Add("llama.attention.head_count_kv", (uint)kvHeads)
            .Add("llama.rope.freq_base", (float)cfg.RopeTheta).Add("llama.attention.layer_norm_rms_epsilon", (float)cfg.RmsNormEps)
            .Add("llama.rope.dimension_count", (uint)headDim).Add("llama.vocab_size", (uint)cfg.VocabSize)
            // explicit even when head_dim = hidden/heads: llama.cpp derives n_rot from these and refuses a mismatch
            .Add("llama.attention.key_length", (uint)headDim).Add("llama.attention.value_length", (uint)headDim)
            ;
        if (cfg.RopeScaling == Models.RopeScaling.Linear)
            w.Add("llama.rope.scaling.type", "linear").Add("llama.rope.scaling.factor", (float)cfg.RopeFactor);
        return w;
    }

    private static int FileType(GgmlType t) => t switch { GgmlType.F32 => 0, GgmlType.F16 => 1, GgmlType.Q4_0 => 2, GgmlType.Q4_1 => 3, _ => 7 };

    /// <summary>HF Llama name → llama.cpp GGUF name.</summary>
    public static string GgufName(string hf)
    {
        if (hf == "model.embed_tokens.weight") return "token_embd.weight";
        if (hf == "model.norm.weight") return "output_norm.weight";
        if (hf == "lm_head.weight") return "output.weight";
        var p = hf.Split('.');
        if (p.Length >= 5 && p[0] == "model" && p[1] == "layers")
        {
            string part = string.Join('.', p[3..^1]) switch
            {
                "self_attn.q_proj" => "attn_q", "self_attn.k_proj" => "attn_k", "self_attn.v_proj" => "attn_v", "self_attn.o_proj" => "attn_output",
                "mlp.gate_proj" => "ffn_gate", "mlp.up_proj" => "ffn_up", "mlp.down_proj" => "ffn_down",
                "input_layernorm" => "attn_norm", "post_attention_layernorm" => "ffn_norm",
                var other => throw new MatqException($"tensor '{hf}' ({other}) has no llama.cpp GGUF name; GGUF export supports Llama models"),
            };
            return $"blk.{p[2]}.{part}.{p[^1]}";
        }
        throw new MatqException($"tensor '{hf}' has no llama.cpp GGUF name; GGUF export supports Llama models");
    }

    /// <summary>GGUF row → HF row for q_proj/k_proj (see the file header); null for every other tensor.</summary>
    public static int[]? RowPerm(string hf, int rows, int heads, int kvHeads, int headDim)
    {
        int h = hf.EndsWith("self_attn.q_proj.weight", StringComparison.Ordinal) ? heads
              : hf.EndsWith("self_attn.k_proj.weight", StringComparison.Ordinal) ? kvHeads : 0;
        if (h == 0) return null;
        if (rows != h * headDim || headDim % 2 != 0) throw new MatqException($"{hf}: {rows} rows do not split into {h} heads of even size {headDim}");
        var src = new int[rows];
        int half = headDim / 2;
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++) src[hh * headDim + 2 * i + j] = hh * headDim + j * half + i;
        return src;
    }

    private static float[] PermuteRows(string hf, float[] v, int rows, int cols, int heads, int kvHeads, int headDim)
    {
        var perm = RowPerm(hf, rows, heads, kvHeads, headDim);
        if (perm is null) return v;
        var o = new float[v.Length];
        for (int r = 0; r < rows; r++) Array.Copy(v, perm[r] * cols, o, r * cols, cols);
        return o;
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
            var tokens = Enumerable.Range(0, 256).Select(b => Loading.Tokenizers.ByteLevelAlphabet.ByteToChar[b].ToString()).ToList();
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
