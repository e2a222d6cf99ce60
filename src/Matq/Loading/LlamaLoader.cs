// Loads an HF decoder folder of any described family (config.json + model.safetensors or shards) into LlamaForCausalLM
// on a device and dtype. Every tensor is validated before use: present, float, the shape the config implies, finite;
// extra tensors refused. Phi-3's fused qkv_proj / gate_up_proj are split by rows into the model's q/k/v and gate/up
// (LlamaTensors.CheckpointSource), so quantization and every backend see the same seven linears per layer.
using Matq.Formats.Safetensors;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Loading;

public static class LlamaLoader
{
    /// <summary>
    /// Reads the model in <paramref name="folder"/>. Tied configs: lm_head.weight may be absent (the usual HF layout) or
    /// present and bit-identical to model.embed_tokens.weight; a different lm_head.weight is refused rather than silently
    /// dropped or used. Ignorable tensors (rotary inv_freq) are reported through <paramref name="warn"/>.
    /// </summary>
    public static LlamaForCausalLM Load(string folder, Device? device = null, ScalarType dtype = ScalarType.Float32, Action<string>? warn = null)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new MatqException($"dtype {dtype} is not a float type (use float32, bfloat16 or float16)");
        device ??= CPU;
        var config = HfLlamaConfig.Read(folder);
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        Validate(ckpt, config, warn);
        using var scope = NewDisposeScope();
        var model = new LlamaForCausalLM(config, (name, shape) => ReadModelTensor(ckpt, config, name, shape, device, dtype), device, dtype);
        model.eval();
        return model;
    }

    /// <summary>The checkpoint dtype of every model tensor of <paramref name="folder"/> (headers only; a split Phi-3
    /// tensor has its fused tensor's), so an artifact can store float tensors as the source did.</summary>
    public static Dictionary<string, SafetensorsDtype> SourceDtypes(string folder)
    {
        var config = HfLlamaConfig.Read(folder);
        using var ckpt = SafetensorsCheckpoint.Open(folder);
        return SourceDtypes(ckpt, config);
    }

    internal static Dictionary<string, SafetensorsDtype> SourceDtypes(SafetensorsCheckpoint ckpt, LlamaConfig config)
    {
        var map = new Dictionary<string, SafetensorsDtype>(StringComparer.Ordinal);
        foreach (var (name, _) in LlamaTensors.Enumerate(config))
        {
            var source = LlamaTensors.CheckpointSource(config, name).Name;
            if (ckpt.Contains(source)) map[name] = ckpt.Get(source).Dtype;
        }
        return map;
    }

    /// <summary>Checks names, dtypes and shapes against the config before any data is read.</summary>
    public static void Validate(SafetensorsCheckpoint ckpt, LlamaConfig config, Action<string>? warn = null)
    {
        // one at a time: the first missing tensor stops a config that claims more layers than the file holds
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in LlamaTensors.Checkpoint(config))
        {
            known.Add(name);
            if (!ckpt.Contains(name))
                throw new MatqException($"{ckpt.Source}: tensor '{name}' is missing (config.json expects it; is the checkpoint complete and for this config?)");
            var info = ckpt.Get(name);
            if (!SafetensorsDtypes.IsFloat(info.Dtype))
                throw new MatqException($"{ckpt.Source}: tensor '{name}' has dtype {SafetensorsDtypes.ToName(info.Dtype)}, expected F32, F16 or BF16");
            if (!info.Shape.SequenceEqual(shape))
                throw new MatqException($"{ckpt.Source}: tensor '{name}' has shape {info.ShapeText} but config.json implies {LlamaTensors.ShapeText(shape)}");
        }
        var unexpected = new List<string>();
        foreach (var name in ckpt.TensorNames.OrderBy(n => n, StringComparer.Ordinal))
        {
            if (known.Contains(name)) continue;
            if (name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal))
                warn?.Invoke($"{ckpt.Source}: ignoring '{name}' (rotary frequencies are recomputed from rope_theta)");
            else if (name == "lm_head.weight" && config.TieWordEmbeddings)
                CheckTiedHead(ckpt, warn);
            else
                unexpected.Add(name);
        }
        if (unexpected.Count > 0)
            throw new MatqException($"{ckpt.Source}: {unexpected.Count} tensor(s) not used by a {config.Family} model with this config.json: "
                + string.Join(", ", unexpected.Take(5).Select(n => $"'{n}'")) + (unexpected.Count > 5 ? ", ..." : "")
                + " (is config.json for these weights?)");
    }

    private static void CheckTiedHead(SafetensorsCheckpoint ckpt, Action<string>? warn)
    {
        var head = ckpt.Get("lm_head.weight");
        var emb = ckpt.Get("model.embed_tokens.weight");
        bool same = head.Shape.SequenceEqual(emb.Shape) && (head.Dtype == emb.Dtype
            ? ckpt.ReadBytes("lm_head.weight").AsSpan().SequenceEqual(ckpt.ReadBytes("model.embed_tokens.weight"))
            : ckpt.ReadFloat32("lm_head.weight").AsSpan().SequenceEqual(ckpt.ReadFloat32("model.embed_tokens.weight")));
        if (!same)
            throw new MatqException($"{ckpt.Source}: tensor 'lm_head.weight' differs from 'model.embed_tokens.weight' but config.json has tie_word_embeddings=true (set it to false to use the separate head)");
        warn?.Invoke($"{ckpt.Source}: 'lm_head.weight' equals the tied embedding; using model.embed_tokens.weight");
    }

    /// <summary>A model tensor: read as stored, or its rows of a fused checkpoint tensor (Phi-3).</summary>
    internal static Tensor ReadModelTensor(SafetensorsCheckpoint ckpt, LlamaConfig config, string name, long[] shape, Device device, ScalarType dtype)
    {
        var (source, row) = LlamaTensors.CheckpointSource(config, name);
        if (source == name) return ReadTensor(ckpt, name, shape, device, dtype);
        using var scope = NewDisposeScope();
        var fused = ReadTensor(ckpt, source, ckpt.Get(source).Shape.ToArray(), device, dtype);
        return fused.narrow(0, row, shape[0]).clone().MoveToOuterDisposeScope();
    }

    /// <summary>One tensor from disk as [shape] in <paramref name="dtype"/> on <paramref name="device"/>, checked finite.</summary>
    internal static Tensor ReadTensor(SafetensorsCheckpoint ckpt, string name, long[] shape, Device device, ScalarType dtype,
        long sliceBytes = ReadSliceBytes)
    {
        var info = ckpt.Get(name);
        if (!info.Shape.SequenceEqual(shape))
            throw new MatqException($"{ckpt.Source}: tensor '{name}' has shape {info.ShapeText} but the model needs {LlamaTensors.ShapeText(shape)}");
        var diskType = info.Dtype switch
        {
            SafetensorsDtype.F32 => ScalarType.Float32,
            SafetensorsDtype.F16 => ScalarType.Float16,
            SafetensorsDtype.BF16 => ScalarType.BFloat16,
            SafetensorsDtype.F64 => ScalarType.Float64,
            _ => throw new MatqException($"{ckpt.Source}: tensor '{name}' has dtype {SafetensorsDtypes.ToName(info.Dtype)}, expected F32, F16 or BF16"),
        };
        // Read in slices of at most ReadSliceBytes through one host buffer, each converted into place: memory is the
        // result plus one slice (read whole, an 8B embedding widened to fp32 held its bytes three times over).
        using var scope = NewDisposeScope();
        var result = empty(shape, dtype: dtype, device: device);
        long count = result.numel();
        if (count == 0) return result.MoveToOuterDisposeScope();
        int size = SafetensorsDtypes.SizeOf(info.Dtype);
        long slice = Math.Clamp(sliceBytes / size, 1, count);
        var flat = result.view(-1);
        var buffer = empty(slice, dtype: diskType);
        // a conversion that keeps every value (same dtype, or a wider float) keeps NaN/Inf as they are: the values are then
        // checked once, converted, where they land (on the GPU, not by the host's threads before the copy)
        bool keeps = dtype == diskType || dtype == ScalarType.Float64
            || (dtype == ScalarType.Float32 && diskType is ScalarType.BFloat16 or ScalarType.Float16);
        long bad = 0, overflowed = 0;
        for (long at = 0; at < count; at += slice)
        {
            using var sliceScope = NewDisposeScope();
            long len = Math.Min(slice, count - at);
            var part = buffer.narrow(0, 0, len);
            ckpt.ReadRange(name, at * size, part.bytes);
            if (!keeps) bad += CountNonFinite(part);
            if (bad > 0) continue;   // reported below, before any conversion is judged
            var dest = flat.narrow(0, at, len);
            dest.copy_(part);
            if (keeps) bad += CountNonFinite(dest);
            else overflowed += CountNonFinite(dest);
        }
        if (bad > 0)
            throw new MatqException($"{ckpt.Source}: tensor '{name}' holds {bad} NaN/Inf value(s) (the checkpoint is corrupt or diverged; re-export it)");
        if (overflowed > 0)
            throw new MatqException($"{ckpt.Source}: tensor '{name}' overflows {dtype} (max |w| = {MaxAbs(ckpt, name, diskType, count, size):G4}); load it in float32");
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Bytes per slice of <see cref="ReadTensor"/> (tests pass smaller slices).</summary>
    internal const long ReadSliceBytes = 64L << 20;

    // max |w| of a finite tensor as stored (the overflow message; read again slice by slice)
    private static double MaxAbs(SafetensorsCheckpoint ckpt, string name, ScalarType diskType, long count, int size)
    {
        using var scope = NewDisposeScope();
        long slice = Math.Min(count, ReadSliceBytes / size);
        var buffer = empty(slice, dtype: diskType);
        double max = 0;
        for (long at = 0; at < count; at += slice)
        {
            long len = Math.Min(slice, count - at);
            var part = buffer.narrow(0, 0, len);
            ckpt.ReadRange(name, at * size, part.bytes);
            max = Math.Max(max, part.abs().max().to(ScalarType.Float64).item<double>());
        }
        return max;
    }

    private static long CountNonFinite(Tensor t) => t.numel() == 0 ? 0 : isfinite(t).logical_not().sum().item<long>();
}
