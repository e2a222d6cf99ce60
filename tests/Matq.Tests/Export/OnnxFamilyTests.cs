// Every family through the ONNX export, run in ONNX Runtime: the float export of each HF family fixture gives HF's
// logits (expected.safetensors) and matq's TorchSharp logits within 1e-4; the 8-bit RTN artifact exported at 8 and 4 bits
// (MatMulNBits) gives matq's served model's logits at those bits within 1e-4. The fixtures' sequences outrun the sliding
// windows, so the window masks, per-layer-type ropes, q/k norms, Gemma norms, GeGLU, scales and soft-caps all count.
using Matq.Export;
using Matq.Formats.Onnx;
using Matq.Loading;
using Matq.Runtime.Serving;
using Matq.Tests.Models;
using Matq.Tests.Runtime.Packed;
using Xunit.Abstractions;

namespace Matq.Tests.Export;

public sealed class OnnxFamilyTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;

    [Theory]
    [MemberData(nameof(FamilyParityTests.Families), MemberType = typeof(FamilyParityTests))]
    public void A_float_family_export_matches_transformers_and_matq_in_onnx_runtime(string name)
    {
        var path = Path.Combine(HfFixtures.TempDir(), name + ".onnx");
        var report = OnnxExporter.Export(FamilyParityTests.Fixture(name), null, path);
        Assert.Null(report.Bits);
        var (ids, expected) = HfFixtures.Expected(Path.Combine("families", name));
        using (ids) using (expected)
        {
            int b = (int)ids.shape[0], t = (int)ids.shape[1];
            var idv = ids.data<long>().ToArray();
            var hf = expected.data<float>().ToArray();
            var ort = OnnxVerifier.Run(path, idv, b, t);
            Assert.Equal(hf.Length, ort.Length);
            double vsHf = hf.Zip(ort, (x, y) => Math.Abs((double)x - y)).Max();
            using var model = LlamaLoader.Load(FamilyParityTests.Fixture(name));
            if (model.Config.SlidingWindow is int w) Assert.True(t > w, "the sequence must outrun the window");
            var vsMatq = OnnxVerifier.Compare(path, model, idv, b, t);
            output.WriteLine($"{name}: ONNX float vs HF max |Δ| {vsHf:E3}, vs matq {vsMatq.MaxAbsDiff:E3} (max |logit| {vsMatq.MaxAbsLogit:F2})");
            Assert.True(vsHf <= Tolerance, $"{name}: ORT logits differ from transformers' by {vsHf:E3} (limit {Tolerance})");
            Assert.True(vsMatq.MaxAbsDiff <= Tolerance, $"{name}: ORT logits differ from matq's by {vsMatq.MaxAbsDiff:E3} (limit {Tolerance})");
        }
    }

    public static TheoryData<string, int> QuantizedCases()
    {
        var data = new TheoryData<string, int>();
        foreach (string f in FamilyParityTests.Families) { data.Add(f, 8); data.Add(f, 4); }
        return data;
    }

    [Theory]
    [MemberData(nameof(QuantizedCases))]
    public void A_quantized_family_export_matches_matq_served_at_the_same_bits_in_onnx_runtime(string name, int bits)
    {
        var (artifact, config) = FamilyPackedTests.Artifact(name);
        var path = Path.Combine(HfFixtures.TempDir(), $"{name}-{bits}.onnx");
        var report = OnnxExporter.Export(artifact, bits, path);
        Assert.Equal(7 * config.NumLayers, report.Quantized.Count);
        var (ids, _) = HfFixtures.Expected(Path.Combine("families", name));
        using (ids)
        {
            int b = (int)ids.shape[0], t = (int)ids.shape[1];
            using var served = QuantizedModelLoader.Load(artifact, bits);
            var check = OnnxVerifier.Compare(path, served, ids.data<long>().ToArray(), b, t);
            output.WriteLine($"{name} r={bits}: ONNX MatMulNBits vs matq served max |Δ| {check.MaxAbsDiff:E3} (max |logit| {check.MaxAbsLogit:F2})");
            Assert.True(check.MaxAbsDiff <= Tolerance, $"{name} at {bits} bits: ORT logits differ from matq's by {check.MaxAbsDiff:E3} (limit {Tolerance})");
        }
    }

    [Fact]
    public void Gemma_3_holds_one_rope_table_pair_per_layer_type_and_one_mask_per_window()
    {
        var model = OnnxExporter.Build(FamilyParityTests.Fixture("tiny-gemma3"), null, out _, out _, out _);
        Assert.Equal(2, model.Graph.Initializers.Count(i => i.Name.EndsWith(".cos_table", StringComparison.Ordinal)));
        Assert.Equal(2, model.Graph.Nodes.Count(n => n.OpType == "Where"));   // the causal mask and the window-16 mask
        Assert.Equal(6, model.Graph.Nodes.Count(n => n.OpType == "ReduceMean" && n.Name.Contains("_norm/", StringComparison.Ordinal)));
    }
}
