// `matq bench generate`: prefill and decode tokens/s of the packed CPU runtime (Matq.Runtime.Packed) on one .matq served at
// each of --bits, with the resident weight bytes (decoder layers, head, fp32 embedding/norms), the KV cache and the process
// RSS, and ratios vs the int8 row (or the first row) of the same head and activations, all measured in this run, for each --head (a list times several) and --activations mode (int8: decode GEMVs on int8 activations; fp32). Prompt: --prompt-tokens seeded random ids
// (speed does not depend on content), prefilled in chunks of 32; then --decode-tokens greedy steps. Each figure is the
// median of --repeats interleaved rounds (every configuration once per round, order rotating) after ≥ 1 s of warm-up
// rounds; RSS is read
// per bit-width with only that model loaded, after a full compacting GC.
using System.Diagnostics;

namespace Matq.Cli.Verbs;

public sealed class BenchGenerateVerb(IAnsiConsole console) : Verb<BenchGenerateSettings>(console, "generate",
    "Prefill and decode tokens/s, resident memory and ratios vs int8 of the packed CPU runtime at each served bit-width",
    "matq bench generate --model out/small8.matq --bits 8,4,3,2 --threads 1",
    "matq bench generate --model out/small8.matq --threads 16 --prompt-tokens 256 --decode-tokens 128 --head fp32 --activations fp32")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _bits = CommonOptions.Bits("8,4,3,2");
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = PackedOptions.Head("Packed runtime head: quantize an fp32 lm_head at load to B bits (RTN, groups of 128), or fp32; a comma list times each (e.g. 8,4)");
    private readonly Option<string> _activations = PackedOptions.Activations("int8,fp32");
    private readonly Option<int> _promptTokens = new("--prompt-tokens") { Description = "Prompt length (prefill)", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<int> _decodeTokens = new("--decode-tokens") { Description = "Tokens decoded one by one after the prompt", DefaultValueFactory = _ => 64, HelpName = "N" };
    private readonly Option<int> _repeats = new("--repeats") { Description = "Timed runs per bit-width (the median is reported)", DefaultValueFactory = _ => 3, HelpName = "N" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options => [_model, _bits, _threads, _head, _activations, _promptTokens, _decodeTokens, _repeats, _seed];

    protected override BenchGenerateSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_bits)!, r.GetValue(_threads), r.GetValue(_head)!,
        r.GetValue(_activations)!, r.GetValue(_promptTokens), r.GetValue(_decodeTokens), r.GetValue(_repeats), r.GetValue(_seed));

    protected override int Run(BenchGenerateSettings s)
    {
        var path = s.Model;
        var (bitsList, heads, actsList) = (s.BitsList, s.HeadList, s.ActivationList);
        int threads = s.Threads;
        int prompt = s.PromptTokens, decode = s.DecodeTokens, repeats = s.Repeats;

        Console.MarkupLine(Markup.Escape($"{Environment.ProcessorCount} logical cores, threads: {(threads < 0 ? "all" : threads)}, AVX2 path: {Matq.Kernels.Simd.GemvPackedSimd.Avx2Path}, " +
                                         $"load average {BenchStats.LoadAverage()}; prompt {prompt} tokens, decode {decode} tokens, median of {repeats}"));
        // Phase 1, one model at a time: the process RSS with only that model resident (after a compacting GC).
        var rss = new Dictionary<(int, int?), long>();
        foreach (int bits in bitsList)
        foreach (var head in heads)
        {
            var probe = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, HeadBits = head });
            ReleaseMemory();   // the artifact's master codes and float tables are garbage once packed
            rss[(bits, head)] = Environment.WorkingSet;
            GC.KeepAlive(probe);
            probe = null;
            ReleaseMemory();
        }
        // Phase 2: every (bits, activations) session side by side, timed in interleaved rounds so that load changes on a
        // shared machine hit all rows alike (the order rotates per round); warm-up rounds (JIT tiers, page faults) for at
        // least a second, then the median of --repeats.
        var configs = new List<(int Bits, int? Head, PackedActivations Acts, PackedLlamaModel Model, PackedLlamaSession Session)>();
        int context = prompt + decode;
        foreach (int bits in bitsList)
        foreach (var head in heads)
        {
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, HeadBits = head });
            if (context > model.MaxPositions)
                throw new MatqException($"--prompt-tokens + --decode-tokens = {context} exceeds the model's context of {model.MaxPositions} tokens");
            foreach (var acts in actsList) configs.Add((bits, head, acts, model, new PackedLlamaSession(model, context, threads, acts)));
        }
        ReleaseMemory();
        var rng = new Random(s.Seed);
        var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(configs[0].Model.Config.VocabSize)).ToArray();
        var times = configs.Select(_ => new List<(double Prefill, double Decode)>()).ToArray();
        // warm-up: at least two rounds and one second, so that tiered JIT has replaced every hot method before timing
        var warm = Stopwatch.StartNew();
        for (int round = 0; round < 2 || warm.Elapsed.TotalSeconds < 1; round++)
            foreach (var c in configs) Measure(c.Session, ids, decode);
        for (int round = 0; round < repeats; round++)
            for (int i = 0; i < configs.Count; i++)
            {
                int c = (i + round) % configs.Count;   // rotate the order so no configuration always runs first
                times[c].Add(Measure(configs[c].Session, ids, decode));
            }
        var rows = new List<Row>();
        for (int c = 0; c < configs.Count; c++)
        {
            var (bits, head, acts, model, session) = configs[c];
            double pre = BenchStats.Median(times[c].Select(r => r.Prefill)), dec = BenchStats.Median(times[c].Select(r => r.Decode));
            rows.Add(new Row(bits, PackedOptions.Name(acts), model.LayerWeightBytes, model.HeadBytes, model.OtherBytes, model.ResidentWeightBytes,
                session.CacheBytes, rss[(bits, head)], prompt / pre, decode / dec, model.Head.Packed is null ? "fp32" : $"int{model.Head.Bits}"));
        }

        Row Base(Row r) => rows.FirstOrDefault(b => b.Bits == 8 && b.Activations == r.Activations && b.Head == r.Head)
                           ?? rows.First(b => b.Activations == r.Activations && b.Head == r.Head);
        int baseBits = rows.Any(r => r.Bits == 8) ? 8 : rows[0].Bits;
        var table = new Table().AddColumns("bits", "activations", "layer weights", "head", "embed+norms", "resident weights", "KV cache", "process RSS",
            "prefill tok/s", "decode tok/s", $"prefill × int{baseBits}", $"decode × int{baseBits}", $"layer bytes ÷ int{baseBits}");
        foreach (var r in rows.OrderBy(r => r.Activations).ThenBy(r => r.Head).ThenByDescending(r => r.Bits))
        {
            var baseRow = Base(r);
            table.AddRow($"{r.Bits}", r.Activations, Format.Bytes(r.LayerBytes), $"{Format.Bytes(r.HeadBytes)} ({r.Head})", Format.Bytes(r.OtherBytes), Format.Bytes(r.Resident),
                Format.Bytes(r.Cache), Format.Bytes(r.Rss), $"{r.Prefill:F1}", $"{r.Decode:F1}", $"{r.Prefill / baseRow.Prefill:F2}", $"{r.Decode / baseRow.Decode:F2}",
                $"{(double)r.LayerBytes / baseRow.LayerBytes:F2}");
        }
        Console.Write(table);
        Console.MarkupLine(Markup.Escape($"load average after: {BenchStats.LoadAverage()}. Resident weights = layer weights (packed codes + fp16 group scales, + an fp16 zero per group when the zeros differ) + head + fp32 embedding and norms; " +
                                         "process RSS = the whole process with only that bit-width's model loaded (runtime, JIT and GC heaps included). Timed in interleaved rounds; ratios are within this run."));
        return 0;
    }

    private sealed record Row(int Bits, string Activations, long LayerBytes, long HeadBytes, long OtherBytes, long Resident, long Cache, long Rss, double Prefill, double Decode, string Head);

    /// <summary>Seconds for the prompt's prefill and for <paramref name="decode"/> greedy single-token steps (also
    /// matq's side of `bench race`).</summary>
    internal static (double Prefill, double Decode) Measure(PackedLlamaSession session, int[] prompt, int decode)
    {
        session.Reset();
        var logits = new float[session.Model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        session.Forward(prompt, logits);
        double prefill = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < decode; i++)
            session.Forward([Matq.Runtime.Generation.TokenSampler.ArgMax(logits)], logits);
        return (prefill, Stopwatch.GetElapsedTime(t0).TotalSeconds);
    }

    private static void ReleaseMemory() => GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
}

