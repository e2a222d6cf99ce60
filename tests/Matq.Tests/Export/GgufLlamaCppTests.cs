// matq's GGUF exports run in llama.cpp itself (the CPU build that LLamaSharp 0.30.0 ships): for every GGUF type the file
// loads, and llama.cpp's logits over a token sequence agree with matq's own forward of the same weights —
// f32: the served 8-bit weights exactly (float summation order only); f16: those weights rounded to fp16; q8_0, q4_0,
// q4_1 on the lossless paths: matq's codes with fp16 block scales; the embedding kept f32 there so that the comparison
// isolates the linears. Also: a model with no tokenizer (tokenizer.ggml.model = none), a tensor that falls back to f16,
// the default q8_0 embedding, and an HF folder exported without matq quantizing it.
using LLama;
using LLama.Common;
using LLama.Native;
using Matq.Export;
using Matq.Formats.Gguf;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Serving;
using Matq.Tests.Models;
using Xunit.Abstractions;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Export;

public sealed class GgufLlamaCppTests(ITestOutputHelper output)
{
    // 64 byte ids of a SOTU-like sentence: models/tiny's tokenizer is one id per byte
    private static readonly int[] Ids = System.Text.Encoding.UTF8.GetBytes("Fellow citizens, the state of our Union is strong; we meet again.").Take(64).Select(b => (int)b).ToArray();

    [Theory]
    // type, master bits, symmetric, served bits, max |Δlogit| allowed, mean-NLL ratio tolerance
    // f32 agrees to float rounding; f16 rounds weights; for q8_0/q4_0/q4_1 llama.cpp also quantizes the *activations*
    // to q8 blocks inside its dot products (ggml's design), which moves logits by ~0.1 while the NLL stays within 0.2 %
    [InlineData("f32", 8, false, 8, 2e-4, 1e-5)]
    [InlineData("f16", 8, false, 8, 0.02, 1e-4)]
    [InlineData("q8_0", 8, true, 8, 0.3, 5e-3)]
    [InlineData("q4_0", 8, true, 4, 0.3, 5e-3)]
    [InlineData("q4_1", 8, false, 4, 0.3, 5e-3)]
    public void Llama_cpp_runs_each_gguf_type_with_matqs_logits(string type, int master, bool symmetric, int bits, double maxDiff, double nllTol)
    {
        var artifact = GgufExporterTests.TinyArtifact(new QuantizationConfig("rtn", master, 32, symmetric));
        var gguf = Path.Combine(HfFixtures.TempDir(), $"tiny-{type}.gguf");
        var report = GgufExporter.Export(artifact, GgufExporter.ParseType(type), gguf, embedType: GgmlType.F32);
        if (type is "q8_0" or "q4_0" or "q4_1") Assert.Equal(28, report.Lossless);

        using var served = QuantizedModelLoader.Load(artifact, bits);
        var (diff, ratio) = Compare(LlamaCpp.Logits(gguf, Ids), MatqLogits(served, Ids), Ids);
        output.WriteLine($"| models/tiny rtn{master}{(symmetric ? " sym" : "")} | {type} | {bits} | {report.Lossless} | {diff:E2} | {ratio:F6} |");
        Assert.InRange(diff, 0, maxDiff);
        Assert.InRange(ratio, 1 - nllTol, 1 + nllTol);
    }

