// `matq bench serve`: what batched decode buys a server. For each --requests N, N sequences (seeded random prompts of
// --prompt-tokens, then --decode-tokens greedy tokens each) are generated at once on one packed precision, two ways, in
// interleaved rounds (order alternating), medians of --repeats:
//   unbatched: N concurrent generations, each on its own session (PackedTextGenerator), as `serve --batch 1` runs them;
//   batched:   the same N through one BatchedDecoder (continuous batching, `serve --batch N`): one pass over the weights
//              per step for every sequence in flight.
// Reported, all measured in this run: completion tokens/s end to end (N × decode tokens ÷ the round's wall time, prompts'
// prefill included: what a client population sees), its batched ÷ unbatched ratio, the round walls, and for the batched
// side the mean rows per weight pass and the decode rate inside the batched steps alone (rows ÷ seconds in DecodeBatch).
using System.Diagnostics;
using Matq.Runtime.Generation;
using Matq.Runtime.Serving;

namespace Matq.Cli.Verbs;

public sealed class BenchServeVerb(IAnsiConsole console) : Verb<BenchServeSettings>(console, "serve",
    "Aggregate decode tokens/s of N concurrent sequences, batched (one weight pass per step) vs each on its own session",
    "matq bench serve --model out/small8.matq --bits 4 --requests 1,2,4,8 --threads 2")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<int> _bits = new("--bits") { Description = "Served bits R (1..master)", DefaultValueFactory = _ => 4, HelpName = "R" };
    private readonly Option<string> _requests = new("--requests") { Description = "Concurrent sequences, comma-separated (each 1..32)", DefaultValueFactory = _ => "1,2,4,8", HelpName = "N[,N...]" };
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _activations = PackedOptions.Activations("int8");
    private readonly Option<int> _promptTokens = new("--prompt-tokens") { Description = "Prompt length of each sequence", DefaultValueFactory = _ => 32, HelpName = "N" };
    private readonly Option<int> _decodeTokens = new("--decode-tokens") { Description = "Tokens decoded per sequence", DefaultValueFactory = _ => 32, HelpName = "N" };
    private readonly Option<int> _repeats = new("--repeats") { Description = "Timed rounds (the median is reported)", DefaultValueFactory = _ => 3, HelpName = "N" };
    private readonly Option<string?> _out = new("--out") { Description = "Also write the table as markdown to this file", HelpName = "FILE.md" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options => [_model, _bits, _requests, _threads, _activations, _promptTokens, _decodeTokens, _repeats, _out, _seed];

    protected override BenchServeSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_bits), r.GetValue(_requests)!, r.GetValue(_threads),
        r.GetValue(_activations)!, r.GetValue(_promptTokens), r.GetValue(_decodeTokens), r.GetValue(_repeats), r.GetValue(_out), r.GetValue(_seed));

    protected override int Run(BenchServeSettings s)
    {
        var counts = s.RequestList;
        var (threads, _, activations) = PackedOptions.Resolve(s.Threads, "8", s.Activations, "bench serve");
        var cache = new PackedPrecisionCache(s.Model, new PackedServingOptions { DefaultBits = s.Bits, HeadBits = 8, Threads = threads, Activations = activations });
        var precision = cache.Default;
        int vocab = precision.Model.Config.VocabSize, context = s.PromptTokens + s.DecodeTokens;
        Console.MarkupLine(Markup.Escape($"{Environment.ProcessorCount} logical cores, threads {(threads < 0 ? "all" : threads)}, {activations} activations, " +
            $"{s.Bits}-bit layers, 8-bit head; prompt {s.PromptTokens}, decode {s.DecodeTokens} greedy tokens per sequence; median of {s.Repeats} interleaved rounds; load average {BenchStats.LoadAverage()}"));
        var rng = new Random(s.Seed);
        var options = new GenerationOptions { MaxNewTokens = s.DecodeTokens, ContextLength = context, Sampling = new SamplingOptions { Temperature = 0 } };
        var table = new Table().AddColumns("sequences", "unbatched tok/s", "batched tok/s", "batched ÷ unbatched", "round wall s (unbatched / batched)", "rows per weight pass", "batched steps alone tok/s");
        var md = new List<string> { "| sequences | unbatched tok/s | batched tok/s | batched ÷ unbatched | round wall s (unbatched / batched) | rows per weight pass | batched steps alone tok/s |", "|---:|---:|---:|---:|---|---:|---:|" };
        foreach (int n in counts)
        {
            var prompts = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, s.PromptTokens).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
            var decoder = new BatchedDecoder(precision, Math.Min(n, Matq.Runtime.Packed.PackedLlamaSession.MaxBatch));
            var un = new List<(double Tps, double Wall)>();
            var ba = new List<(double Tps, double Wall)>();
            Round(false, prompts, decoder, options);   // warm-up: sessions, JIT, page faults
            Round(true, prompts, decoder, options);
            long steps0 = decoder.Steps, rows0 = decoder.Rows;
            double stepS0 = decoder.StepSeconds;
            for (int r = 0; r < s.Repeats; r++)
            {
                bool batchedFirst = r % 2 == 1;
                (batchedFirst ? ba : un).Add(Round(batchedFirst, prompts, decoder, options));
                (batchedFirst ? un : ba).Add(Round(!batchedFirst, prompts, decoder, options));
            }
            double rowsPerPass = decoder.Steps > steps0 ? (double)(decoder.Rows - rows0) / (decoder.Steps - steps0) : 0;
            double stepRate = (decoder.Rows - rows0) / Math.Max(decoder.StepSeconds - stepS0, 1e-9);
            double u = Median(un.Select(x => x.Tps)), b = Median(ba.Select(x => x.Tps));
            string wall = $"{Median(un.Select(x => x.Wall)):F2} / {Median(ba.Select(x => x.Wall)):F2}";
            Console.MarkupLine(Markup.Escape($"  {n} sequences: unbatched {u:F1} tok/s, batched {b:F1} tok/s ({b / u:F2}×), {rowsPerPass:F2} rows per pass, steps alone {stepRate:F1} tok/s"));
            table.AddRow($"{n}", $"{u:F1}", $"{b:F1}", $"{b / u:F2}", wall, $"{rowsPerPass:F2}", $"{stepRate:F1}");
            md.Add($"| {n} | {u:F1} | {b:F1} | {b / u:F2} | {wall} | {rowsPerPass:F2} | {stepRate:F1} |");
        }
        Console.Write(table);
        if (s.Out is { } outPath) AtomicFile.WriteAllText(outPath, string.Join('\n', md) + '\n');
        return 0;
    }

    // One round: every sequence generated; completion tokens/s = N × generated tokens ÷ the round's wall time.
    private static (double Tps, double Wall) Round(bool batched, int[][] prompts, BatchedDecoder decoder, GenerationOptions options)
    {
        var clock = Stopwatch.StartNew();
        static bool OnToken(int _) => true;
        Task<Matq.Runtime.Packed.PackedGenerationStats>[] tasks = batched
            ? decoder.SubmitAll(prompts, options, OnToken)   // queued together: all N start in the same step
            : prompts.Select(p => Task.Factory.StartNew(() =>
            {
                using var lease = decoder.Precision.Rent();
                return Matq.Runtime.Packed.PackedTextGenerator.GenerateWhile(lease.Session, p, options, OnToken).Stats;
            }, TaskCreationOptions.LongRunning)).ToArray();
        var stats = Task.WhenAll(tasks).GetAwaiter().GetResult();
        double wall = clock.Elapsed.TotalSeconds;
        int generated = stats.Sum(x => x.DecodedTokens + 1);   // the first token of each comes from its prefill
        return (generated / wall, wall);
    }

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? double.NaN : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}

