// k-quant GGUF exports (q2_K..q6_K, from the artifact's r-bit slice, r = 2..6) run in llama.cpp itself (LLamaSharp 0.30.0's
// CPU build): llama.cpp's logits over a token sequence must match matq's own forward of the *same quantized weights* —
// the HF model with every 2-D weight replaced by the GGUF tensor decoded with matq's k-quant decoder (bit-identical to
// ggml's, GgufKQuantTests) — so the remaining gap is ggml quantizing the activations to q8_K/q8_0/q8_1 blocks inside its
// dot products (the same gap as the q8_0/q4_x rows of GgufLlamaCppTests). A wrong bit layout, scale packing or row
// order moves logits by O(1) and fails. Also: which tensors are exact (a per-channel symmetric grid) vs re-quantized
// (group-32 asymmetric), the fallback of rows that are not a multiple of 256 (every family fixture is narrower than 256,
// so all of their linears take llama.cpp's fallback types q4_0/q5_0/q5_1/q8_0; random 256-wide models of each family put
// every linear in the k-quant under its architecture), and matq's served r-bit model's NLL.
using Matq.Export;
using Matq.Formats.Gguf;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Models;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class GgufKQuantLlamaCppTests(ITestOutputHelper output)
{
    private static readonly int[] TinyIds = System.Text.Encoding.UTF8.GetBytes("Fellow citizens, the state of our Union is strong; we meet again.").Take(64).Select(b => (int)b).ToArray();

    // Tolerances, llama.cpp vs matq on the same decoded weights (measured maxima in docs/results/gguf-llama.cpp.md):
    // max |Δlogit| ≤ 0.4 (models/tiny's logits reach ±22; measured ≤ 0.32) and mean-NLL ratio within 5e-3 of 1 (measured
    // ≤ 3.6e-3) — the size of the activation-quantization gap of the lossless q8_0/q4_x rows (0.13–0.20, ≤ 1.4e-3).
    // A wrong bit position, scale packing or row order changes logits by O(1) (and ggml's decoder is checked bit for bit
    // against matq's in GgufKQuantTests).
    private const double MaxDiff = 0.4, NllTol = 5e-3;

    public static readonly TheoryData<string, int, bool> TinyCases = new()
    {
        // type, group (−1 = per channel), symmetric
        
                { "q2_k", -1, true }, { "q3_k", -1, true }, { "q4_k", -1, true }, { "q5_k", -1, true }, { "q6_k", -1, true },
        { "q2_k", 32, false }, { "q3_k", 32, false }, { "q4_k", 32, false }, { "q5_k", 32, false }, { "q6_k", 32, false },
        // one asymmetric group per super-block: exact for the types with mins, re-quantized for the symmetric q3_K/q6_K
        { "q4_k", 256, false }, { "q3_k", 256, false },
    };

    [Theory]
    [MemberData(nameof(TinyCases))]
    public void Models_tiny_k_quant_exports_run_in_llama_cpp_with_matqs_logits_on_the_same_weights(string type, int group, bool symmetric)
    {
        var t = GgufExporter.ParseType(type);
        var artifact = GgufExporterTests.TinyArtifact(PipelineFixtures.Rtn(8, group, symmetric));
        var gguf = Path.Combine(HfFixtures.TempDir(), $"tiny-{type}.gguf");
        var report = GgufExporter.Export(artifact, t, gguf);
        var k = Assert.IsType<GgufKQuantStats>(report.KQuant);
        // models/tiny: 4 down_proj rows of 512 values take the k-quant; the 24 other linears (rows of 128) fall back
        Assert.Equal(4, k.Exact + k.Requantized);
        Assert.Equal(24, k.Fallback);
        // a per-channel symmetric grid, or one asymmetric group of 256 under a type with mins, is exactly a k-quant
        // super-block (one sub-block scale unit, codes copied); group-32 RTN scales have no common fp16 unit per
        // super-block, and an asymmetric grid has no offset-only form in q3_K/q6_K: those are re-quantized
        bool exact = group != 32 && (symmetric || !GgufKQuants.Spec(t).Symmetric);
        Assert.Equal(exact ? 4 : 0, k.Exact);
        if (exact) Assert.InRange(k.MaxErrExact, 0, 2e-3 * MaxAbsSlice(artifact, k.Bits));
        Assert.Contains(report.Notes, n => n.StartsWith($"{t}: {k.Exact} linear(s) exact", StringComparison.Ordinal));

        using var decoded = LlamaLoader.Load(GgufExporterTests.TinyModel, CPU);
        LoadGgufWeights(decoded, gguf);
        var cpp = LlamaCpp.Logits(gguf, TinyIds);
        var (diff, ratio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(decoded, TinyIds), TinyIds);
        using var served = QuantizedModelLoader.Load(artifact, k.Bits);
        var (_, servedRatio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(served, TinyIds), TinyIds);
        output.WriteLine(Row($"models/tiny rtn8 {(group < 0 ? "per-channel" : $"g{group}")}{(symmetric ? " sym" : "")}", t, k, gguf, diff, ratio, servedRatio, cpp));
        Assert.InRange(diff, 0, MaxDiff);
        Assert.InRange(ratio, 1 - NllTol, 1 + NllTol);
    }

    public static readonly TheoryData<string, string> FamilyCases = FamilyTypes();

    private static TheoryData<string, string> FamilyTypes()
    {
        var d = new TheoryData<string, string>();
        foreach (var f in new[] { "families/tiny-llama3", "families/tiny-gemma2", "families/tiny-gemma3", "families/tiny-qwen3", "families/tiny-phi3", "tiny-qwen2" })
            foreach (var t in new[] { "q2_k", "q3_k", "q4_k", "q5_k", "q6_k" }) d.Add(f, t);
        return d;
    }

    [Theory]
    [MemberData(nameof(FamilyCases))]
    public void Family_fixtures_exported_as_k_quants_fall_back_per_tensor_and_run_in_llama_cpp_with_matqs_logits(string fixture, string type)
    {
        var t = GgufExporter.ParseType(type);
        var artifact = GgufLlamaCppFamilyTests.Artifact(fixture, symmetric: false);
        var gguf = Path.Combine(HfFixtures.TempDir(), "k.gguf");
        var report = GgufExporter.Export(artifact, t, gguf);
        var k = Assert.IsType<GgufKQuantStats>(report.KQuant);
        using var decoded = LlamaLoader.Load(HfFixtures.Path(fixture), CPU);
        Assert.Equal(7 * decoded.Config.NumLayers, k.Fallback);
        var fb = GgufKQuants.Fallback(t);
        var f = GgufFile.Open(gguf);
        Assert.All(f.Tensors.Where(x => x.Ne.Length == 2 && x.Name.StartsWith("blk.", StringComparison.Ordinal)), x => Assert.Equal(fb, x.Type));
        Assert.Contains(report.Notes, n => n.Contains($"were written as {fb} (llama.cpp's fallback)", StringComparison.Ordinal));

        LoadGgufWeights(decoded, gguf);
        var (idsT, _) = HfFixtures.Expected(fixture);
        var ids = idsT[0].data<long>().Select(v => (int)v).ToArray();
        var cpp = LlamaCpp.Logits(gguf, ids);
        var (diff, ratio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(decoded, ids), ids);
        using var served = QuantizedModelLoader.Load(artifact, k.Bits);
        var (_, servedRatio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine(Row($"{Path.GetFileName(fixture)} rtn8 g32 ({GgufFile.Open(gguf).Get("general.architecture")})", t, k, gguf, diff, ratio, servedRatio, cpp));
        Assert.InRange(diff, 0, MaxDiff);
        Assert.InRange(ratio, 1 - NllTol, 1 + NllTol);
    }

    [Theory]
    [InlineData("q2_k")]
    [InlineData("q3_k")]
    [InlineData("q4_k")]
    [InlineData("q5_k")]
    [InlineData("q6_k")]
    public void A_256_wide_llama_takes_the_k_quant_in_every_linear_and_the_embedding_and_llama_cpp_agrees(string type)
    {
        // every row is 256 or 512 values: all 14 linears, the embedding and the head are k-quant super-blocks
        var t = GgufExporter.ParseType(type);
        var (folder, artifact) = WideLlama();
        var gguf = Path.Combine(HfFixtures.TempDir(), $"wide-{type}.gguf");
        var report = GgufExporter.Export(artifact, t, gguf, embedType: t);
        var k = Assert.IsType<GgufKQuantStats>(report.KQuant);
        Assert.Equal(14, k.Exact + k.Requantized);
        Assert.Equal(0, k.Fallback);
        Assert.All(GgufFile.Open(gguf).Tensors.Where(x => x.Ne.Length == 2), x => Assert.Equal(t, x.Type));
        using var decoded = LlamaLoader.Load(folder, CPU);
        LoadGgufWeights(decoded, gguf);
        int[] ids = Enumerable.Range(0, 48).Select(i => (i * 37 + 11) % 256).ToArray();
        var cpp = LlamaCpp.Logits(gguf, ids);
        var (diff, ratio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(decoded, ids), ids);
        using var served = QuantizedModelLoader.Load(artifact, k.Bits);
        var (_, servedRatio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine(Row("wide llama (256×512, random) rtn8 per-channel sym, embedding/head same type", t, k, gguf, diff, ratio, servedRatio, cpp));
        Assert.Equal(14, k.Exact);
        Assert.InRange(diff, 0, MaxDiff);
        Assert.InRange(ratio, 1 - NllTol, 1 + NllTol);
    }

    [Fact]
    public void An_hf_folder_exports_as_q4_K_from_its_float_weights_and_llama_cpp_agrees()
    {
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny-hf-q4_k.gguf");
        var report = GgufExporter.ExportFloat(GgufExporterTests.TinyModel, GgmlType.Q4_K, gguf);
        Assert.Null(report.KQuant);
        Assert.Contains(report.Notes, n => n.Contains("least-squares sub-block scales", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains("were written as Q5_0 (llama.cpp's fallback)", StringComparison.Ordinal));
        var f = GgufFile.Open(gguf);
        Assert.Equal(4, f.Tensors.Count(x => x.Type == GgmlType.Q4_K));   // the four down_proj (rows of 512)
        using var decoded = LlamaLoader.Load(GgufExporterTests.TinyModel, CPU);
        LoadGgufWeights(decoded, gguf);
        var cpp = LlamaCpp.Logits(gguf, TinyIds);
        var (diff, ratio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(decoded, TinyIds), TinyIds);
        output.WriteLine($"models/tiny HF folder as q4_K: max |Δlogit| {diff:E2}, NLL ratio {ratio:F6}");
        Assert.InRange(diff, 0, MaxDiff);
        Assert.InRange(ratio, 1 - NllTol, 1 + NllTol);
    }

    [Fact]
    public void The_tolerance_tells_neighbouring_k_quant_grids_apart()
    {
        // control: llama.cpp running the q3_K file against matq's forward of the q4_K weights (one bit apart, same model)
        // must exceed the tolerance the same-weights comparisons pass, or those comparisons would prove nothing
        var (folder, artifact) = WideLlama();
        string q3 = Path.Combine(HfFixtures.TempDir(), "c3.gguf"), q4 = Path.Combine(HfFixtures.TempDir(), "c4.gguf");
        GgufExporter.Export(artifact, GgmlType.Q3_K, q3, embedType: GgmlType.Q3_K);
        GgufExporter.Export(artifact, GgmlType.Q4_K, q4, embedType: GgmlType.Q4_K);
        using var decoded = LlamaLoader.Load(folder, CPU);
        LoadGgufWeights(decoded, q4);
        int[] ids = Enumerable.Range(0, 48).Select(i => (i * 37 + 11) % 256).ToArray();
        var (diff, _) = GgufLlamaCppTests.Compare(LlamaCpp.Logits(q3, ids), GgufLlamaCppTests.MatqLogits(decoded, ids), ids);
        output.WriteLine($"control: llama.cpp q3_K vs matq on the q4_K weights: max |Δlogit| {diff:E2}");
        Assert.True(diff > 2 * MaxDiff, $"q3_K vs q4_K weights differ by only {diff:E2}");
    }

    [Theory]
    [InlineData("Phi3", "q4_k")]
    [InlineData("Phi3", "q3_k")]
    [InlineData("Qwen2", "q4_k")]
    [InlineData("Qwen3", "q5_k")]
    [InlineData("Gemma2", "q4_k")]
    [InlineData("Gemma3", "q6_k")]
    public void A_256_wide_model_of_another_family_runs_its_k_quant_linears_in_llama_cpp(string family, string type)
    {
        // the k-quant path under the other architectures: Phi-3's fused attn_qkv / ffn_up (parts encoded one after the
        // other, rows independent), Qwen2's q/k/v biases, Qwen3's q/k norms; every linear and the embedding k-quant
        var t = GgufExporter.ParseType(type);
        var (folder, artifact) = WideModel(Enum.Parse<LlamaFamily>(family));
        var gguf = Path.Combine(HfFixtures.TempDir(), $"wide-{family}-{type}.gguf");
        var report = GgufExporter.Export(artifact, t, gguf, embedType: t);
        var k = Assert.IsType<GgufKQuantStats>(report.KQuant);
        Assert.Equal(7 * (family == "Gemma3" ? 3 : 2), k.Exact);   // the linears (a tied head is the embedding)
        Assert.Equal(0, k.Fallback);
        var f = GgufFile.Open(gguf);
        if (family == "Phi3") Assert.Equal(t, f.Tensors.Single(x => x.Name == "blk.0.attn_qkv.weight").Type);
        using var decoded = LlamaLoader.Load(folder, CPU);
        LoadGgufWeights(decoded, gguf);
        int[] ids = Enumerable.Range(0, 48).Select(i => (i * 37 + 11) % 256).ToArray();
        var cpp = LlamaCpp.Logits(gguf, ids);
        var (diff, ratio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(decoded, ids), ids);
        using var served = QuantizedModelLoader.Load(artifact, k.Bits);
        var (_, servedRatio) = GgufLlamaCppTests.Compare(cpp, GgufLlamaCppTests.MatqLogits(served, ids), ids);
        output.WriteLine(Row($"wide {family.ToLowerInvariant()} (256×512, random) rtn8 per-channel sym ({f.Get("general.architecture")}), embedding/head same type", t, k, gguf, diff, ratio, servedRatio, cpp));
        Assert.InRange(diff, 0, MaxDiff);
        Assert.InRange(ratio, 1 - NllTol, 1 + NllTol);
    }

    private static readonly Dictionary<LlamaFamily, (string Folder, string Artifact)> WideByFamily = [];

    private static (string Folder, string Artifact) WideModel(LlamaFamily family)
    {
        lock (WideByFamily)
        {
            if (WideByFamily.TryGetValue(family, out var hit)) return hit;
            var cfg = family switch
            {
                LlamaFamily.Qwen2 => new LlamaConfig(256, 512, 2, 4, 256, family, numKvHeads: 2, maxPositionEmbeddings: 128, attentionBias: true),
                LlamaFamily.Qwen3 => new LlamaConfig(256, 512, 2, 4, 256, family, numKvHeads: 2, headDim: 64, maxPositionEmbeddings: 128),
                // as the family fixtures: Gemma 2 soft-caps and alternates sliding/full layers, Gemma 3 slides 2 of every 3
                // (tied, as every Gemma 2: llama.cpp's gemma2 loads no output.weight — an untied one fails to load, even as f32)
                LlamaFamily.Gemma2 => new LlamaConfig(256, 512, 2, 4, 256, family, numKvHeads: 2, headDim: 64, maxPositionEmbeddings: 128, tieWordEmbeddings: true,
                    slidingWindow: 16, slidingLayers: [true, false], attnLogitSoftcap: 50, finalLogitSoftcap: 30, queryPreAttnScalar: 64),
                LlamaFamily.Gemma3 => new LlamaConfig(256, 512, 3, 4, 256, family, numKvHeads: 2, headDim: 64, maxPositionEmbeddings: 128,
                    slidingWindow: 16, slidingLayers: [true, true, false], queryPreAttnScalar: 64),
                _ => new LlamaConfig(256, 512, 2, 4, 256, family, maxPositionEmbeddings: 128),
            };
            return WideByFamily[family] = BuildWide(cfg, 23);
        }
    }

    private static (string Folder, string Artifact) BuildWide(LlamaConfig cfg, int seed)
    {
        manual_seed(seed);
        using var model = new LlamaForCausalLM(cfg);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (p.dim() == 2) p.mul_(name.Contains("embed", StringComparison.Ordinal) ? 20f : 4f);
        var folder = HfFixtures.TempDir();
        LlamaSaver.Save(model, folder);
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, -1, symmetric: true));
        var path = Path.Combine(HfFixtures.TempDir(), "wide.matq");
        ArtifactExport.Write(result, model, path);
        return (folder, path);
    }

    private static readonly Lazy<(string Folder, string Artifact)> Wide = new(() =>
    {
        var cfg = new LlamaConfig(256, 512, 2, 4, 256, numKvHeads: 2, maxPositionEmbeddings: 128);
        manual_seed(17);
        using var model = new LlamaForCausalLM(cfg);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (p.dim() == 2) p.mul_(name.Contains("embed", StringComparison.Ordinal) ? 20f : 4f);
        var folder = HfFixtures.TempDir();
        LlamaSaver.Save(model, folder);
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(8, -1, symmetric: true));
        var path = Path.Combine(HfFixtures.TempDir(), "wide.matq");
        ArtifactExport.Write(result, model, path);
        return (folder, path);
    });

    private static (string Folder, string Artifact) WideLlama() => Wide.Value;

    // | model | type | file bytes | bits/weight (2-D tensors) | exact | re-quantized | fallback | max|Δw| requant | RMS Δw | max|Δlogit| vs matq same weights | NLL ratio vs same weights | NLL ratio vs matq served r-bit |
    private static string Row(string model, GgmlType t, GgufKQuantStats k, string gguf, double diff, double ratio, double servedRatio, float[][] cpp)
    {
        double maxLogit = cpp.Max(r => r.Max(Math.Abs));
        var f = GgufFile.Open(gguf);
        var mats = f.Tensors.Where(x => x.Ne.Length == 2).ToList();
        double bpw = mats.Sum(x => 8.0 * x.ByteLength) / mats.Sum(x => (double)x.Count);
        return $"K| {model} | {t} (r = {k.Bits}) | {new FileInfo(gguf).Length:N0} | {bpw:F3} | {k.Exact} | {k.Requantized} | {k.Fallback} | " +
               $"{k.MaxErrRequantized:E2} | {k.RmsAll:E2} | {diff:E2} / {maxLogit:F1} | {ratio:F6} | {servedRatio:F6} |";
    }

    private static double MaxAbsSlice(string artifact, int bits)
    {
        var a = Matq.Formats.Artifact.MatqArtifact.Open(artifact);
        return a.Quantized.Where(q => q.InFeatures % 256 == 0)
            .Max(q => GgufQuantizedCodes.DequantizeSlice(q, a.Metadata.MasterBits, bits, null).Max(Math.Abs));
    }

    /// <summary>
    /// Replaces every 2-D weight of <paramref name="model"/> (linears, embedding, head) with the GGUF tensor it was written
    /// to, decoded by matq (GgufBlocks.Decode), undoing the export's fusion (Phi-3) and q/k row permutation (llama).
    /// </summary>
    internal static void LoadGgufWeights(LlamaForCausalLM model, string gguf)
    {
        var arch = GgufArchitecture.For(model.Config);
        var f = GgufFile.Open(gguf);
        var mats = model.named_parameters().Where(p => p.parameter.dim() == 2)
            .Select(p => (Hf: p.name, P: p.parameter, G: arch.TensorName(p.name))).ToList();
        var cache = new Dictionary<string, float[]>(StringComparer.Ordinal);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (hf, p, (g, part)) in mats)
        {
            var info = f.Tensors.SingleOrDefault(x => x.Name == g) ?? throw new InvalidOperationException($"{gguf}: no tensor {g} for {hf}");
            if (!cache.TryGetValue(g, out var vals)) cache[g] = vals = GgufBlocks.Decode(info.Type!.Value, f.ReadTensorBytes(info), info.Count);
            int rows = (int)p.shape[0], cols = (int)p.shape[1];
            Assert.Equal(cols, info.Ne[0]);
            long offset = mats.Where(o => o.G.Name == g && o.G.Part < part).Sum(o => o.P.shape[0]);
            var perm = arch.RowPerm(hf, rows);
            var w = new float[(long)rows * cols];
            for (int i = 0; i < rows; i++) Array.Copy(vals, (offset + i) * cols, w, (long)(perm?[i] ?? i) * cols, cols);
            using var src = tensor(w, [rows, cols]);
            p.copy_(src);
        }
    }
}
