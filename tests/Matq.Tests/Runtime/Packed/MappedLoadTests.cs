// The memory-mapped load (PackedLlamaModel.Load(path): one tensor mapped, sliced and packed at a time, bf16/f16
// embedding and head kept as stored) against the load of the artifact held in memory (PackedLlamaModel.Load(MatqArtifact),
// the path every verb took before): the logits are equal bit for bit — prefill over two chunks, then int8 decode steps —
// on models/tiny (a bf16 checkpoint: bf16 embedding and untied head), on the tiny-llama and tiny-qwen2 (tied, biases)
// fixtures in fp32, bf16 and f16, at several bits, with the head as stored and RTN-quantized at load. A truncated
// artifact and a code above the master range are refused with one line by both loads.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Kernels.Packed;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Packed;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Runtime.Packed;

public sealed class MappedLoadTests
{
    private static int[] Ids(int n, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    private static string Quantized(string folder, ScalarType dtype, int bits, int group, string name)
    {
        using var model = LlamaLoader.Load(folder, CPU, dtype);
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(bits, group));
        var path = Path.Combine(HfFixtures.TempDir(), name);
        ArtifactExport.Write(result, model, path);
        return path;
    }

    /// <summary>A copy of <paramref name="path"/> with every float tensor narrowed to <paramref name="dtype"/> (BF16 or F16).</summary>
    private static string WithFloats(string path, SafetensorsDtype dtype)
    {
        var writer = new SafetensorsWriter();
        using (var f = SafetensorsFile.Open(path))
        {
            foreach (var (k, v) in f.Metadata) writer.Metadata[k] = v;
            var md = MatqArtifact.ReadMetadata(f);
            var owned = md.Quantized.SelectMany(q => new[] { q.CodesName, q.ScalesName, q.ZerosName, q.PermName }).ToHashSet(StringComparer.Ordinal);
            foreach (var t in f.Tensors)
            {
                if (owned.Contains(t.Name)) writer.Add(t.Name, t.Dtype, t.Shape, f.ReadBytes(t.Name));
                else if (dtype == SafetensorsDtype.BF16) writer.AddBf16(t.Name, t.Shape, f.ReadFloat32(t.Name));
                else writer.AddFloat16(t.Name, t.Shape, f.ReadFloat32(t.Name));
            }
        }
        var copy = Path.Combine(HfFixtures.TempDir(), $"{SafetensorsDtypes.ToName(dtype)}.matq");
        writer.Write(copy);
        return copy;
    }

    /// <summary>Logits of a prefill over <paramref name="ids"/> (fp32, all positions) and of 3 int8 decode steps after it.</summary>
    private static float[] Run(PackedLlamaModel model, int[] ids)
    {
        var prefill = new PackedLlamaSession(model, threads: 2).Forward(ids, allLogits: true);
        var decode = new PackedLlamaSession(model, threads: 2, activations: PackedActivations.Int8);
        var all = new List<float>(prefill);
        decode.Forward(ids);
        foreach (int id in ids.Take(3)) all.AddRange(decode.Forward([id]));
        return all.ToArray();
    }

    private static void AssertSameLogits(string path, int? bits, int? head, int seed)
    {
        var options = new PackedModelOptions { Bits = bits, HeadBits = head };
        var loaded = PackedLlamaModel.Load(MatqArtifact.Open(path), options);
        var mapped = PackedLlamaModel.Load(path, options);
        var ids = Ids(45, loaded.Config.VocabSize, seed);   // 45 > MaxBatch: two prefill chunks
        var want = Run(loaded, ids);
        var got = Run(mapped, ids);
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            if (BitConverter.SingleToInt32Bits(want[i]) != BitConverter.SingleToInt32Bits(got[i]))
                Assert.Fail($"{Path.GetFileName(path)} r = {bits}, head {head?.ToString() ?? "as stored"}: logit {i} is {got[i]:R} mapped, {want[i]:R} loaded");
        Assert.Equal(loaded.LayerWeightBytes, mapped.LayerWeightBytes);
    }