/// <summary>What `bench serve` was asked; <see cref="Validate"/> checks --model, --requests, --bits and the counts.</summary>
public sealed record BenchServeSettings(string Model, int Bits, string Requests, int Threads, string Activations, int PromptTokens, int DecodeTokens,
    int Repeats, string? Out, int Seed) : IVerbSettings
{
    public int[] RequestList
    {
        get
        {
            var list = new List<int>();
            foreach (var part in Requests.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, out int n) || n < 1 || n > Matq.Runtime.Packed.PackedLlamaSession.MaxBatch)
                    throw new MatqException($"--requests '{part}' is not a count of concurrent sequences 1..{Matq.Runtime.Packed.PackedLlamaSession.MaxBatch}");
                list.Add(n);
            }
            if (list.Count == 0) throw new MatqException("--requests is empty: give e.g. 1,2,4,8");
            return list.ToArray();
        }
    }

    public void Validate()
    {
        if (!File.Exists(Model)) throw new MatqException($"--model {Model} does not exist (give a .matq artifact)");
        if (Bits < 1 || Bits > 8) throw new MatqException($"--bits {Bits} is out of range: 1..8 (at most the artifact's master bits)");
        if (PromptTokens < 1) throw new MatqException($"--prompt-tokens {PromptTokens} is out of range: 1 or more");
        if (DecodeTokens < 2) throw new MatqException($"--decode-tokens {DecodeTokens} is out of range: 2 or more (the first token comes from the prefill)");
        if (Repeats < 1) throw new MatqException($"--repeats {Repeats} is out of range: 1 or more");
        _ = RequestList;
        PackedOptions.Resolve(Threads, "8", Activations, "bench serve");
    }
}
