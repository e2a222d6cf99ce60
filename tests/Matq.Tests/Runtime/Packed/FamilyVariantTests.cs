// The family fixtures keep query_pre_attn_scalar = head_dim and Gemma 3 without soft-caps; these variants change those
// config values (Gemma 2 with query_pre_attn_scalar 48, Gemma 3 with 16 and attention/final soft-caps) so the packed
// runtime and the ONNX export (float and MatMulNBits 4-bit) must read them: each stays within 1e-4 of the TorchSharp
// model on the same weights, while the variant's logits move well away from the unmodified fixture's.
using System.Text.Json.Nodes;
using Matq.Export;
using Matq.Loading;
using Matq.Runtime.Packed;
using Matq.Runtime.Serving;
using Matq.Tests.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Runtime.Packed;

public sealed class FamilyVariantTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4;

    [Theory]
    [InlineData("tiny-gemma2", 48.0, null, null)]
    [InlineData("tiny-gemma3", 16.0, 5.0, 3.0)]
    public void Changed_scale_and_soft_caps_reach_the_packed_runtime_and_the_onnx_export(string name, double scalar, double? attnCap, double? finalCap)
    {
        var folder = Variant(name, scalar, attnCap, finalCap);
        var (ids, expected) = HfFixtures.Expected(Path.Combine("families", name));
        int b = (int)ids.shape[0], t = (int)ids.shape[1];
        var idv = ids.data<long>().ToArray();

        using (var model = LlamaLoader.Load(folder))
        using (no_grad())
        {
            Assert.Equal(scalar, model.Config.QueryPreAttnScalar);
            if (attnCap is not null) Assert.Equal(attnCap, model.Config.AttnLogitSoftcap);
            if (finalCap is not null) Assert.Equal(finalCap, model.Config.FinalLogitSoftcap);
            double moved = HfFixtures.MaxAbsDiff(model.call(ids), expected);
            Assert.True(moved > 1e-2, $"{name}: the variant's logits stay within {moved:E3} of the fixture's; the changed values do not matter");

            var onnx = Path.Combine(HfFixtures.TempDir(), name + "-variant.onnx");
            OnnxExporter.Export(folder, null, onnx);
            var check = OnnxVerifier.Compare(onnx, model, idv, b, t);
            output.WriteLine($"{name} variant: ONNX float vs matq max |Δ| {check.MaxAbsDiff:E3} (fixture moved by {moved:E3})");
            Assert.True(check.MaxAbsDiff <= Tolerance, $"{name} variant: ONNX float differs by {check.MaxAbsDiff:E3}");
        }

        var (artifact, _) = FamilyPackedTests.Artifact(name, folder);
        var onnx4 = Path.Combine(HfFixtures.TempDir(), name + "-variant-4.onnx");
        OnnxExporter.Export(artifact, 4, onnx4);
        using (var served4 = QuantizedModelLoader.Load(artifact, 4))
        {
            var check = OnnxVerifier.Compare(onnx4, served4, idv, b, t);
            output.WriteLine($"{name} variant: ONNX 4-bit vs matq served max |Δ| {check.MaxAbsDiff:E3}");
            Assert.True(check.MaxAbsDiff <= Tolerance, $"{name} variant: ONNX 4-bit differs by {check.MaxAbsDiff:E3}");
        }

        var packed = PackedLlamaModel.Load(artifact, new PackedModelOptions { Bits = 8 });
        using var served = QuantizedModelLoader.Load(artifact, 8);
        double worst = 0;
        for (int row = 0; row < b; row++)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var want = served.call(ids[row].unsqueeze(0)).contiguous().data<float>().ToArray();
            var session = new PackedLlamaSession(packed, threads: 1);
            var row64 = ids[row].data<long>().Select(v => (int)v).ToArray();
            var got = session.Forward(row64.AsSpan(0, 24), allLogits: true).ToList();
            for (int p = 24; p < row64.Length; p++) got.AddRange(session.Forward(row64.AsSpan(p, 1)));
            for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(want[i] - got[i]));
        }
        output.WriteLine($"{name} variant: packed 8-bit vs matq served max |Δ| {worst:E3}");
        Assert.True(worst <= Tolerance, $"{name} variant: packed runtime differs by {worst:E3}");
    }

    // a copy of the fixture whose config.json sets query_pre_attn_scalar and the soft-caps
    private static string Variant(string name, double scalar, double? attnCap, double? finalCap)
    {
        var src = FamilyParityTests.Fixture(name);
        var dir = HfFixtures.TempDir();
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        json["query_pre_attn_scalar"] = scalar;
        if (attnCap is not null) json["attn_logit_softcapping"] = attnCap;
        if (finalCap is not null) json["final_logit_softcapping"] = finalCap;
        File.WriteAllText(Path.Combine(dir, "config.json"), json.ToJsonString());
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        return dir;
    }
}
