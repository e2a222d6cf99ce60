// Contract: an HF float model folder (config.json + safetensors, any family the decoder description reads) turned into
// an int8 RTN .matq without TorchSharp, so an app can open a float model on the packed runtime: every decoder linear is
// quantized asymmetric min-max per group of GroupSize input columns (Matq.Kernels' AffineQuantizer, the format's
// reference quantizer); embeddings, norms, biases and the head stay fp32. Phi-3's fused qkv_proj / gate_up_proj are split
// by rows as the runtime expects. The tokenizer is not copied: callers pass the folder itself as the tokenizer folder.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Kernels.Quantization;
using Matq.Runtime.Models;

namespace Matq.Runtime.Loading;

public static class FloatModelArtifact
{
    /// <summary>True when <paramref name="path"/> is a folder holding config.json (an HF model folder).</summary>
    public static bool IsFloatModelFolder(string path) => Directory.Exists(path) && File.Exists(Path.Combine(path, HfLlamaConfig.FileName));

    /// <summary>Writes the int8 RTN artifact of the HF folder <paramref name="folder"/> to <paramref name="outPath"/>.</summary>
    public static void WriteRtn8(string folder, string outPath, int groupSize = 32)
    {
        if (!IsFloatModelFolder(folder))
            throw new MatqException($"{SafeText.Quote(folder)} is not an HF model folder (no config.json): give a .matq artifact or a folder with config.json and model.safetensors");
        if (groupSize < 0 || groupSize % 32 != 0)
            throw new MatqException($"group size {groupSize} is invalid: give a multiple of 32 (the packed kernels' block) or 0 for one group per output channel");
        var configPath = Path.Combine(folder, HfLlamaConfig.FileName);
        var configJson = File.ReadAllText(configPath);
        var config = HfLlamaConfig.Parse(configJson, configPath);
        string weights = File.Exists(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName))
            ? Path.Combine(folder, SafetensorsCheckpoint.IndexFileName) : Path.Combine(folder, SafetensorsCheckpoint.SingleFileName);
        if (!File.Exists(weights))
            throw new MatqException($"{SafeText.Quote(folder)} has no {SafetensorsCheckpoint.SingleFileName} (nor {SafetensorsCheckpoint.IndexFileName}): give a folder with safetensors weights");
        using var ckpt = SafetensorsCheckpoint.Open(weights);
        using var writer = new MatqArtifactWriter("rtn", 8, groupSize, symmetric: false, [8])
        {
            ModelConfig = MatqMetadata.ParseObject(configJson, "model_config"),
            CreatedBy = "matq runtime (FloatModelArtifact.WriteRtn8)",
        };
        foreach (var (name, shape) in LlamaTensors.Expected(config))
        {
            var w = Read(ckpt, config, name, shape, weights);
            if (shape.Length == 2 && name.StartsWith("model.layers.", StringComparison.Ordinal) && name.EndsWith("_proj.weight", StringComparison.Ordinal))
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                if (groupSize > 0 && cols % groupSize != 0)
                    throw new MatqException($"{name} has {cols} input columns, not a multiple of the group size {groupSize}: open it with GroupSize 0 (per output channel) or quantize it with `matq quantize`");
                var spec = groupSize == 0 ? QuantSpec.PerChannel(8) : QuantSpec.Grouped(8, groupSize);
                var (p, codes) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
                writer.AddQuantized(name, rows, cols, codes, p.Scales, p.Zeros.Select(z => (float)z).ToArray());
            }
            else writer.AddFloat(name, shape, w);
        }
        writer.Write(outPath);
    }

    // A model tensor as fp32: its own checkpoint tensor, or its rows of a fused one (Phi-3).
    private static float[] Read(SafetensorsCheckpoint ckpt, LlamaConfig config, string name, long[] shape, string source)
    {
        var (stored, row) = LlamaTensors.CheckpointSource(config, name);
        if (!ckpt.Contains(stored))
            throw new MatqException($"{SafeText.Quote(source)} has no tensor {stored}, which config.json implies: the weights do not match config.json");
        var all = ckpt.ReadFloat32(stored);
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (stored == name)
        {
            if (all.Length != count)
                throw new MatqException($"{SafeText.Quote(source)}: {name} holds {all.Length} values but config.json implies shape {LlamaTensors.ShapeText(shape)}");
            return all;
        }
        long cols = shape[1], start = row * cols;
        if (start + count > all.Length)
            throw new MatqException($"{SafeText.Quote(source)}: the fused {stored} is too small for {name} {LlamaTensors.ShapeText(shape)}");
        return all.AsSpan((int)start, (int)count).ToArray();
    }
}
