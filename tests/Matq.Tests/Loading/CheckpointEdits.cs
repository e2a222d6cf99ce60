// Writes mutated copies of a fixture checkpoint (drop, reshape, poison a tensor) into temp folders for error tests.
using Matq.Formats.Safetensors;
using Matq.Tests.Models;

namespace Matq.Tests.Loading;

internal static class CheckpointEdits
{
    public delegate (SafetensorsDtype Dtype, long[] Shape, byte[] Data)? Edit(string name, SafetensorsTensorInfo info, byte[] data);

    /// <summary>Copies fixture <paramref name="fixture"/> to a temp folder, passing each tensor through <paramref name="edit"/> (null drops it).</summary>
    public static string Rewrite(string fixture, Edit edit, IEnumerable<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)>? add = null)
    {
        var dir = HfFixtures.TempDir();
        File.Copy(Path.Combine(HfFixtures.Path(fixture), "config.json"), Path.Combine(dir, "config.json"));
        var writer = new SafetensorsWriter();
        using (var ckpt = SafetensorsCheckpoint.Open(HfFixtures.Path(fixture)))
        {
            foreach (var name in ckpt.TensorNames.OrderBy(n => n, StringComparer.Ordinal))
            {
                var info = ckpt.Get(name);
                var result = edit(name, info, ckpt.ReadBytes(name));
                if (result is { } r) writer.Add(name, r.Dtype, r.Shape, r.Data);
            }
        }
        foreach (var t in add ?? []) writer.Add(t.Name, t.Dtype, t.Shape, t.Data);
        writer.Write(Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    public static string EditConfig(string fixture, Func<string, string> change)
    {
        var dir = HfFixtures.CopyToTemp(fixture);
        var path = Path.Combine(dir, "config.json");
        File.WriteAllText(path, change(File.ReadAllText(path)));
        return dir;
    }
}
