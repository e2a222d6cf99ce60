// Shared helpers for pipeline/serving tests: the tiny-llama HF fixture, RTN runs on it, artifact paths in temp folders.
using Matq.Loading;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

internal static class PipelineFixtures
{
    public const string Tiny = "tiny-llama";

    public static string TinyPath => HfFixtures.Path(Tiny);

    public static LlamaForCausalLM LoadTiny(ScalarType dtype = ScalarType.Float32) => LlamaLoader.Load(TinyPath, CPU, dtype);

    public static QuantizationConfig Rtn(int bits, int group = 32, bool symmetric = false, string clip = "minmax", bool head = false) =>
        new("rtn", bits, group, symmetric, head, new Dictionary<string, string> { ["clip"] = clip });

    public static QuantizationResult Quantize(LlamaForCausalLM model, QuantizationConfig config, List<QuantizationEvent>? events = null) =>
        QuantizationRunner.Run(config, new QuantizationContext(model, CPU, seed: 7, progress: events is null ? null : events.Add));

    /// <summary>RTN of the fixture written to a fresh temp folder as tiny.matq; returns (artifact path, result).</summary>
    public static (string Path, QuantizationResult Result) WriteTinyArtifact(QuantizationConfig config, string? tokenizerFolder = null)
    {
        using var model = LoadTiny();
        var result = Quantize(model, config);
        var path = System.IO.Path.Combine(HfFixtures.TempDir(), "tiny.matq");
        ArtifactExport.Write(result, model, path, tokenizerFolder);
        return (path, result);
    }

    /// <summary>
    /// The fixture quantized by <paramref name="config"/> and written as perm.matq with its first layer's codes stored in
    /// reversed column order and that permutation recorded; returns (artifact path, the original first layer, its permuted codes).
    /// </summary>
    public static (string Path, QuantizedLinearResult Layer, byte[] Permuted) WriteReversedPermutationArtifact(QuantizationConfig config)
    {
        var (_, result) = WriteTinyArtifact(config);
        var layer = result.Layers[0];
        int n = layer.InFeatures;
        var perm = Enumerable.Range(0, n).Reverse().ToArray();
        var permuted = new byte[layer.Codes.Length];
        for (int o = 0; o < layer.OutFeatures; o++)
            for (int k = 0; k < n; k++) permuted[o * n + k] = layer.Codes[o * n + perm[k]];
        var swapped = new QuantizedLinearResult(layer.Name, layer.OutFeatures, n, layer.GroupSize, permuted, layer.Scales, layer.Zeros, perm, layer.Report);
        using var model = LoadTiny();
        var path = System.IO.Path.Combine(HfFixtures.TempDir(), "perm.matq");
        ArtifactExport.Write(result with { Layers = [swapped, .. result.Layers.Skip(1)] }, model, path);
        return (path, layer, permuted);
    }

    /// <summary>The fixture folder copied to temp with a byte-tokenizer marker, so exports have a tokenizer to copy.</summary>
    public static string TinyWithTokenizer()
    {
        var dir = HfFixtures.CopyToTemp(Tiny);
        File.WriteAllText(System.IO.Path.Combine(dir, "matq_tokenizer.json"), "{ \"kind\": \"bytes\", \"bos_eos\": false }\n");
        return dir;
    }

    public static float[] Floats(Tensor t) => t.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();

    public static Tensor WeightOf(LlamaForCausalLM model, string module) =>
        LinearSelection.WeightOf(module, model.Linears(includeHead: true).Single(l => l.Name == module).Module);
}
