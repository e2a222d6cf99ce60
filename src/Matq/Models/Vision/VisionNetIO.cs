// Contract: saves/loads a VisionNet as a folder: model.safetensors (every float tensor of the state dict, F32) and
// config.json; writes are atomic (temp + rename); loading checks names, dtypes and shapes before copying.
using Matq.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Models.Vision;

public static class VisionNetIO
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string Format = "matq-vision-v1";

    /// <summary>True when <paramref name="dir"/> holds config.json and a model.safetensors tagged format = matq-vision-v1
    /// (what <see cref="Save"/> writes); false for anything else (an HF folder, a file, a missing path).</summary>
    public static bool IsVisionFolder(string dir)
    {
        var wPath = Path.Combine(dir, WeightsFile);
        if (!Directory.Exists(dir) || !File.Exists(Path.Combine(dir, ConfigFile)) || !File.Exists(wPath)) return false;
        try
        {
            using var f = SafetensorsFile.Open(wPath);
            return f.Metadata.TryGetValue("format", out var format) && format == Format;
        }
        catch (Exception e) when (e is MatqException or IOException or InvalidDataException) { return false; }
    }

    /// <summary>The architecture in <paramref name="dir"/>/config.json (no weights read).</summary>
    public static VisionNetConfig ReadConfig(string dir)
    {
        var cfgPath = Path.Combine(dir, ConfigFile);
        if (!File.Exists(cfgPath)) throw new MatqException($"{dir} is not a matq vision model folder (needs {ConfigFile}): train one with `matq train cnn`");
        return VisionNetConfig.FromJson(File.ReadAllText(cfgPath));
    }

    /// <summary>Float tensors of the state dict (BN's integer num_batches_tracked is skipped).</summary>
    public static IReadOnlyList<(string Name, Tensor Value)> FloatState(VisionNet net) =>
        net.state_dict().Where(kv => kv.Value.dtype == ScalarType.Float32).Select(kv => (kv.Key, kv.Value)).ToList();

    public static void Save(VisionNet net, string dir, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Directory.CreateDirectory(dir);
        var w = new SafetensorsWriter();
        w.Metadata["format"] = Format;
        if (metadata is not null) foreach (var kv in metadata) w.Metadata[kv.Key] = kv.Value;
        foreach (var (name, t) in FloatState(net))
        {
            using var cpu = t.detach().cpu().contiguous();
            w.AddFloat32(name, cpu.shape, cpu.data<float>().ToArray());
        }
        w.Write(Path.Combine(dir, WeightsFile));
        var cfg = Path.Combine(dir, ConfigFile);
        Matq.Formats.IO.AtomicFile.WriteAllText(cfg, net.Config.ToJson());
    }

    /// <summary>Builds the net from config.json and copies the weights in (float net; quant steps are not restored).</summary>
    public static VisionNet Load(string dir)
    {
        var cfgPath = Path.Combine(dir, ConfigFile);
        var wPath = Path.Combine(dir, WeightsFile);
        if (!File.Exists(cfgPath) || !File.Exists(wPath))
            throw new MatqException($"{dir} is not a matq vision model folder (needs {ConfigFile} and {WeightsFile}): train one with `matq train cnn`");
        var net = VisionNet.Create(VisionNetConfig.FromJson(File.ReadAllText(cfgPath)));
        using var f = SafetensorsFile.Open(wPath);
        using var noGrad = no_grad();
        foreach (var (name, t) in FloatState(net))
        {
            if (!f.Contains(name)) throw new MatqException($"{wPath} lacks tensor {name}: it was written for another architecture");
            var info = f.Get(name);
            if (info.Dtype != SafetensorsDtype.F32 || !info.Shape.SequenceEqual(t.shape))
                throw new MatqException($"{wPath}: {name} is {SafetensorsDtypes.ToName(info.Dtype)}{info.ShapeText}, expected F32[{string.Join(", ", t.shape)}]");
            using var src = tensor(f.ReadFloat32(name), t.shape, ScalarType.Float32);
            t.copy_(src);
        }
        return net;
    }
}
