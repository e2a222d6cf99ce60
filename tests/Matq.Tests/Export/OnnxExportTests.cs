// ONNX export run in ONNX Runtime: a float HF model matches HF's reference logits; a .matq served at 8, 4 and 2 bits
// (grouped, per-channel, symmetric, act-order perm, quantized lm_head, Qwen2 with biases and a tied head) matches matq's
// own served model at the same bits; the MatMulNBits mapping reproduces ŵ_r exactly; bad bits/groups are refused.
using Matq.Export;
using Matq.Formats.Artifact;
using Matq.Formats.Onnx;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Serving;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class OnnxExportTests(ITestOutputHelper output)
{
    // ORT's fp32 graph vs TorchSharp's fp32 forward differ by summation order only (seen: ≤ 5e-7 on logits ≤ 1.2)
    private const double Tolerance = 1e-5;

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-qwen2")]
    public void A_float_model_exported_to_onnx_reproduces_the_transformers_logits_in_onnx_runtime(string fixture)
    {
        var path = Path.Combine(HfFixtures.TempDir(), "model.onnx");
        var report = OnnxExporter.Export(HfFixtures.Path(fixture), null, path);
        Assert.Null(report.Bits);
        Assert.Empty(report.Quantized);
        var (ids, expected) = HfFixtures.Expected(fixture);
        using (ids) using (expected)
        {
            int b = (int)ids.shape[0], t = (int)ids.shape[1];
            var logits = OnnxVerifier.Run(path, ids.data<long>().ToArray(), b, t);
            var hf = expected.data<float>().ToArray();
            Assert.Equal(hf.Length, logits.Length);
            double diff = hf.Zip(logits, (x, y) => Math.Abs((double)x - y)).Max();
            output.WriteLine($"{fixture}: ORT vs transformers max |Δ| = {diff:E3}");
            Assert.True(diff < Tolerance, $"{fixture}: ORT logits differ from transformers' by {diff:E3} (limit {Tolerance})");
        }
    }

    public static TheoryData<string, int, int, bool, bool, int> QuantizedCases => new()
    {
        // fixture, master bits, group (0 = per channel), symmetric, quantize lm_head, served bits
        { "tiny-llama", 8, 32, false, false, 8 },
        { "tiny-llama", 8, 32, false, false, 4 },
        { "tiny-llama", 8, 32, false, false, 2 },
        { "tiny-llama", 4, 32, false, false, 4 },
        { "tiny-llama", 4, 16, false, false, 2 },
        { "tiny-llama", 8, 0, false, true, 4 },
        { "tiny-llama", 8, 48, true, false, 4 },
        { "tiny-qwen2", 8, 32, false, false, 4 },
        { "tiny-qwen2", 8, 64, false, false, 2 },
    };

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void A_quantized_artifact_exported_at_r_bits_matches_matq_served_at_r_bits_in_onnx_runtime(
        string fixture, int master, int group, bool symmetric, bool head, int bits)
    {
        var artifact = WriteArtifact(fixture, PipelineFixtures.Rtn(master, group, symmetric, head: head));
        var path = Path.Combine(HfFixtures.TempDir(), "model.onnx");
        var report = OnnxExporter.Export(artifact, bits, path);

        var md = MatqArtifact.ReadMetadata(artifact);
        Assert.Equal(bits, report.Bits);
        Assert.Equal(md.Quantized.Count, report.Quantized.Count);
        Assert.All(report.Quantized, q => Assert.Equal(bits, q.Bits));
        // exact zero points (no correction) iff every z/2^(c−r) is an integer: r = c, or symmetric z = 2^(c−1)
        bool exactZeros = bits == master || symmetric;
        Assert.Equal(exactZeros ? 0 : report.Quantized.Count, report.Corrected);
        bool tied = fixture == "tiny-qwen2";
        Assert.Equal(head || tied ? 0 : 1, report.FloatLinears); // only an untied, unquantized lm_head stays a float MatMul

        using var served = QuantizedModelLoader.Load(artifact, bits);
        var ids = OnnxVerifier.SampleIds(served.Config.VocabSize, 2, 11, seed: 5);
        var check = OnnxVerifier.Compare(path, served, ids, 2, 11);
        output.WriteLine($"{fixture} c={master} g={group} sym={symmetric} head={head} r={bits}: max |Δ| = {check.MaxAbsDiff:E3} " +
                         $"(max |logit| {check.MaxAbsLogit:F3}), blocks {string.Join(",", report.BlockSizes)}, {report.Bytes:N0} bytes");
        Assert.True(check.MaxAbsDiff < Tolerance * Math.Max(1, check.MaxAbsLogit),
            $"ORT vs matq at {bits} bits: max |Δlogit| {check.MaxAbsDiff:E3} (max |logit| {check.MaxAbsLogit:F3})");
    }

    [Fact]
    public void The_quantized_file_holds_matmulnbits_nodes_and_is_smaller_at_fewer_bits()
    {
        var artifact = WriteArtifact("tiny-llama", PipelineFixtures.Rtn(8, 32));
        var sizes = new Dictionary<int, long>();
        foreach (var bits in new[] { 8, 4, 2 })
        {
            var model = OnnxExporter.Build(artifact, bits, out var quantized, out var floatLinears, out _);
            Assert.Equal(14, model.Graph.Nodes.Count(n => n.OpType == "MatMulNBits" && n.Domain == OnnxModel.MicrosoftDomain));
            Assert.Equal(1, floatLinears); // lm_head stays float
            Assert.Equal(1, model.Opsets[OnnxModel.MicrosoftDomain]);
            Assert.Contains(model.Metadata, kv => kv.Key == "matq.bits" && kv.Value == bits.ToString(System.Globalization.CultureInfo.InvariantCulture));
            sizes[bits] = model.ToBytes().LongLength;
        }
        Assert.True(sizes[8] > sizes[4] && sizes[4] > sizes[2], string.Join(", ", sizes.Select(kv => $"{kv.Key}: {kv.Value}")));
    }

    [Fact]
    public void A_bf16_embedding_and_head_stay_bf16_in_the_file_and_compute_the_same_logits()
    {
        // models/tiny is a bf16 checkpoint: the artifact keeps embed_tokens and lm_head as BF16
        var tiny = Path.Combine(HfFixtures.Root, "models", "tiny");
        string artifact;
        using (var model = LlamaLoader.Load(tiny, CPU, ScalarType.BFloat16))
        {
            var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, 64));
            artifact = Path.Combine(HfFixtures.TempDir(), "tiny.matq");
            ArtifactExport.Write(result, model, artifact);
        }
        var onnx = OnnxExporter.Build(artifact, 4, out _, out _, out _);
        Assert.Equal(OnnxDataType.BFloat16, onnx.Graph.Initializers.Single(t => t.Name == "model.embed_tokens.weight").DataType);
        Assert.Equal(OnnxDataType.BFloat16, onnx.Graph.Initializers.Single(t => t.Name == "lm_head.weight_t").DataType);
        var path = Path.Combine(HfFixtures.TempDir(), "tiny.onnx");
        onnx.Write(path);
        using var served = QuantizedModelLoader.Load(artifact, 4);
        var ids = OnnxVerifier.SampleIds(served.Config.VocabSize, 2, 20, seed: 9);
        var check = OnnxVerifier.Compare(path, served, ids, 2, 20);
        output.WriteLine($"models/tiny bf16 embedding, 4 bits: max |Δ| = {check.MaxAbsDiff:E3} (max |logit| {check.MaxAbsLogit:F3})");
        Assert.True(check.MaxAbsDiff < Tolerance * Math.Max(1, check.MaxAbsLogit), $"max |Δ| {check.MaxAbsDiff:E3}");
    }

    [Fact]
    public void An_act_order_permutation_is_applied_to_the_activations()
    {
        var (plain, result) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 32));
        var layer = result.Layers[0];
        int n = layer.InFeatures;
        var rng = new Random(3);
        var perm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
        // same grid, stored in permuted column order (the groups now span permuted columns, as act-order GPTQ leaves them)
        var permuted = new byte[layer.Codes.Length];
        for (int o = 0; o < layer.OutFeatures; o++)
            for (int k = 0; k < n; k++) permuted[o * n + k] = layer.Codes[o * n + perm[k]];
        var swapped = new QuantizedLinearResult(layer.Name, layer.OutFeatures, n, layer.GroupSize, permuted, layer.Scales, layer.Zeros, perm, layer.Report);
        var path = Path.Combine(HfFixtures.TempDir(), "perm.matq");
        using (var model = PipelineFixtures.LoadTiny())
            ArtifactExport.Write(result with { Layers = [swapped, .. result.Layers.Skip(1)] }, model, path);

        var onnx = Path.Combine(HfFixtures.TempDir(), "perm.onnx");
        var report = OnnxExporter.Export(path, 4, onnx);
        Assert.Equal(1, report.Permuted);
        using var served = QuantizedModelLoader.Load(path, 4);
        var ids = OnnxVerifier.SampleIds(served.Config.VocabSize, 1, 9, seed: 2);
        var check = OnnxVerifier.Compare(onnx, served, ids, 1, 9);
        Assert.True(check.MaxAbsDiff < Tolerance * Math.Max(1, check.MaxAbsLogit), $"max |Δ| {check.MaxAbsDiff:E3}");
        // and the permutation matters: the unpermuted artifact's export gives other logits
        var other = Path.Combine(HfFixtures.TempDir(), "plain.onnx");
        OnnxExporter.Export(plain, 4, other);
        var diff = OnnxVerifier.Run(other, ids, 1, 9).Zip(OnnxVerifier.Run(onnx, ids, 1, 9), (a, b) => Math.Abs(a - b)).Max();
        Assert.True(diff > 1e-3, $"permuted and plain exports agree to {diff:E3}");
    }

    [Theory]
    [InlineData(8, 32, 4)]
    [InlineData(8, 0, 2)]
    [InlineData(4, 16, 4)]
    [InlineData(8, 48, 8)]
    public void The_matmulnbits_weights_plus_the_group_correction_equal_the_served_weights(int master, int group, int bits)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(master, group));
        var artifact = MatqArtifact.Open(path);
        foreach (var q in artifact.Quantized)
        {
            var (w, delta, _) = OnnxQuantizedLinear.Map(q, master, bits);
            var deq = MatMulNBitsLayout.Dequantize(w);
            using var served = QuantizedModelLoader.ServedWeight(q, master, bits, extraPrecision: false).Weight;
            var expected = served.data<float>().ToArray(); // no perm here: stored order = original order
            for (int o = 0; o < q.OutFeatures; o++)
                for (int k = 0; k < q.InFeatures; k++)
                {
                    long i = (long)o * q.InFeatures + k;
                    float mine = deq[i] + delta[o * q.GroupCount + k / q.GroupWidth];
                    Assert.True(Math.Abs(mine - expected[i]) <= 1e-6f * Math.Max(1f, Math.Abs(expected[i])),
                        $"{q.Name}[{o}, {k}]: MatMulNBits + Δ = {mine}, served {expected[i]}");
                }
        }
    }

    [Theory]
    [InlineData(3)]
    [InlineData(6)]
    [InlineData(1)]
    public void Bits_that_onnx_runtime_does_not_run_are_refused_naming_those_it_does(int bits)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var onnx = Path.Combine(HfFixtures.TempDir(), "m.onnx");
        var e = Assert.Throws<MatqException>(() => OnnxExporter.Export(path, bits, onnx));
        Assert.Contains($"--bits {bits}", e.Message);
        Assert.Contains("2, 4 or 8", e.Message);
        Assert.False(File.Exists(onnx));
    }

    [Fact]
    public void Bits_above_the_master_bits_are_refused()
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, 32));
        var e = Assert.Throws<MatqException>(() => OnnxExporter.Export(path, 8, Path.Combine(HfFixtures.TempDir(), "m.onnx")));
        Assert.Contains("1..4", e.Message);
    }

    [Theory]
    [InlineData(24)]
    [InlineData(40)]
    public void A_group_size_that_matmulnbits_blocks_cannot_tile_is_refused(int group)
    {
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group));
        var onnx = Path.Combine(HfFixtures.TempDir(), "m.onnx");
        var e = Assert.Throws<MatqException>(() => OnnxExporter.Export(path, 4, onnx));
        Assert.Contains($"group size {group} is not a multiple of 16", e.Message);
        Assert.False(File.Exists(onnx));
    }

    [Fact]
    public void Bits_for_a_float_model_are_refused()
    {
        var e = Assert.Throws<MatqException>(() => OnnxExporter.Export(PipelineFixtures.TinyPath, 4, Path.Combine(HfFixtures.TempDir(), "m.onnx")));
        Assert.Contains("float model", e.Message);
    }

    [Theory]
    [InlineData(64, 64)]
    [InlineData(176, 128)]
    [InlineData(20, 16)]
    public void Per_channel_weights_take_the_largest_power_of_two_block_up_to_128(int inFeatures, int block)
    {
        var q = new MatqQuantizedTensor("w", 2, inFeatures, -1, new byte[2 * inFeatures], [1f, 1f], [0f, 0f], null);
        Assert.Equal(block, OnnxQuantizedLinear.BlockSize(q));
    }

    private static string WriteArtifact(string fixture, QuantizationConfig config)
    {
        using var model = LlamaLoader.Load(HfFixtures.Path(fixture), CPU);
        var result = PipelineFixtures.Quantize(model, config);
        var path = Path.Combine(HfFixtures.TempDir(), fixture + ".matq");
        ArtifactExport.Write(result, model, path);
        return path;
    }
}
