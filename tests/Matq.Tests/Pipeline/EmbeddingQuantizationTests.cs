// Contract: a quantized embedding (QuantizationConfig.EmbeddingBits, `quantize --embedding-bits`) end to end: the row-sliced
// quantizer equals the scalar reference on the whole table; the artifact stores it as codes/scales/zeros (round trip
// through MatqArtifact and the memory map, recorded in algorithm_config, no float table left with an untied head
// quantized, no head tensor for a tied model); the torch engine serves it dequantized at r bits; the packed runtime
// (loaded and memory-mapped, bit for bit alike) gives the torch engine's logits at 8/4/2 bits on models/tiny and the
// tiny-llama / tiny-qwen2 (tied) fixtures; GGUF (llama.cpp runs it) and ONNX (ORT) exports of such an artifact.
using Matq.Export;
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Formats.Safetensors;
using Matq.Kernels.Quantization;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Packed;
using Matq.Tests.Export;
using Matq.Tests.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

public sealed class EmbeddingQuantizationTests(ITestOutputHelper output)
{
    private const string Embed = "model.embed_tokens.weight";

    private static QuantizationConfig Rtn(int bits, int group, bool head = false, bool symmetric = false) =>
        new("rtn", bits, group, symmetric, head, new Dictionary<string, string> { ["clip"] = "minmax" }, embeddingBits: bits);

    private static string ModelFolder(string name) => name == "tiny" ? GgufExporterTests.TinyModel : HfFixtures.Path(name);

    // as `matq quantize` writes it: float tensors (and the embedding's source) in the checkpoint dtype
    private static string Write(string model, QuantizationConfig config, string file)
    {
        var folder = ModelFolder(model);
        using var m = LlamaLoader.Load(folder, CPU);
        var result = PipelineFixtures.Quantize(m, config);
        var path = Path.Combine(HfFixtures.TempDir(), file);
        var written = ArtifactExport.Write(result, m, path, folder, ArtifactExport.InSourceDtypes(m, LlamaLoader.SourceDtypes(folder)));
        Assert.NotNull(written.Embedding);
        return path;
    }

