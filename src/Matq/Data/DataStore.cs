// The entry point for datasets: fetch into the cache once, then load from it.
// Ensure fetches on first use; Fetch refetches on request; nothing here writes to the console.
namespace Matq.Data;

public sealed class DataStore
{
    public DataStore(DataCache cache, DataOptions? options = null)
    {
        Cache = cache;
        Options = options ?? new DataOptions();
    }

    /// <summary>A store over <paramref name="root"/>, or the default cache root (MATQ_DATA, XDG, ~/.cache/matq).</summary>
    public DataStore(string? root = null, DataOptions? options = null)
        : this(root is null ? DataCache.CreateDefault() : new DataCache(root), options) { }

    public DataCache Cache { get; }
    public DataOptions Options { get; }

    /// <summary>The dataset folder of <paramref name="name"/>, fetching it first when it is not cached at its pinned version.</summary>
    public string Ensure(string name, string? from = null)
    {
        var fetcher = DatasetRegistry.Get(name);
        return Cache.IsCached(fetcher.Name, fetcher.Version) ? Cache.DatasetPath(fetcher.Name) : Install(fetcher, from);
    }

    /// <summary>Throws the one-line error for a --from folder that does not exist (null: fetch online).</summary>
    public static void CheckFrom(string? from)
    {
        if (from is not null && !Directory.Exists(from))
            throw new MatqException($"--from folder {from} does not exist: pass a folder holding the downloaded files");
    }

    /// <summary>Fetches one dataset or "all"; cached ones are kept unless <paramref name="force"/>. Returns their folders.</summary>
    public IReadOnlyList<string> Fetch(string nameOrAll, string? from = null, bool force = false)
    {
        CheckFrom(from);
        var dirs = new List<string>();
        foreach (var f in DatasetRegistry.Resolve(nameOrAll))
        {
            if (!force && Cache.IsCached(f.Name, f.Version))
            {
                Options.Progress?.Report($"{f.Name}: already cached at {Cache.DatasetPath(f.Name)}");
                dirs.Add(Cache.DatasetPath(f.Name));
            }
            else dirs.Add(Install(f, from));
        }
        return dirs;
    }

    /// <summary>Every registered dataset, cached or not, in registry order.</summary>
    public IReadOnlyList<DatasetStatus> Status() =>
        DatasetRegistry.All.Select(f =>
        {
            var s = Cache.Describe(f.Name, f.Description);
            // A copy at another version counts as absent, since Ensure would refetch it.
            return s.Cached && s.Version != f.Version ? s with { Cached = false } : s;
        }).ToArray();

    public SotuCorpus Sotu() => SotuCorpus.Load(Path.Combine(Ensure("sotu"), SotuFetcher.FileName));

    /// <summary>The full Moby-Dick text (see <see cref="MobyDickFetcher"/> for what is kept).</summary>
    public string MobyDick() => MobyDickFetcher.Load(Path.Combine(Ensure("moby-dick"), MobyDickFetcher.FileName));

    public FashionMnist FashionMnist() => Data.FashionMnist.Load(Ensure("fashion-mnist"));

    public Gpt2TokenizerFiles Gpt2Tokenizer() => Gpt2TokenizerFetcher.Locate(Ensure("gpt2-tokenizer"));

    string Install(DatasetFetcher fetcher, string? from)
    {
        Options.Progress?.Report($"{fetcher.Name}: fetching {fetcher.Source}" + (from is null ? "" : $" from {from}"));
        var dir = Cache.Install(fetcher.Name, fetcher.Version, from is null ? fetcher.Source : $"{fetcher.Source} (from {Path.GetFullPath(from)})",
            (outDir, workDir) => fetcher.Fetch(new FetchContext(outDir, workDir, from, Options)));
        Options.Progress?.Report($"{fetcher.Name}: cached at {dir}");
        return dir;
    }
}
