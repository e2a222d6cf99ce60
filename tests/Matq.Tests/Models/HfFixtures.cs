// Locates the HF reference fixtures (tests/fixtures/tiny-*) from the test binary and reads expected.safetensors.
using Matq.Formats.Safetensors;
using static TorchSharp.torch;

namespace Matq.Tests.Models;

internal static class HfFixtures
{
    public static string Root { get; } = FindRoot();

    public static string Path(string name) => System.IO.Path.Combine(Root, "tests", "fixtures", name);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Matq.sln"))) return dir.FullName;
        throw new InvalidOperationException("Matq.sln not found above the test binary");
    }

    /// <summary>input_ids [B, T] int64 and HF's fp32 logits [B, T, V] from expected.safetensors.</summary>
    public static (Tensor Ids, Tensor Logits) Expected(string name)
    {
        using var ckpt = SafetensorsCheckpoint.Open(System.IO.Path.Combine(Path(name), "expected.safetensors"));
        var idsInfo = ckpt.Get("input_ids");
        var ids = empty(idsInfo.Shape, dtype: ScalarType.Int64);
        ids.bytes = ckpt.ReadBytes("input_ids");
        var logitsInfo = ckpt.Get("logits");
        var logits = tensor(ckpt.ReadFloat32("logits"), logitsInfo.Shape);
        return (ids, logits);
    }

    /// <summary>Copies a fixture's config.json and model.safetensors into a fresh temp folder for mutation.</summary>
    public static string CopyToTemp(string name)
    {
        var dir = TempDir();
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(System.IO.Path.Combine(Path(name), f), System.IO.Path.Combine(dir, f));
        return dir;
    }

    private static readonly List<string> Temps = RegisterCleanup();

    private static List<string> RegisterCleanup()
    {
        var list = new List<string>();
        // the test host may exit before ProcessExit finishes: also sweep leftovers of earlier runs (older than an hour)
        foreach (var old in Directory.GetDirectories(System.IO.Path.GetTempPath(), "matq-model-tests-*"))
            if (Directory.GetCreationTimeUtc(old) < DateTime.UtcNow.AddHours(-1))
                try { Directory.Delete(old, recursive: true); } catch (IOException) { }
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            lock (list) foreach (var d in list) try { Directory.Delete(d, recursive: true); } catch (IOException) { }
        };
        return list;
    }

    /// <summary>A fresh temp folder, deleted when the test process exits.</summary>
    public static string TempDir()
    {
        var dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "matq-model-tests-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        lock (Temps) Temps.Add(dir);
        return dir;
    }

    public static double MaxAbsDiff(Tensor a, Tensor b) =>
        (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
}