    [Theory]
    [InlineData(SafetensorsDtype.F32, 8, 32, false)]
    [InlineData(SafetensorsDtype.BF16, 4, 64, false)]
    [InlineData(SafetensorsDtype.F16, 8, -1, true)]
    public void The_row_sliced_quantizer_equals_the_scalar_reference_on_the_whole_table(SafetensorsDtype dtype, int bits, int group, bool symmetric)
    {
        int rows = 2 * EmbeddingQuantizer.SliceRows + 37, cols = 96;   // three slices, the last one short; a short last group
        var rng = new Random(3);
        var values = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.05f).ToArray();
        byte[] data = dtype switch
        {
            SafetensorsDtype.F32 => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray(),
            SafetensorsDtype.BF16 => SafetensorsDtypes.Float32ToBf16(values),
            _ => values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray(),
        };
        var widened = SafetensorsDtypes.ToFloat32(dtype, data, "table");
        var config = new QuantizationConfig("rtn", bits, group, symmetric, embeddingBits: bits);
        var (q, report) = EmbeddingQuantizer.Quantize(Embed, dtype, data, rows, cols, config);
        var (p, codes) = AffineQuantizer.QuantizeMatrix(widened, rows, cols, config.Spec);
        Assert.Equal(codes, q.Codes);
        Assert.Equal(p.Scales, q.Scales);
        Assert.Equal(p.Zeros.Select(z => (float)z).ToArray(), q.Zeros);
        Assert.Equal(config.StoredGroupSize(cols), q.GroupSize);
        var deq = q.Dequantize();
        double mse = widened.Select((x, i) => (double)(x - deq[i]) * (x - deq[i])).Sum() / widened.Length;
        Assert.Equal(mse, report.WeightMse, 1e-12);
        Assert.True(mse > 0);
    }

    [Fact]
    public void Rows_read_in_place_from_the_checkpoint_give_the_codes_of_the_whole_stored_table()
    {
        using var stream = LlamaBlockStream.Open(GgufExporterTests.TinyModel);   // bf16 checkpoint
        var (dtype, read) = stream.StoredReader(Embed) ?? throw new Xunit.Sdk.XunitException("models/tiny's embedding has no in-place reader");
        Assert.Equal(SafetensorsDtype.BF16, dtype);
        var (sourceDtype, bytes) = stream.ReadSource(Embed, [stream.Config.VocabSize, stream.Config.HiddenSize]);
        var config = Rtn(8, 64);
        var (inPlace, _) = EmbeddingQuantizer.Quantize(Embed, dtype, read, stream.Config.VocabSize, stream.Config.HiddenSize, config);
        var (whole, _) = EmbeddingQuantizer.Quantize(Embed, sourceDtype, bytes, stream.Config.VocabSize, stream.Config.HiddenSize, config);
        Assert.Equal(whole.Codes, inPlace.Codes);
        Assert.Equal(whole.Scales, inPlace.Scales);
        Assert.Equal(whole.Zeros, inPlace.Zeros);
    }

    [Fact]
    public void The_artifact_stores_codes_only_records_the_option_and_reads_back_loaded_and_mapped()
    {
        // tiny-llama is untied: with --include-head nothing large stays float
        var path = Write("tiny-llama", Rtn(8, 32, head: true), "untied.matq");
        var a = MatqArtifact.Open(path);
        Assert.True(a.IsQuantized(Embed));
        Assert.True(a.IsQuantized("lm_head.weight"));
        Assert.All(a.Floats, f => Assert.Single(f.Shape));   // norms only
        Assert.Equal(8, a.Metadata.AlgorithmConfig.GetProperty("embedding_bits").GetInt32());
        var q = a.GetQuantized(Embed);
        using var model = LlamaLoader.Load(HfFixtures.Path("tiny-llama"), CPU);
        var source = PipelineFixtures.Floats(model.Embedding.Weight);
        var (want, _) = AffineQuantizer.QuantizeMatrix(source, q.OutFeatures, q.InFeatures, QuantSpec.Grouped(8, 32, QuantScheme.Asymmetric));
        Assert.Equal(want.Scales, q.Scales);
        using var mapped = MappedMatqArtifact.Open(path);
        Assert.True(mapped.TryGetQuantized(Embed, out var entry));
        Assert.False(mapped.TryGetFloat(Embed, out _));
        using (var codes = mapped.MapCodes(entry)) Assert.True(codes.Span.SequenceEqual(q.Codes));
        Assert.Equal(q.Zeros, mapped.ReadParts(entry).Zeros);

        // tied (tiny-qwen2): the head has no tensor of its own
        var tied = MatqArtifact.Open(Write("tiny-qwen2", Rtn(8, 32), "tied.matq"));
        Assert.True(tied.IsQuantized(Embed));
        Assert.False(tied.IsQuantized("lm_head.weight") || tied.TryGetFloat("lm_head.weight", out _));
    }

    [Theory]
    [InlineData("tiny", 64)]
    [InlineData("tiny-llama", 32)]
    [InlineData("tiny-qwen2", 32)]
    public void Packed_runtime_logits_equal_the_torch_engines_at_8_4_2_bits(string model, int group)
    {
        var path = Write(model, Rtn(8, group), model + ".matq");
        var q = MatqArtifact.Open(path).GetQuantized(Embed);
        var loadedArtifact = MatqArtifact.Open(path);
        foreach (int bits in new[] { 8, 4, 2 })
        {
            using var served = QuantizedModelLoader.Load(path, bits);
            // the torch engine's table is the codes sliced to r bits and dequantized
            var (wr, _) = QuantizedModelLoader.ServedWeight(q, 8, bits, false);
            Assert.Equal(PipelineFixtures.Floats(wr), PipelineFixtures.Floats(served.Embedding.Weight));
            wr.Dispose();

            var packed = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits });
            Assert.Null(packed.Embedding);
            Assert.Null(packed.StoredEmbedding);
            Assert.NotNull(packed.PackedEmbedding);
            Assert.Equal(bits, packed.PackedEmbedding!.SliceBits);
            if (served.Config.TieWordEmbeddings) Assert.Same(packed.PackedEmbedding, packed.Head.Packed);
            var rng = new Random(bits);
            var ids = Enumerable.Range(0, 40).Select(_ => rng.Next(served.Config.VocabSize)).ToArray();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var want = served.call(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length])).contiguous().data<float>().ToArray();
            var got = new PackedLlamaSession(packed, threads: 1, activations: PackedActivations.Fp32).Forward(ids, allLogits: true);
            double worst = 0, scale = want.Max(Math.Abs);
            for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - got[i]));
            output.WriteLine($"{model} r={bits}: packed vs torch max |Δ| {worst:E3} (max |logit| {scale:F2})");
            // the packed layout keeps fp16 group scales (≤ 2^-12 relative each) on every table, here the embedding and the
            // tied head too; on the trained models/tiny (logits to 23, large group partial sums) that reaches 2e-3·max|logit|
            // at r = 4 (4.5e-2); a wiring fault (wrong row, slice or zero) is off by the order of the logits themselves
            Assert.True(worst <= 5e-3 * Math.Max(1, scale), $"{model} at {bits} bits: packed differs from torch by {worst:E3}");

            // the memory-mapped load and the in-memory load agree bit for bit
            var inMemory = new PackedLlamaSession(PackedLlamaModel.Load(loadedArtifact, new PackedModelOptions { Bits = bits }), threads: 1,
                activations: PackedActivations.Fp32).Forward(ids, allLogits: true);
            Assert.Equal(inMemory, got);
        }
    }

    [Fact]
    public void The_packed_embedding_is_held_at_r_bits_and_a_lookup_dequantizes_one_row()
    {
        var path = Write("tiny", Rtn(8, 64), "rows.matq");
        var q = MatqArtifact.Open(path).GetQuantized(Embed);
        var m8 = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8 });
        var m2 = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 2 });
        Assert.True(m2.PackedEmbedding!.WeightBytes < m8.PackedEmbedding!.WeightBytes / 2);
        var (w2, _) = QuantizedModelLoader.ServedWeight(q, 8, 2, false);
        var want = PipelineFixtures.Floats(w2);
        w2.Dispose();
        var row = new float[q.InFeatures];
        foreach (int id in new[] { 0, 65, q.OutFeatures - 1 })
        {
            m2.Embed(id, row);
            // exact but for the packed layout's fp16 group scale: relative rounding ≤ 2^-11 of each value
            for (int k = 0; k < row.Length; k++)
            {
                float w = want[id * q.InFeatures + k];
                Assert.True(Math.Abs(w - row[k]) <= Math.Abs(w) * Math.Pow(2, -10) + 1e-6, $"row {id}, column {k}: {row[k]} vs {w}");
            }
        }
    }

    [Theory]
    // symmetric 8-bit codes: token_embd copied into q8_0 blocks; asymmetric: re-quantized to q8_0 from ŵ_8; tiny-qwen2 is
    // tied: llama.cpp takes its output head from token_embd
    [InlineData("tiny", true, true)]
    [InlineData("tiny", false, false)]
    [InlineData("tiny-qwen2", true, true)]
    public void A_gguf_export_writes_token_embd_from_the_codes_and_llama_cpp_tracks_matq(string model, bool symmetric, bool lossless)
    {
        var path = Write(model, Rtn(8, 32, head: model == "tiny", symmetric: symmetric), "gguf.matq");
        var gguf = Path.Combine(HfFixtures.TempDir(), "emb.gguf");
        var report = GgufExporter.Export(path, GgmlType.Q8_0, gguf);
        Assert.Contains(report.Notes, n => n.StartsWith("token_embd.weight written from the artifact's 8-bit embedding codes as Q8_0: "
            + (lossless ? "codes copied" : "re-quantized"), StringComparison.Ordinal));
        var read = GgufFile.Open(gguf);
        Assert.Equal(GgmlType.Q8_0, read.Tensors.Single(t => t.Name == "token_embd.weight").Type);
        using var served = QuantizedModelLoader.Load(path, 8);
        Assert.DoesNotContain(read.Tensors, t => t.Name == "output.weight" && served.Config.TieWordEmbeddings);
        int[] ids = System.Text.Encoding.UTF8.GetBytes("Fellow citizens, the state of our Union is strong.").Select(b => b % served.Config.VocabSize).ToArray();
        var (diff, ratio) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(gguf, ids), GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine($"gguf {model} q8_0 sym={symmetric}: max |Δlogit| {diff:E2}, NLL ratio {ratio:F6}");
        Assert.InRange(diff, 0, 0.3);
        Assert.InRange(ratio, 1 - 5e-3, 1 + 5e-3);
    }

    [Fact]
    public void An_onnx_export_gathers_from_the_dequantized_table_and_matches_matq_in_onnx_runtime()
    {
        var path = Write("tiny-qwen2", Rtn(8, 32), "onnx.matq");   // tied: the head multiplies by the same table
        var onnx = Path.Combine(HfFixtures.TempDir(), "emb.onnx");
        var report = OnnxExporter.Export(path, 4, onnx);
        Assert.Equal(MatqArtifact.ReadMetadata(path).Quantized.Count - 1, report.Quantized.Count);   // the embedding is no MatMulNBits
        using var served = QuantizedModelLoader.Load(path, 4);
        var ids = OnnxVerifier.SampleIds(served.Config.VocabSize, 2, 11, seed: 5);
        var check = OnnxVerifier.Compare(onnx, served, ids, 2, 11);
        output.WriteLine($"onnx r=4: max |Δ| {check.MaxAbsDiff:E3} (max |logit| {check.MaxAbsLogit:F3})");
        Assert.True(check.MaxAbsDiff < 1e-5 * Math.Max(1, check.MaxAbsLogit), $"ORT vs matq: {check.MaxAbsDiff:E3}");
    }
}
