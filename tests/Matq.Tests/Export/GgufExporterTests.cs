// GGUF export of models/tiny (1.05M params, byte tokenizer): Llama metadata, llama.cpp tensor names and shapes, the
// lossless q4_1/q8_0 paths decode to matq's served weights (up to the fp16 block scales), asymmetric q8_0 is re-quantized
// and says so, and the q/k row permutation turns HF's rotate-half rope into llama.cpp's interleaved-pair rope exactly
// (rope(P·W·x) = P·rope_hf(W·x), so every attention score is unchanged).
using Matq.Export;
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class GgufExporterTests
{
    internal static string TinyModel => Path.Combine(HfFixtures.Root, "models", "tiny");

    internal static string TinyArtifact(QuantizationConfig config)
    {
        using var model = LlamaLoader.Load(TinyModel, CPU);
        var result = PipelineFixtures.Quantize(model, config);
        var path = Path.Combine(HfFixtures.TempDir(), "tiny.matq");
        ArtifactExport.Write(result, model, path, TinyModel);
        return path;
    }

    [Fact]
    public void The_header_carries_the_llama_metadata_names_shapes_and_the_byte_tokenizer()
    {
        var artifact = TinyArtifact(PipelineFixtures.Rtn(8, 32));
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny.gguf");
        var report = GgufExporter.Export(artifact, GgmlType.Q4_1, gguf);
        var f = GgufFile.Open(gguf);
        var config = ArtifactSource.ModelConfig(MatqArtifact.Open(artifact));

        Assert.Equal("llama", Assert.IsType<string>(f.Get("general.architecture")));
        uint U(string key) => Assert.IsType<uint>(f.Get(key));
        Assert.Equal((uint)config.NumLayers, U("llama.block_count"));
        Assert.Equal((uint)config.HiddenSize, U("llama.embedding_length"));
        Assert.Equal((uint)config.IntermediateSize, U("llama.feed_forward_length"));
        Assert.Equal((uint)config.NumHeads, U("llama.attention.head_count"));
        Assert.Equal((uint)config.NumKvHeads, U("llama.attention.head_count_kv"));
        Assert.Equal((uint)config.MaxPositionEmbeddings, U("llama.context_length"));
        Assert.Equal((uint)config.HeadDim, U("llama.rope.dimension_count"));
        Assert.Equal((float)config.RmsNormEps, Assert.IsType<float>(f.Get("llama.attention.layer_norm_rms_epsilon")));
        Assert.Equal(3u, U("general.file_type")); // MOSTLY_Q4_1
        Assert.Equal("gpt2", Assert.IsType<string>(f.Get("tokenizer.ggml.model")));
        var tokens = (object[])f.Get("tokenizer.ggml.tokens")!;
        Assert.Equal(256, tokens.Length);
        Assert.Empty((object[])f.Get("tokenizer.ggml.merges")!);

        // every HF tensor once, under its llama.cpp name, ne = reversed HF shape; quantized linears q4_1, norms f32, the
        // embedding and the (unquantized) head q8_0 — llama.cpp's quantizer's choice (they were f16 before --embed-type)
        var expected = LlamaTensors.Expected(config).ToDictionary(e => GgufArchitecture.For(config).TensorName(e.Name).Name, e => e.Shape);
        Assert.Equal(expected.Keys.Order(), f.Tensors.Select(t => t.Name).Order());
        foreach (var t in f.Tensors)
        {
            Assert.Equal(expected[t.Name], t.Shape);
            var want = t.Name.EndsWith("norm.weight", StringComparison.Ordinal) ? GgmlType.F32
                : t.Name is "token_embd.weight" or "output.weight" ? GgmlType.Q8_0 : GgmlType.Q4_1; // lm_head was not quantized
            Assert.Equal(want, t.Type);
        }
        Assert.Equal(28, report.Lossless);
        Assert.Equal(2, report.Requantized);   // the embedding and the head, from their float values
        Assert.Contains("blk.3.ffn_down.weight", f.Tensors.Select(t => t.Name));
        Assert.Contains("output.weight", f.Tensors.Select(t => t.Name));
    }

    [Theory]
    [InlineData(8, 32, false, "q4_1", 4)]
    [InlineData(8, 128, false, "q4_1", 4)]
    [InlineData(4, 64, false, "q4_1", 4)]
    [InlineData(8, 32, true, "q4_0", 4)]
    [InlineData(8, 64, true, "q8_0", 8)]
    public void Lossless_block_types_decode_to_the_served_weights_with_q_and_k_rows_permuted(int master, int group, bool symmetric, string type, int bits)
    {
        var artifact = TinyArtifact(PipelineFixtures.Rtn(master, group, symmetric));
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny.gguf");
        var report = GgufExporter.Export(artifact, GgufExporter.ParseType(type), gguf, embedType: GgmlType.F16);
        Assert.Equal(28, report.Lossless);
        Assert.Equal(0, report.Requantized);
        var a = MatqArtifact.Open(artifact);
        var config = ArtifactSource.ModelConfig(a);
        var f = GgufFile.Open(gguf);
        foreach (var q in a.Quantized)
        {
            var info = f.Tensors.Single(t => t.Name == GgufArchitecture.For(config).TensorName(q.Name).Name);
            var decoded = GgufBlocks.Decode(info.Type!.Value, f.ReadTensorBytes(info), info.Count);
            using var servedT = QuantizedModelLoader.ServedWeight(q, master, bits, extraPrecision: false).Weight;
            var served = servedT.data<float>().ToArray();
            var perm = GgufExporter.RowPerm(q.Name, q.OutFeatures, config.NumHeads, config.NumKvHeads, config.HeadDim);
            // fp16 block scale/min: each value is off by at most a few fp16 ulps of d·S and m
            float tol = 2e-3f * served.Max(v => Math.Abs(v));
            for (int o = 0; o < q.OutFeatures; o++)
            {
                int src = perm?[o] ?? o;
                for (int i = 0; i < q.InFeatures; i++)
                {
                    float got = decoded[(long)o * q.InFeatures + i], want = served[(long)src * q.InFeatures + i];
                    Assert.True(Math.Abs(got - want) <= tol, $"{info.Name} row {o} (HF row {src}) col {i}: GGUF {got}, matq {want}");
                }
            }
        }
    }

    [Fact]
    public void Asymmetric_codes_are_re_quantized_for_q8_0_and_the_report_says_so()
    {
        var artifact = TinyArtifact(PipelineFixtures.Rtn(8, 32));
        var report = GgufExporter.Export(artifact, GgmlType.Q8_0, Path.Combine(HfFixtures.TempDir(), "tiny.gguf"));
        Assert.Equal(0, report.Lossless);
        Assert.Equal(30, report.Requantized);   // 28 linears + the q8_0 embedding and head
        Assert.Contains(report.Notes, n => n.Contains("(re-)quantized", StringComparison.Ordinal));
    }

    [Fact]
    public void A_row_length_that_is_not_a_multiple_of_32_falls_back_to_f16_for_that_tensor_alone()
    {
        // Before: one such tensor refused the whole block-type export. Now it alone is written as f16 (what llama.cpp's
        // quantizer does), the other linears keep the block type, and the notes name it.
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32)); // tiny-llama: down_proj in = 176
        var gguf = Path.Combine(HfFixtures.TempDir(), "t.gguf");
        var report = GgufExporter.Export(path, GgmlType.Q4_1, gguf);
        var g = GgufFile.Open(gguf);
        Assert.Equal(GgmlType.F16, g.Tensors.Single(t => t.Name == "blk.0.ffn_down.weight").Type);
        Assert.Equal(GgmlType.Q4_1, g.Tensors.Single(t => t.Name == "blk.0.ffn_up.weight").Type);
        Assert.Equal(GgmlType.Q8_0, g.Tensors.Single(t => t.Name == "token_embd.weight").Type);   // llama.cpp's choice for embeddings
        Assert.Contains(report.Notes, n => n.Contains("2 tensor(s) have rows that are not a multiple of 32", StringComparison.Ordinal));
        // (this asserted "q5_k" before the k-quants existed; a type matq still does not write is refused in one line)
        var e = Assert.Throws<MatqException>(() => GgufExporter.ParseType("iq2_xs"));
        Assert.Equal("--type iq2_xs is not supported for GGUF: use one of f32, f16, q8_0, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k", e.Message);
    }

    // Before: a model_config contradicting the tensors was written into the GGUF header (llama.cpp misreads it; exit 0),
    // and a vocab_size of 2^31 crashed with FormatException. Now the export checks the config as eval does.
    [Theory]
    [InlineData("hidden_size", "128", "model.embed_tokens.weight")]
    [InlineData("num_hidden_layers", "3", "model.layers.2")]
    [InlineData("num_hidden_layers", "1", "not used")]
    [InlineData("vocab_size", "1000", "model.embed_tokens.weight")]
    [InlineData("intermediate_size", "64", "gate_proj")]
    [InlineData("num_key_value_heads", "4", "k_proj")]
    [InlineData("vocab_size", "2147483648", "vocab_size")]
    [InlineData("num_attention_heads", "0", "num_attention_heads")]
    public void A_model_config_that_contradicts_the_tensors_is_refused_like_eval_does(string key, string value, string fragment)
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var edited = Path.Combine(Path.GetDirectoryName(artifact)!, "edited.matq");
        Fuzz.ArtifactEdits.SetModelConfig(artifact, edited, key, value);
        var gguf = Path.Combine(Path.GetDirectoryName(artifact)!, "edited.gguf");
        var evalError = Assert.Throws<MatqException>(() => ModelSource.Open(edited).Dispose());
        var e = Assert.Throws<MatqException>(() => GgufExporter.Export(edited, GgmlType.Q4_1, gguf));
        Assert.Equal(evalError.Message, e.Message);
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(File.Exists(gguf));
        GgufExporter.Export(artifact, GgmlType.F16, gguf); // the unedited artifact still exports
        Assert.True(File.Exists(gguf));
    }

    [Fact]
    public void Gguf_rows_h_D_plus_2i_plus_j_come_from_hf_rows_h_D_plus_j_D_over_2_plus_i()
    {
        var perm = GgufExporter.RowPerm("model.layers.0.self_attn.k_proj.weight", 8, 4, 2, 4)!;
        // two kv heads of D = 4: GGUF rows [0 1 2 3 | 4 5 6 7] ← HF rows [0 2 1 3 | 4 6 5 7]
        Assert.Equal([0, 2, 1, 3, 4, 6, 5, 7], perm);
        Assert.Null(GgufExporter.RowPerm("model.layers.0.self_attn.v_proj.weight", 8, 4, 2, 4));
        Assert.Throws<MatqException>(() => GgufExporter.RowPerm("model.layers.0.self_attn.q_proj.weight", 10, 4, 2, 4));
    }

    [Fact]
    public void Llama_cpp_interleaved_rope_on_the_exported_q_and_k_equals_matq_rope_on_hf_q_and_k()
    {
        // f32 export: q/k rows only permuted, so GGUF weights = matq's served weights (8 = master bits) up to row order
        var artifact = TinyArtifact(PipelineFixtures.Rtn(8, 32));
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny-f32.gguf");
        GgufExporter.Export(artifact, GgmlType.F32, gguf);
        var f = GgufFile.Open(gguf);
        using var served = QuantizedModelLoader.Load(artifact, 8);
        var c = served.Config;
        int d = c.HeadDim, heads = c.NumHeads, kvHeads = c.NumKvHeads, pos = 37;
        var rng = new Random(11);
        var x = Enumerable.Range(0, c.HiddenSize).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

        float[] Gguf(string name) { var t = f.Tensors.Single(t => t.Name == name); return GgufBlocks.Decode(GgmlType.F32, f.ReadTensorBytes(t), t.Count); }
        var qG = InterleavedRope(MatVec(Gguf("blk.1.attn_q.weight"), x, heads * d), heads, d, pos, c.RopeTheta);
        var kG = InterleavedRope(MatVec(Gguf("blk.1.attn_k.weight"), x, kvHeads * d), kvHeads, d, pos, c.RopeTheta);

        var qH = HfRope(served, PipelineFixtures.WeightOf(served, "model.layers.1.self_attn.q_proj"), x, heads, d, pos);
        var kH = HfRope(served, PipelineFixtures.WeightOf(served, "model.layers.1.self_attn.k_proj"), x, kvHeads, d, pos);

        var permQ = GgufExporter.RowPerm("model.layers.1.self_attn.q_proj.weight", heads * d, heads, kvHeads, d)!;
        // fp32 rope tables (HF) vs double angles here: a few 1e-6 relative
        double tol = 1e-4 * Math.Max(1, qH.Max(v => Math.Abs(v)));
        for (int r = 0; r < heads * d; r++) Assert.True(Math.Abs(qG[r] - qH[permQ[r]]) < tol, $"q row {r}: {qG[r]} vs HF {qH[permQ[r]]}");
        // scores of query head h against its kv head h/(H/Hkv): identical, so attention is unchanged
        for (int h = 0; h < heads; h++)
        {
            int kv = h / (heads / kvHeads);
            double sG = 0, sH = 0;
            for (int i = 0; i < d; i++) { sG += qG[h * d + i] * kG[kv * d + i]; sH += qH[h * d + i] * kH[kv * d + i]; }
            Assert.True(Math.Abs(sG - sH) < 1e-3 * Math.Max(1, Math.Abs(sH)), $"head {h}: score {sG} vs HF {sH}");
        }
        // without the permutation the interleaved rope gives different scores
        var qRaw = InterleavedRope(MatVec(PipelineFixtures.Floats(PipelineFixtures.WeightOf(served, "model.layers.1.self_attn.q_proj")), x, heads * d), heads, d, pos, c.RopeTheta);
        Assert.True(qRaw.Zip(qH, (a, b) => Math.Abs(a - b)).Max() > 1e-2);
    }

    private static float[] MatVec(float[] w, float[] x, int rows)
    {
        var y = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int i = 0; i < x.Length; i++) s += (double)w[r * x.Length + i] * x[i];
            y[r] = (float)s;
        }
        return y;
    }

    // llama.cpp's normal rope: pairs (2i, 2i+1) of each head rotated by pos·θ^(−2i/D)
    private static float[] InterleavedRope(float[] v, int heads, int d, int pos, double theta)
    {
        var y = new float[v.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < d / 2; i++)
            {
                double a = pos * Math.Pow(theta, -2.0 * i / d), cos = Math.Cos(a), sin = Math.Sin(a);
                float x0 = v[h * d + 2 * i], x1 = v[h * d + 2 * i + 1];
                y[h * d + 2 * i] = (float)(x0 * cos - x1 * sin);
                y[h * d + 2 * i + 1] = (float)(x0 * sin + x1 * cos);
            }
        return y;
    }

    // matq's HF-convention rope (RotaryEmbedding, rotate-half) on W·x at one position; returns [heads·D]
    private static float[] HfRope(LlamaForCausalLM model, Tensor w, float[] x, int heads, int d, int pos)
    {
        using var scope = NewDisposeScope();
        var q = matmul(w, tensor(x)).view(1, heads, 1, d);
        var (cos, sin) = model.Rotary.ForRange(pos, 1, CPU, ScalarType.Float32);
        return RotaryEmbedding.Apply(q, cos, sin).contiguous().data<float>().ToArray();
    }
}