    [Theory]
    [InlineData(8, null)]
    [InlineData(4, null)]
    [InlineData(3, null)]
    [InlineData(2, null)]
    [InlineData(4, 8)]
    [InlineData(2, 4)]
    public void Models_tiny_bf16_logits_equal_the_loaded_artifact(int bits, int? head)
    {
        var path = Quantized(Path.Combine(HfFixtures.Root, "models", "tiny"), ScalarType.BFloat16, 8, 64, "tiny-bf16.matq");
        AssertSameLogits(path, bits, head, bits);
        var mapped = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, HeadBits = head });
        // bf16 embedding (and, unquantized, the untied head) held as stored: 2 bytes a value, no fp32 table
        Assert.Null(mapped.Embedding);
        Assert.Equal(SafetensorsDtype.BF16, mapped.StoredEmbedding!.Dtype);
        if (head is null) Assert.Equal(SafetensorsDtype.BF16, mapped.Head.Stored!.Dtype);
        else Assert.Equal(head, mapped.Head.Packed!.SliceBits);
        var loaded = PackedLlamaModel.Load(MatqArtifact.Open(path), new PackedModelOptions { Bits = bits, HeadBits = head });
        Assert.Equal(loaded.ResidentWeightBytes - 2L * mapped.Config.VocabSize * mapped.Config.HiddenSize * (head is null ? 2 : 1), mapped.ResidentWeightBytes);
    }

    [Theory]
    [InlineData("tiny-llama", 8, null)]
    [InlineData("tiny-llama", 3, null)]
    [InlineData("tiny-llama", 2, 8)]
    [InlineData("tiny-qwen2", 8, null)]
    [InlineData("tiny-qwen2", 4, 8)]
    [InlineData("tiny-qwen2", 2, null)]
    public void Hf_fixture_logits_equal_the_loaded_artifact_in_fp32_bf16_and_f16(string fixture, int bits, int? head)
    {
        var path = Quantized(HfFixtures.Path(fixture), ScalarType.Float32, 8, 32, fixture + ".matq");
        AssertSameLogits(path, bits, head, bits + 1);
        foreach (var dtype in new[] { SafetensorsDtype.BF16, SafetensorsDtype.F16 })
        {
            var narrow = WithFloats(path, dtype);
            AssertSameLogits(narrow, bits, head, bits + 2);
            var mapped = PackedLlamaModel.Load(narrow, new PackedModelOptions { Bits = bits, HeadBits = head });
            if (head is null && mapped.Config.TieWordEmbeddings) Assert.Same(mapped.StoredEmbedding, mapped.Head.Stored);   // one table
            if (head is not null && mapped.Config.TieWordEmbeddings) Assert.Null(mapped.StoredEmbedding);                   // lookups read the packed head
        }
    }

    [Fact]
    public void A_plan_serves_the_same_logits_mapped()
    {
        var path = Quantized(HfFixtures.Path("tiny-llama"), ScalarType.Float32, 8, 32, "plan.matq");
        var plan = Matq.Runtime.Plans.BitPlan.Parse("{\"default\": 4, \"layers\": {\"model.layers.0.mlp.down_proj\": 2, \"model.layers.1.self_attn.q_proj\": 8}}", "hand.json");
        var options = new PackedModelOptions { Bits = 4, Plan = plan };
        var reference = PackedLlamaModel.Load(MatqArtifact.Open(path), options);
        var ids = Ids(20, reference.Config.VocabSize, 3);
        var loaded = Run(reference, ids);
        var mapped = PackedLlamaModel.Load(path, options);
        Assert.Equal(2, mapped.Layers[0].Down.Bits);
        Assert.Equal(loaded, Run(mapped, ids));
    }

    [Theory]
    [InlineData(-1, 100)]
    [InlineData(32, 33)]
    [InlineData(64, 130)]
    public void FromFloatRows_packs_the_same_matrix_as_FromFloat(int group, int rows)
    {
        int cols = 128;
        var rng = new Random(rows);
        var w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        foreach (int bits in new[] { 8, 4, 3, 2 })
        {
            var whole = PackedMatrix.FromFloat(w, rows, cols, bits, group);
            var blocks = PackedMatrix.FromFloatRows(rows, cols, bits, group, (first, n, dst) => w.AsSpan(first * cols, n * cols).CopyTo(dst), blockRows: 32);
            Assert.Equal(whole.Data.ToArray(), blocks.Data.ToArray());
            Assert.Equal(whole.Params.Scales, blocks.Params.Scales);
            Assert.Equal(whole.Params.Zeros, blocks.Params.Zeros);
            Assert.Equal(whole.Params.ZeroCode, blocks.Params.ZeroCode);
            Assert.Equal(whole.Params.TensorScale, blocks.Params.TensorScale);
            Assert.Equal((whole.Bits, whole.SliceBits, whole.GroupSize), (blocks.Bits, blocks.SliceBits, blocks.GroupSize));
        }
    }

    [Fact]
    public void A_truncated_artifact_is_refused_in_one_line_before_anything_is_read()
    {
        var path = Quantized(HfFixtures.Path("tiny-llama"), ScalarType.Float32, 4, 32, "whole.matq");
        var bytes = File.ReadAllBytes(path);
        foreach (int cut in new[] { 1, 1000, bytes.Length / 2 })
        {
            var cutPath = Path.Combine(HfFixtures.TempDir(), "cut.matq");
            File.WriteAllBytes(cutPath, bytes[..^cut]);
            var e = Assert.Throws<MatqException>(() => PackedLlamaModel.Load(cutPath, new PackedModelOptions { Bits = 2 }));
            Assert.Contains("truncated", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', e.Message);
            Assert.StartsWith(cutPath, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_code_above_the_master_range_is_refused_by_both_loads()
    {
        var path = Quantized(HfFixtures.Path("tiny-llama"), ScalarType.Float32, 4, 32, "codes.matq");
        long at;
        using (var f = SafetensorsFile.Open(path)) at = f.Get("model.layers.1.mlp.up_proj.weight.qcodes").Begin + 5;
        using (var s = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            s.Position = at;
            s.WriteByte(0xF0);
        }
        var mapped = Assert.Throws<MatqException>(() => PackedLlamaModel.Load(path));
        var loaded = Assert.Throws<MatqException>(() => MatqArtifact.Open(path));
        foreach (var e in new[] { mapped, loaded })
        {
            Assert.Contains("'model.layers.1.mlp.up_proj.weight': code 240 at [0, 5] does not fit master_bits = 4", e.Message, StringComparison.Ordinal);
            Assert.StartsWith(path, e.Message, StringComparison.Ordinal);
        }
    }
}
