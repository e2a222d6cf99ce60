// Test helpers: locating the repo's HF fixtures, throwaway folders, and asserting "one MatqException line".
using Matq;

namespace Matq.Formats.Tests;

internal static class Fixtures
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = System.IO.Path.Combine(dir.FullName, "tests", "fixtures");
            if (Directory.Exists(System.IO.Path.Combine(candidate, "tiny-llama"))) return candidate;
        }
        throw new InvalidOperationException("tests/fixtures not found above " + AppContext.BaseDirectory);
    });

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root.Value, .. parts]);
    public static string TinyLlama => Path("tiny-llama", "model.safetensors");
    public static string TinyQwen2 => Path("tiny-qwen2", "model.safetensors");
}

/// <summary>A fresh folder under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("matq-formats-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

internal static class MatqAssert
{
    /// <summary>
    /// Runs <paramref name="action"/> expecting exactly a MatqException (any other type fails the test) whose
    /// one-line message contains every fragment (case-insensitive).
    /// </summary>
    public static MatqException Throws(Action action, params string[] fragments)
    {
        Exception? caught = null;
        try { action(); }
        catch (Exception e) { caught = e; }
        Assert.True(caught is not null, "expected a MatqException, nothing was thrown");
        if (caught is not MatqException mx)
            throw new Xunit.Sdk.XunitException($"expected MatqException, got {caught!.GetType().Name}: {caught}");
        Assert.DoesNotContain('\n', mx.Message);
        foreach (var f in fragments)
            Assert.True(mx.Message.Contains(f, StringComparison.OrdinalIgnoreCase), $"message lacks '{f}': {mx.Message}");
        return mx;
    }

    /// <summary>Opening must either succeed or fail with a MatqException; anything else fails the test.</summary>
    public static bool OpensOrMatqThrows(Action open, string context)
    {
        try { open(); return true; }
        catch (MatqException e)
        {
            Assert.DoesNotContain('\n', e.Message);
            return false;
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"{context}: expected MatqException, got {e.GetType().Name}: {e}");
        }
    }
}

internal static class Bytes
{
    public static byte[] Of(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    public static float[] Seeded(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return v;
    }

    /// <summary>Header length prefix and header JSON text of a safetensors byte image.</summary>
    public static (long Length, string Json) Header(byte[] file)
    {
        long n = (long)BitConverter.ToUInt64(file, 0);
        return (n, System.Text.Encoding.UTF8.GetString(file, 8, (int)n));
    }

    /// <summary>Builds a safetensors image from a raw header text and data (no validation: for corrupt files).</summary>
    public static byte[] Raw(string headerJson, byte[] data, bool pad = true)
    {
        var h = System.Text.Encoding.UTF8.GetBytes(headerJson);
        if (pad) h = [.. h, .. Enumerable.Repeat((byte)' ', ((h.Length + 7) & ~7) - h.Length)];
        return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. data];
    }
}
