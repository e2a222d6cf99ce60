// Saves a LlamaForCausalLM as an HF folder: config.json + model.safetensors (or shards + index) with the family's HF
// checkpoint names (Phi-3: q/k/v and gate/up fused back into qkv_proj / gate_up_proj), in F32, BF16 or F16. Each file is written atomically (temp + rename); weights first, then config.json.

namespace Matq.Loading;

public static class LlamaSaver
{
    public const long DefaultMaxShardBytes = 5L * 1024 * 1024 * 1024;

    /// <summary>True when <paramref name="folder"/> holds a saved model (config.json or safetensors weights).</summary>
    public static bool HoldsModel(string folder) =>
        Directory.Exists(folder) && (File.Exists(Path.Combine(folder, HfLlamaConfig.FileName)) || Directory.EnumerateFiles(folder, "*.safetensors").Any());

    public static IReadOnlyList<string> Save(LlamaForCausalLM model, string folder, SafetensorsDtype dtype = SafetensorsDtype.F32,
        long maxShardBytes = DefaultMaxShardBytes)
    {
        var (torchType, hfName) = dtype switch
        {
            SafetensorsDtype.F32 => (ScalarType.Float32, "float32"),
            SafetensorsDtype.BF16 => (ScalarType.BFloat16, "bfloat16"),
            SafetensorsDtype.F16 => (ScalarType.Float16, "float16"),
            _ => throw new MatqException($"save dtype {SafetensorsDtypes.ToName(dtype)} is not supported (use F32, BF16 or F16)"),
        };
        if (maxShardBytes <= 0) throw new MatqException($"maxShardBytes {maxShardBytes} must be positive");
        var tensors = new List<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)>();
        foreach (var (name, shape) in LlamaTensors.Checkpoint(model.Config))
        {
            using var scope = NewDisposeScope();
            Tensor Param(string n) => model.get_parameter(n)
                ?? throw new MatqException($"cannot save '{n}' as an HF tensor: that module was replaced (save quantized models with the artifact writer)");
            var parts = LlamaTensors.FusedParts(model.Config, name);
            var p = parts is null ? Param(name) : cat(parts.Select(part => Param(part.Name)).ToArray(), 0);
            if (!p.shape.SequenceEqual(shape))
                throw new MatqException($"cannot save '{name}': its shape {LlamaTensors.ShapeText(p.shape)} differs from the config's {LlamaTensors.ShapeText(shape)}");
            var host = p.detach().to(torchType, CPU).contiguous();
            tensors.Add((name, dtype, shape, host.bytes.ToArray()));
        }
        var written = new List<string>(SafetensorsCheckpoint.WriteSharded(folder, tensors, maxShardBytes,
            new Dictionary<string, string> { ["format"] = "pt" }));
        HfLlamaConfig.Write(model.Config, folder, hfName);
        written.Add(Path.Combine(folder, HfLlamaConfig.FileName));
        return written;
    }
}