    [Fact]
    public void The_default_q8_0_embedding_and_an_f16_fallback_tensor_still_track_matq()
    {
        // tiny-llama (HF fixture): no tokenizer files, down_proj rows of 176 values (not a multiple of 32)
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, 32));
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny-llama-q4_1.gguf");
        var report = GgufExporter.Export(artifact, GgmlType.Q4_1, gguf);
        Assert.Contains(report.Notes, n => n.Contains("tokenizer.ggml.model = none", StringComparison.Ordinal));
        Assert.Contains(report.Notes, n => n.Contains("written as f16", StringComparison.Ordinal));
        int[] ids = [1, 17, 200, 45, 3, 99, 250, 7, 64, 128, 31, 5];
        using var served = QuantizedModelLoader.Load(artifact, 4);
        var (diff, ratio) = Compare(LlamaCpp.Logits(gguf, ids), MatqLogits(served, ids), ids);
        output.WriteLine($"| tiny-llama rtn8 (no tokenizer) | q4_1, q8_0 embedding, f16 down_proj | 4 | - | {diff:E2} | {ratio:F6} |");
        Assert.InRange(diff, 0, 0.3);
        Assert.InRange(ratio, 1 - 5e-3, 1 + 5e-3);
    }

    [Fact]
    public void An_hf_folder_exports_without_quantizing_and_llama_cpp_matches_the_float_model()
    {
        var gguf = Path.Combine(HfFixtures.TempDir(), "tiny-float.gguf");
        var report = GgufExporter.ExportFloat(GgufExporterTests.TinyModel, GgmlType.F32, gguf);
        Assert.Equal(0, report.Requantized);
        using var model = LlamaLoader.Load(GgufExporterTests.TinyModel, CPU);
        var (diff, ratio) = Compare(LlamaCpp.Logits(gguf, Ids), MatqLogits(model, Ids), Ids);
        output.WriteLine($"| models/tiny HF folder | f32 | float | - | {diff:E2} | {ratio:F6} |");
        Assert.InRange(diff, 0, 2e-4);
        Assert.InRange(ratio, 1 - 1e-5, 1 + 1e-5);
    }

    internal static float[][] MatqLogits(Matq.Models.LlamaForCausalLM model, int[] ids)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var logits = model.call(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));
        var flat = PipelineFixtures.Floats(logits);
        int v = (int)logits.shape[^1];
        return Enumerable.Range(0, ids.Length).Select(t => flat.AsSpan(t * v, v).ToArray()).ToArray();
    }

    // max |Δlogit| over every position and token, and mean next-token NLL (llama.cpp) / mean NLL (matq)
    internal static (double MaxDiff, double NllRatio) Compare(float[][] a, float[][] b, int[] ids)
    {
        Assert.Equal(b.Length, a.Length);
        double max = 0, nllA = 0, nllB = 0;
        for (int t = 0; t < a.Length; t++)
        {
            Assert.Equal(b[t].Length, a[t].Length);
            for (int j = 0; j < a[t].Length; j++) max = Math.Max(max, Math.Abs(a[t][j] - b[t][j]));
            if (t + 1 < ids.Length) { nllA += Nll(a[t], ids[t + 1]); nllB += Nll(b[t], ids[t + 1]); }
        }
        return (max, nllA / nllB);
    }

    private static double Nll(float[] logits, int target)
    {
        double m = logits.Max(), s = logits.Sum(x => Math.Exp(x - m));
        return m + Math.Log(s) - logits[target];
    }
}

/// <summary>Runs a GGUF file in llama.cpp (LLamaSharp's CPU backend) and returns the logits of every position.</summary>
internal static class LlamaCpp
{
    private static readonly Lock Gate = new();
    private static bool _quiet;

    public static float[][] Logits(string gguf, int[] ids)
    {
        lock (Gate)
        {
            if (!_quiet)
            {
                // llama.cpp logs every tensor it loads; keep test output readable (errors still surface as exceptions)
                NativeLibraryConfig.All.WithLogCallback((level, message) => { });
                _quiet = true;
            }
            var p = new ModelParams(gguf)
            {
                ContextSize = (uint)Math.Max(64, ids.Length), BatchSize = (uint)Math.Max(64, ids.Length),
                UBatchSize = (uint)Math.Max(64, ids.Length), GpuLayerCount = 0, Threads = 2,
                // f32 KV cache and no flash attention: llama.cpp's defaults (f16 cache; CPU flash attention, which rounds
                // through f16) alone move logits by ~1e-2; with these, an f32 export agrees to ~2e-5
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32,
                FlashAttention = false,
            };
            using var weights = LLamaWeights.LoadFromFile(p);
            using var ctx = weights.CreateContext(p);
            var batch = new LLamaBatch();
            for (int i = 0; i < ids.Length; i++) batch.Add((LLamaToken)ids[i], i, (LLamaSeqId)0, true);
            var r = ctx.Decode(batch);
            if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode of {gguf}: {r}");
            return Enumerable.Range(0, ids.Length).Select(i => ctx.NativeHandle.GetLogitsIth(i).ToArray()).ToArray();
        }
    }
}
