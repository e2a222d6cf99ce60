// Prefill with int8 activations (PackedActivations.Int8: the integer GEMM over prefill chunks) on the tiny HF fixture,
// quantized here by RTN (8-bit master, groups of 32) and served at every packed width with an 8-bit packed head:
//  - exact: the int8 prefill's logits equal, bit for bit, those of the same session fed one token at a time (the integer
//    GEMV with the same per-token activation quantization) — the GEMM's rows are the GEMV's, and every other step of
//    the forward is per token;
//  - bounded: they stay within the int8-activation error bound the decode path documents (max |Δlogit| ≤ 2% of
//    max |logit| against fp32 activations), and differ from fp32 (the int8 path ran);
//  - Fp32 stays the default mode, and its prefill is untouched by the Int8 mode of another session.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Kernels.Packed;
using Matq.Kernels.Quantization;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Packed;

namespace Matq.Runtime.Tests;

public sealed class Int8PrefillTests
{
    internal static readonly Lazy<string> Artifact = new(WriteArtifact);

    public static IEnumerable<object[]> Widths() => PackedWidths.Bits.Select(b => new object[] { b });

    [Theory]
    [MemberData(nameof(Widths))]
    public void Int8_prefill_equals_int8_token_by_token_and_stays_within_the_int8_bound_of_fp32(int bits)
    {
        var model = PackedLlamaModel.Load(Artifact.Value, new PackedModelOptions { Bits = bits, HeadBits = 8 });
        Assert.All(model.Layers.SelectMany(l => l.Linears), l => Assert.NotNull(l.Packed));
        Assert.NotNull(model.Head.Packed);
        int v = model.Config.VocabSize;
        var rng = new Random(bits);
        var ids = Enumerable.Range(0, 45).Select(_ => rng.Next(v)).ToArray();   // 45 > MaxBatch: chunks of 32 and 13 tokens

        var fp32 = new PackedLlamaSession(model, threads: 1).Forward(ids, allLogits: true);
        Assert.Equal(PackedActivations.Fp32, new PackedLlamaSession(model).Activations);   // fp32 is the default
        var prefill = new PackedLlamaSession(model, threads: bits % 2 == 0 ? 1 : -1, activations: PackedActivations.Int8).Forward(ids, allLogits: true);

        var step = new PackedLlamaSession(model, threads: 1, activations: PackedActivations.Int8);
        var stepwise = new List<float>();
        foreach (int id in ids) stepwise.AddRange(step.Forward([id]));
        var tokenByToken = stepwise.ToArray();

        Assert.Equal(tokenByToken.Length, prefill.Length);
        for (int i = 0; i < prefill.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(prefill[i]) == BitConverter.SingleToInt32Bits(tokenByToken[i]),
                $"r = {bits}: token {i / v}, logit {i % v}: int8 prefill {prefill[i]:R} vs int8 token by token {tokenByToken[i]:R}");

        double max = fp32.Max(Math.Abs), worst = fp32.Zip(prefill, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 2e-2 * max, $"r = {bits}: int8 prefill max |Δ| = {worst:G4} vs max|logit| {max:G4}");
        Assert.True(worst > 1e-6 * max, $"r = {bits}: the int8 path ran (its logits differ from fp32)");

        // fp32 prefill is unchanged by the Int8 sessions above (no shared state)
        Assert.Equal(fp32, new PackedLlamaSession(model, threads: 1).Forward(ids, allLogits: true));
    }

    [Fact]
    public void Int8_prefill_then_int8_decode_continues_the_same_sequence()
    {
        var model = PackedLlamaModel.Load(Artifact.Value, new PackedModelOptions { Bits = 4, HeadBits = 8 });
        var rng = new Random(7);
        var ids = Enumerable.Range(0, 40).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        var whole = new PackedLlamaSession(model, activations: PackedActivations.Int8).Forward(ids, allLogits: true);
        var s = new PackedLlamaSession(model, activations: PackedActivations.Int8);
        var parts = new List<float>(s.Forward(ids.AsSpan(0, 19), allLogits: true));
        for (int i = 19; i < ids.Length; i++) parts.AddRange(s.Forward(ids.AsSpan(i, 1)));
        Assert.Equal(whole, parts.ToArray());
    }

    // RTN at 8 bits, groups of 32, asymmetric, of every linear of the decoder blocks (embeddings, norms, head fp32).
    private static string WriteArtifact()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
        var folder = Path.Combine(dir, "tests", "fixtures", "tiny-llama");
        var path = Path.Combine(Directory.CreateTempSubdirectory("matq-int8-prefill-").FullName, "tiny-rtn8-g32.matq");
        var configJson = File.ReadAllText(Path.Combine(folder, HfLlamaConfig.FileName));
        var config = HfLlamaConfig.Parse(configJson, "tiny-llama config.json");
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(folder, "model.safetensors"));
        var writer = new MatqArtifactWriter("rtn", 8, 32, symmetric: false, [8])
        {
            ModelConfig = MatqMetadata.ParseObject(configJson, "model_config"),
        };
        var spec = QuantSpec.Grouped(8, 32);
        foreach (var (name, shape) in LlamaTensors.Expected(config))
        {
            var w = ckpt.ReadFloat32(name);
            if (name.StartsWith("model.layers.", StringComparison.Ordinal) && name.EndsWith("_proj.weight", StringComparison.Ordinal))
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                var (p, codes) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
                writer.AddQuantized(name, rows, cols, codes, p.Scales, p.Zeros.Select(z => (float)z).ToArray());
            }
            else writer.AddFloat(name, shape, w);
        }
        writer.Write(path);
        return path;
    }
}
