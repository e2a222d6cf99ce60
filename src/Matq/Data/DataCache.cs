// The on-disk dataset cache: one folder per dataset under a root, each holding a manifest.json written last.
// A dataset folder only ever appears by an atomic rename of a finished staging folder, so a present folder is complete.
using System.Text.Json;

namespace Matq.Data;

/// <summary>What the cache holds for one dataset; the CLI shows these as a table.</summary>
public sealed record DatasetStatus(
    string Name, string Description, bool Cached, string Path, long SizeBytes,
    IReadOnlyList<string> Files, string? Version, string? Source);

/// <summary>
/// Layout: ROOT/NAME/{manifest.json, normalized files}; ROOT/.staging/NAME-GUID/{out,work} while fetching.
/// Staging lives under ROOT so the final Directory.Move is a same-filesystem rename.
/// </summary>
public sealed class DataCache
{
    public const string ManifestFile = "manifest.json";
    const string StagingFolder = ".staging";

    // Staging folders older than this belong to a killed process, not to a fetch still running.
    static readonly TimeSpan StaleStaging = TimeSpan.FromHours(24);

    public DataCache(string root)
    {
        if (string.IsNullOrWhiteSpace(root))
            throw new MatqException("the data cache root is empty: set MATQ_DATA to a writable folder");
        Root = Path.GetFullPath(root);
    }

    public string Root { get; }

    /// <summary>MATQ_DATA if set, else $XDG_CACHE_HOME/matq, else ~/.cache/matq.</summary>
    public static string DefaultRoot() =>
        ResolveRoot(Environment.GetEnvironmentVariable("MATQ_DATA"), Environment.GetEnvironmentVariable("XDG_CACHE_HOME"),
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>The root rule of <see cref="DefaultRoot"/> on explicit values (empty counts as unset).</summary>
    public static string ResolveRoot(string? matqData, string? xdgCacheHome, string? home)
    {
        if (!string.IsNullOrWhiteSpace(matqData)) return Path.GetFullPath(matqData);
        if (!string.IsNullOrWhiteSpace(xdgCacheHome)) return Path.Combine(Path.GetFullPath(xdgCacheHome), "matq");
        if (string.IsNullOrWhiteSpace(home))
            throw new MatqException("no home folder to hold the data cache: set MATQ_DATA to a writable folder");
        return Path.Combine(home, ".cache", "matq");
    }

    public static DataCache CreateDefault() => new(DefaultRoot());

    public string DatasetPath(string name) => Path.Combine(Root, name);

    /// <summary>True when NAME is present at exactly VERSION with every file its manifest lists.</summary>
    public bool IsCached(string name, string version)
    {
        var m = ReadManifest(name);
        return m is not null && m.Version == version
            && m.Files.All(f => File.Exists(Path.Combine(DatasetPath(name), f)));
    }

    /// <summary>
    /// Builds NAME in a fresh staging folder via <paramref name="fill"/>(outDir, workDir), writes the manifest,
    /// then renames outDir to ROOT/NAME (replacing an older copy). Any exception leaves ROOT/NAME as it was.
    /// </summary>
    public string Install(string name, string version, string source, Action<string, string> fill)
    {
        var stagingRoot = Path.Combine(Root, StagingFolder);
        try { Directory.CreateDirectory(stagingRoot); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MatqException($"cannot create the data cache at {Root} ({e.Message}): set MATQ_DATA to a writable folder", e);
        }
        RemoveStaleStaging(stagingRoot);

        var staging = Path.Combine(stagingRoot, $"{name}-{Guid.NewGuid():N}");
        var outDir = Path.Combine(staging, "out");
        var workDir = Path.Combine(staging, "work");
        Directory.CreateDirectory(outDir);
        Directory.CreateDirectory(workDir);
        try
        {
            fill(outDir, workDir);
            var files = ListFiles(outDir);
            WriteManifest(Path.Combine(outDir, ManifestFile), name, version, source, files);

            var target = DatasetPath(name);
            if (Directory.Exists(target))
            {
                // Move the old copy aside first: the swap window is two renames, never a half-deleted folder.
                Directory.Move(target, Path.Combine(staging, "old"));
            }
            Directory.Move(outDir, target);
            return target;
        }
        finally
        {
            TryDelete(staging);
        }
    }

    /// <summary>Removes NAME from the cache; absent is fine.</summary>
    public void Remove(string name)
    {
        var target = DatasetPath(name);
        if (!Directory.Exists(target)) return;
        var stagingRoot = Path.Combine(Root, StagingFolder);
        Directory.CreateDirectory(stagingRoot);
        var doomed = Path.Combine(stagingRoot, $"{name}-removed-{Guid.NewGuid():N}");
        Directory.Move(target, doomed);
        TryDelete(doomed);
    }

    public DatasetStatus Describe(string name, string description)
    {
        var path = DatasetPath(name);
        var m = ReadManifest(name);
        if (m is null) return new DatasetStatus(name, description, false, path, 0, [], null, null);
        long size = 0;
        foreach (var f in m.Files)
        {
            var full = Path.Combine(path, f);
            if (File.Exists(full)) size += new FileInfo(full).Length;
        }
        return new DatasetStatus(name, description, true, path, size, m.Files, m.Version, m.Source);
    }

    internal sealed record Manifest(string Name, string Version, string Source, IReadOnlyList<string> Files);

    internal Manifest? ReadManifest(string name)
    {
        var file = Path.Combine(DatasetPath(name), ManifestFile);
        if (!File.Exists(file)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var r = doc.RootElement;
            var files = r.GetProperty("files").EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
            return new Manifest(
                r.GetProperty("name").GetString() ?? "", r.GetProperty("version").GetString() ?? "",
                r.GetProperty("source").GetString() ?? "", files);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return null; // an unreadable manifest means "not cached": the next fetch replaces the folder
        }
    }

    static void WriteManifest(string file, string name, string version, string source, IReadOnlyList<string> files)
    {
        using var stream = File.Create(file);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("version", version);
        w.WriteString("source", source);
        w.WriteString("fetched", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ"));
        w.WriteStartArray("files");
        foreach (var f in files) w.WriteStringValue(f);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    // Relative paths with '/' so manifests read the same on every OS.
    static IReadOnlyList<string> ListFiles(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(dir, f).Replace('\\', '/'))
            .Where(f => f != ManifestFile)
            .Order(StringComparer.Ordinal)
            .ToArray();

    static void RemoveStaleStaging(string stagingRoot)
    {
        foreach (var d in Directory.EnumerateDirectories(stagingRoot))
            if (DateTime.UtcNow - Directory.GetLastWriteTimeUtc(d) > StaleStaging) TryDelete(d);
    }

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* left for the stale sweep */ }
    }
}
