// Contract: the packed models of one .matq artifact, one per served precision (uniform r bits, or the per-layer plan),
// each built lazily once — sliced and packed from the artifact's master codes on first use, read through a memory-mapped
// view one tensor at a time (PackedLlamaModel.Load) — and kept in a bounded LRU
// cache: at most Capacity precisions are held; building another drops the least recently used (rebuilt if asked again;
// requests still running on it keep their reference). Each precision pools its sessions (KV caches) for reuse, so at most
// one session per concurrent request exists. Thread-safe; two requests for the same new precision build it once.
using Matq.Formats.Artifact;
using Matq.Runtime.Loading;
using Matq.Runtime.Plans;

namespace Matq.Runtime.Packed;

/// <summary>How the artifact is served: default bits (null = master), plan, head, and the sessions' threads/activations.</summary>
public sealed record PackedServingOptions
{
    /// <summary>Bits when a request names none and there is no plan; null = the master bits.</summary>
    public int? DefaultBits { get; init; }
    /// <summary>Per-layer bits served when a request names no bits (its default bits: DefaultBits or master).</summary>
    public BitPlan? Plan { get; init; }
    public int? HeadBits { get; init; }
    public int Threads { get; init; } = -1;
    public PackedActivations Activations { get; init; } = PackedActivations.Int8;
    /// <summary>Most precisions held at once (each holds r/8 of the int8 weights plus its head, fp32 norms and the
    /// embedding as stored).</summary>
    public int Capacity { get; init; } = 4;
    /// <summary>Longest prompt + completion served, in tokens; each session's KV cache is sized for it (fp32: 8 bytes ×
    /// layers × kv heads × head dim a token, 128 KiB for the Llama-3.1-8B shape). Null = the model's max_position_embeddings
    /// (131072 for Llama 3.1: a 16 GiB cache per session, allocated lazily by the OS but bounded by nothing).</summary>
    public int? ContextLength { get; init; }
}

/// <summary>One served precision: its packed model and a pool of sessions.</summary>
public sealed class PackedPrecision
{
    private readonly System.Collections.Concurrent.ConcurrentBag<PackedLlamaSession> _idle = new();
    private readonly int _threads;
    private readonly PackedActivations _activations;
    private readonly int? _context;

    internal PackedPrecision(string key, PackedLlamaModel model, int threads, PackedActivations activations, int? context = null)
    {
        Key = key; Model = model; _threads = threads; _activations = activations; _context = context;
    }

    /// <summary>"8", "2", or "plan".</summary>
    public string Key { get; }
    public PackedLlamaModel Model { get; }

    /// <summary>A session (reset before use by the generator); dispose the lease to return it to the pool.</summary>
    public SessionLease Rent() => new(this, _idle.TryTake(out var s) ? s : new PackedLlamaSession(Model, _context, threads: _threads, activations: _activations));

    public sealed class SessionLease(PackedPrecision owner, PackedLlamaSession session) : IDisposable
    {
        private bool _returned;
        public PackedLlamaSession Session { get; } = session;

        public void Dispose()
        {
            if (_returned) return;
            _returned = true;
            owner._idle.Add(Session);
        }
    }
}

public sealed class PackedPrecisionCache
{
    public const string PlanKey = "plan";

    private readonly object _gate = new();
    private readonly Dictionary<string, (Lazy<PackedPrecision> Value, long Used)> _entries = new(StringComparer.Ordinal);
    private long _clock;

    public string ArtifactPath { get; }
    public PackedServingOptions Options { get; }
    public MatqMetadata Metadata { get; }
    public int MasterBits => Metadata.MasterBits;
    /// <summary>Bits of the default precision (the plan's default when there is a plan).</summary>
    public int DefaultBits { get; }
    /// <summary>The default precision, built when the cache is made (so a bad artifact fails at start).</summary>
    public PackedPrecision Default { get; }

    /// <summary>Opens <paramref name="artifactPath"/> and builds the default precision.</summary>
    public PackedPrecisionCache(string artifactPath, PackedServingOptions? options = null)
    {
        options ??= new PackedServingOptions();
        if (options.Capacity < 1) throw new MatqException($"--max-precisions {options.Capacity} is out of range: keep at least 1 precision");
        ArtifactPath = artifactPath;
        Options = options;
        if (!File.Exists(artifactPath)) throw new MatqException($"--model {artifactPath} does not exist (the packed runtime serves .matq artifacts)");
        using var artifact = MappedMatqArtifact.Open(artifactPath);
        Metadata = artifact.Metadata;
        DefaultBits = options.DefaultBits ?? Metadata.MasterBits;
        ArtifactSource.CheckBits(DefaultBits, MasterBits, "--bits");
        string key = DefaultKey;
        var built = Build(artifact, key);
        _entries[key] = (new Lazy<PackedPrecision>(() => built), ++_clock);
        _ = _entries[key].Value.Value;
        Default = built;
    }

    private string DefaultKey => Options.Plan is null ? DefaultBits.ToString() : PlanKey;

    /// <summary>Keys of the precisions held now, most recently used first.</summary>
    public IReadOnlyList<string> CachedKeys
    {
        get
        {
            lock (_gate)
                return _entries.Where(e => e.Value.Value.IsValueCreated).OrderByDescending(e => e.Value.Used).Select(e => e.Key).ToList();
        }
    }

    /// <summary>
    /// The precision for <paramref name="bits"/> (null = the default: the plan, or DefaultBits), built on first use.
    /// Bits outside 1..master throw a MatqException naming the range.
    /// </summary>
    public PackedPrecision Get(int? bits)
    {
        if (bits is int b) ArtifactSource.CheckBits(b, MasterBits, "bits");
        string key = bits is int r ? r.ToString() : DefaultKey;
        Lazy<PackedPrecision> lazy;
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var e)) lazy = e.Value;
            else
            {
                while (_entries.Count >= Options.Capacity)
                    _entries.Remove(_entries.MinBy(x => x.Value.Used).Key);
                lazy = new Lazy<PackedPrecision>(() =>
                {
                    using var mapped = MappedMatqArtifact.Open(ArtifactPath);
                    return Build(mapped, key);
                }, LazyThreadSafetyMode.ExecutionAndPublication);
            }
            _entries[key] = (lazy, ++_clock);
        }
        try
        {
            return lazy.Value;
        }
        catch
        {
            lock (_gate)
                if (_entries.TryGetValue(key, out var e) && ReferenceEquals(e.Value, lazy)) _entries.Remove(key);   // retry on the next request
            throw;
        }
    }

    private PackedPrecision Build(MappedMatqArtifact artifact, string key)
    {
        bool plan = key == PlanKey;
        var model = PackedLlamaModel.Load(artifact, new PackedModelOptions
        {
            Bits = plan ? DefaultBits : int.Parse(key),
            Plan = plan ? Options.Plan : null,
            HeadBits = Options.HeadBits,
        });
        return new PackedPrecision(key, model, Options.Threads, Options.Activations, Options.ContextLength);
    }
}