/// <summary>What `bench generate` was asked: the option values as typed; <see cref="Validate"/> checks --bits, --threads, --head,
/// --activations, the run lengths and --model (one line per mistake) before any load.</summary>
public sealed record BenchGenerateSettings(string Model, string Bits, int Threads, string Head, string Activations, int PromptTokens, int DecodeTokens,
    int Repeats, int Seed) : IVerbSettings
{
    public int[] BitsList => CommonOptions.ParseBits(Bits);

    /// <summary>The heads to time, each as bits or null (fp32).</summary>
    public int?[] HeadList
    {
        get
        {
            var heads = Head.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(PackedOptions.ParseHead).Distinct().ToArray();
            if (heads.Length == 0) throw new MatqException("--head is empty: give bits 1..8 or fp32, or a comma list (8,4)");
            return heads;
        }
    }

    public PackedActivations[] ActivationList => PackedOptions.ParseActivations(Activations);

    public void Validate()
    {
        _ = BitsList;
        PackedOptions.CheckThreads(Threads);
        _ = HeadList;
        _ = ActivationList;
        BenchStats.CheckRun(PromptTokens, DecodeTokens, Repeats);
        if (!File.Exists(Model)) throw new MatqException($"--model {Model} does not exist (give a .matq artifact)");
    }
}
