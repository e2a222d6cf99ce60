// `matq bench generate`: prefill and decode tokens/s of the packed CPU runtime (Matq.Runtime.Packed) on one .matq served at
// each of --bits, with the resident weight bytes (decoder layers, head, fp32 embedding/norms), the KV cache and the process
// RSS, and ratios vs the int8 row (or the first row), all measured in this run. Prompt: --prompt-tokens seeded random ids
// (speed does not depend on content), prefilled in chunks of 32; then --decode-tokens greedy steps. Each figure is the
// median of --repeats runs after one warm-up run; RSS is read after a full compacting GC.
using System.CommandLine;
using System.Diagnostics;
using Matq.Cli.Common;
using Matq.Runtime.Packed;
using Spectre.Console;

namespace Matq.Cli.Verbs;

public sealed class BenchGenerateVerb(IAnsiConsole console) : Verb(console)
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _bits = CommonOptions.Bits("8,4,3,2");
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = PackedOptions.Head();
    private readonly Option<int> _promptTokens = new("--prompt-tokens") { Description = "Prompt length (prefill)", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<int> _decodeTokens = new("--decode-tokens") { Description = "Tokens decoded one by one after the prompt", DefaultValueFactory = _ => 64, HelpName = "N" };
    private readonly Option<int> _repeats = new("--repeats") { Description = "Timed runs per bit-width (the median is reported)", DefaultValueFactory = _ => 3, HelpName = "N" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    public override string Name => "generate";
    public override string Description => "Prefill and decode tokens/s, resident memory and ratios vs int8 of the packed CPU runtime at each served bit-width";
    public override IReadOnlyList<string> Examples =>
    [
        "matq bench generate --model out/small8.matq --bits 8,4,3,2 --threads 1",
        "matq bench generate --model out/small8.matq --threads 16 --prompt-tokens 256 --decode-tokens 128 --head fp32",
    ];

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { _model, _bits, _threads, _head, _promptTokens, _decodeTokens, _repeats, _seed }) command.Options.Add(o);
    }

    protected override int Execute(ParseResult result)
    {
        var path = result.GetValue(_model)!;
        var bitsList = CommonOptions.ParseBits(result.GetValue(_bits)!);
        int threads = PackedOptions.CheckThreads(result.GetValue(_threads));
        int? head = PackedOptions.ParseHead(result.GetValue(_head)!);
        int prompt = result.GetValue(_promptTokens), decode = result.GetValue(_decodeTokens), repeats = result.GetValue(_repeats);
        if (prompt < 1) throw new MatqException($"--prompt-tokens {prompt} must be at least 1");
        if (decode < 1) throw new MatqException($"--decode-tokens {decode} must be at least 1");
        if (repeats < 1) throw new MatqException($"--repeats {repeats} must be at least 1");
        if (!File.Exists(path)) throw new MatqException($"--model {path} does not exist (give a .matq artifact)");

        Console.MarkupLine(Markup.Escape($"{Environment.ProcessorCount} logical cores, threads: {(threads < 0 ? "all" : threads)}, AVX2 path: {Matq.Kernels.Simd.GemvPackedSimd.Avx2Path}, " +
                                         $"load average {LoadAverage()}; prompt {prompt} tokens, decode {decode} tokens, median of {repeats}"));
        var rows = new List<Row>();
        foreach (int bits in bitsList)
        {
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, HeadBits = head });
            int context = prompt + decode;
            if (context > model.MaxPositions)
                throw new MatqException($"--prompt-tokens + --decode-tokens = {context} exceeds the model's context of {model.MaxPositions} tokens");
            var session = new PackedLlamaSession(model, context, threads);
            var rng = new Random(result.GetValue(_seed));
            var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
            ReleaseMemory();   // the artifact's master codes and float tables are garbage once packed
            Measure(session, ids, decode);   // warm-up run: JIT tiers, pools, page faults
            var runs = Enumerable.Range(0, repeats).Select(_ => Measure(session, ids, decode)).ToList();
            double pre = Median(runs.Select(r => r.Prefill)), dec = Median(runs.Select(r => r.Decode));
            rows.Add(new Row(bits, model.LayerWeightBytes, model.HeadBytes, model.OtherBytes, model.ResidentWeightBytes, session.CacheBytes,
                Environment.WorkingSet, prompt / pre, decode / dec, model.Head.Packed is null ? "fp32" : $"int{model.Head.Bits}"));
            model = null;
            session = null;
            ReleaseMemory();
        }

        var baseRow = rows.FirstOrDefault(r => r.Bits == 8) ?? rows[0];
        var table = new Table().AddColumns("bits", "layer weights", "head", "embed+norms", "resident weights", "KV cache", "process RSS",
            "prefill tok/s", "decode tok/s", $"prefill × int{baseRow.Bits}", $"decode × int{baseRow.Bits}", $"layer bytes ÷ int{baseRow.Bits}");
        foreach (var r in rows)
            table.AddRow($"{r.Bits}", Format.Bytes(r.LayerBytes), $"{Format.Bytes(r.HeadBytes)} ({r.Head})", Format.Bytes(r.OtherBytes), Format.Bytes(r.Resident),
                Format.Bytes(r.Cache), Format.Bytes(r.Rss), $"{r.Prefill:F1}", $"{r.Decode:F1}", $"{r.Prefill / baseRow.Prefill:F2}", $"{r.Decode / baseRow.Decode:F2}",
                $"{(double)r.LayerBytes / baseRow.LayerBytes:F2}");
        Console.Write(table);
        Console.MarkupLine(Markup.Escape($"load average after: {LoadAverage()}. Resident weights = layer weights (packed codes + fp32 scales/biases) + head + fp32 embedding and norms; " +
                                         "process RSS is read after each row's runs (the GC may keep memory of earlier rows). Ratios are within this run."));
        return 0;
    }

    private sealed record Row(int Bits, long LayerBytes, long HeadBytes, long OtherBytes, long Resident, long Cache, long Rss, double Prefill, double Decode, string Head);

    /// <summary>Seconds for the prompt's prefill and for <paramref name="decode"/> greedy single-token steps.</summary>
    private static (double Prefill, double Decode) Measure(PackedLlamaSession session, int[] prompt, int decode)
    {
        session.Reset();
        long t0 = Stopwatch.GetTimestamp();
        var logits = session.Forward(prompt);
        double prefill = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < decode; i++)
            logits = session.Forward([Matq.Runtime.Generation.TokenSampler.ArgMax(logits)]);
        return (prefill, Stopwatch.GetElapsedTime(t0).TotalSeconds);
    }

    private static void ReleaseMemory() => GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }
}
