// `matq bench race`: matq's packed CPU runtime against llama.cpp (LLamaSharp 0.30.0's CPU backend) on the same .matq artifact:
// each --types GGUF type is exported by matq's GgufExporter (q8_0 ↔ matq served at 8 bits, q4_0/q4_1 ↔ 4 bits; the report
// says whether the linears took the lossless code-copy path or were re-quantized) and both engines run the same seeded
// prompt (--prompt-tokens ids) and --decode-tokens greedy steps with the same thread count. Timing is the same for both:
// wall clock around one prefill call on the whole prompt (llama.cpp: one llama_decode batch, logits of the last token;
// matq: one Forward, which chunks internally), then around the decode loop (argmax of the last logits, one token per
// llama_decode / Forward). Rounds interleave the engines (matq, llama.cpp, matq, ...; configurations rotate) after ≥ 1 s of
// warm-up; medians of --repeats. Decode GB/s = weight bytes read per token (every linear + the output head; one embedding
// row is not counted) × decode tok/s, beside the memory read bandwidth measured in this run with the same thread count
// (`bench kernels`' read stream). Ratios are matq ÷ llama.cpp within this run. With int8 activations, matq's prefill runs
// the integer GEMM; a second matq session with fp32 activations is timed on the same prompt in the same rounds (its own
// line under the table), so int8 and fp32 prefill compare within one run.
using Matq.Kernels.Packed;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;
using Matq.Export;
using Matq.Formats.Gguf;
using Matq.Runtime.Generation;

namespace Matq.Cli.Verbs;

public sealed class BenchRaceVerb(IAnsiConsole console) : Verb<BenchRaceSettings>(console, "race",
    "matq's packed CPU runtime vs llama.cpp (LLamaSharp) on the same artifact exported as GGUF: prefill/decode tok/s, ratios, decode GB/s vs measured bandwidth",
    "matq bench race --model out/small8sym.matq --threads 1,2",
    "matq bench race --model out/small8sym.matq --types q8_0,q4_0,q4_1 --threads 16 --prompt-tokens 256 --decode-tokens 128 --out race.md")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _types = new("--types") { Description = "GGUF types to race, each beside matq at its bits: q8_0 (8 bits), q4_0 / q4_1 (4 bits), q3_K (3 bits), q2_K (2 bits: k-quants re-quantized from the artifact's values, matq slices its codes); auto = q8_0 and q4_0 for a symmetric artifact, q4_1 for an asymmetric one (their lossless paths)", DefaultValueFactory = _ => "auto", HelpName = "auto|T[,T...]" };
    private readonly Option<string> _threads = new("--threads") { Description = "Thread counts, each given to both engines (matq workers; llama.cpp Threads and BatchThreads); -1 = all cores", DefaultValueFactory = _ => "1", HelpName = "N[,N...]" };
    private readonly Option<string> _head = PackedOptions.Head("matq head: quantize an fp32 lm_head (or the tied embedding) at load to B bits (RTN, groups of 128), or fp32; the GGUF holds it as q8_0");
    private readonly Option<string> _activations = PackedOptions.Activations("int8");
    private readonly Option<int> _promptTokens = new("--prompt-tokens") { Description = "Prompt length (one prefill call)", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<int> _decodeTokens = new("--decode-tokens") { Description = "Greedy tokens decoded one by one after the prompt", DefaultValueFactory = _ => 64, HelpName = "N" };
    private readonly Option<int> _repeats = new("--repeats") { Description = "Timed rounds (medians are reported)", DefaultValueFactory = _ => 5, HelpName = "N" };
    private readonly Option<double> _bandwidthSeconds = new("--bandwidth-seconds") { Description = "Measuring time per memory-bandwidth stream and thread count; 0 skips it (no % column)", DefaultValueFactory = _ => 1.0, HelpName = "S" };
    private readonly Option<string?> _ggufDir = new("--gguf-dir") { Description = "Keep the exported GGUF files in this folder (default: a temporary folder, deleted after)", HelpName = "DIR" };
    private readonly Option<string?> _out = new("--out") { Description = "Also write the table and settings as markdown", HelpName = "PATH" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options =>
    [
        _model, _types, _threads, _head, _activations, _promptTokens, _decodeTokens, _repeats, _bandwidthSeconds, _ggufDir, _out, _seed,
    ];

    private sealed record Engine(string Type, int Bits, GgufExportReport Export, int Linears, PackedLlamaModel Matq, LLamaWeights Llama, string Gguf, long MatqBytes, long LlamaBytes);

    private sealed record Config(Engine Engine, int Threads, PackedLlamaSession Session, LLamaContext Context, PackedLlamaSession? Fp32Prefill);

    private sealed record Row(int Threads, int Bits, string Type, string Path, long MatqBytes, long LlamaBytes,
        double MatqPrefill, double LlamaPrefill, double MatqDecode, double LlamaDecode, double ReadBandwidth, double MatqPrefillFp32);

    protected override BenchRaceSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_types)!, r.GetValue(_threads)!, r.GetValue(_head)!,
        r.GetValue(_activations)!, r.GetValue(_promptTokens), r.GetValue(_decodeTokens), r.GetValue(_repeats), r.GetValue(_bandwidthSeconds),
        r.GetValue(_ggufDir), r.GetValue(_out), r.GetValue(_seed), "matq " + string.Join(" ", r.Tokens.Select(t => t.Value)));

    protected override int Run(BenchRaceSettings s)
    {
        var path = s.Model;
        var (threadsList, head, acts) = (s.ThreadList, s.HeadBits, s.Activation);
        int prompt = s.PromptTokens, decode = s.DecodeTokens, repeats = s.Repeats;
        double bwSeconds = s.BandwidthSeconds;
        var typesText = s.Types;
        var types = ParseTypes(typesText, symmetric: null);
        var outPath = s.OutFull;
        var keepDir = s.GgufDir;
        string dir = keepDir is not null ? Matq.Formats.IO.OutputPaths.CheckWorkFolder(keepDir, "--gguf-dir", path)
            : Directory.CreateTempSubdirectory("matq-race-").FullName;
        Directory.CreateDirectory(dir);

        // the header only: the engines map the artifact themselves (an 8B-shape artifact is never held whole)
        MatqMetadata metadata;
        try { metadata = MatqArtifact.ReadMetadata(path); }
        catch (Exception e) when (e is InvalidDataException or IOException) { throw new MatqException($"--model {path} is not a readable .matq artifact: {e.Message}"); }
        if (types is null) types = ParseTypes(typesText, metadata.Symmetric)!;
        int linears = metadata.Quantized.Count;
        int context = prompt + decode;
        LlamaCppNative.Quiet();
        var engines = new List<Engine>();
        var configs = new List<Config>();
        try
        {
            string loadBefore = BenchStats.LoadAverage();
            foreach (var type in types)
            {
                int bits = type switch { GgmlType.Q8_0 => 8, GgmlType.Q3_K => 3, GgmlType.Q2_K => 2, _ => 4 };
                var gguf = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(path)}-{TypeName(type)}.gguf");
                var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, HeadBits = head });
                if (context > model.MaxPositions)
                    throw new MatqException($"--prompt-tokens + --decode-tokens = {context} exceeds the model's context of {model.MaxPositions} tokens");
                Console.MarkupLine(Markup.Escape($"exporting {TypeName(type)} → {gguf}"));
                var report = GgufExporter.Export(path, type, gguf);
                var weights = LlamaCppNative.Load(Params(gguf, context, prompt, 1));
                engines.Add(new Engine(TypeName(type), bits, report, linears, model, weights, gguf, model.LayerWeightBytes + model.HeadBytes, LlamaBytesPerToken(gguf)));
            }
            foreach (int t in threadsList)
            foreach (var e in engines)
                configs.Add(new Config(e, t, new PackedLlamaSession(e.Matq, context, t, acts), e.Llama.CreateContext(Params(e.Gguf, context, prompt, t)),
                    acts == PackedActivations.Int8 ? new PackedLlamaSession(e.Matq, context, t, PackedActivations.Fp32) : null));
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);

            var bandwidth = new Dictionary<int, (double Copy, double Triad, double Read)>();
            if (bwSeconds > 0)
                foreach (int t in threadsList) bandwidth[t] = BenchKernelsVerb.MemoryBandwidth(t, bwSeconds);

            var rng = new Random(s.Seed);
            int vocab = engines[0].Matq.Config.VocabSize;
            var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(vocab)).ToArray();
            // llama.cpp's CPU build waits at OpenMP barriers; libgomp reads OMP_WAIT_POLICY from the process environment at load
            // (set it in the shell: .NET's SetEnvironmentVariable does not reach native getenv). Spinning wins on idle cores
            // and loses badly when a thread is descheduled (a loaded or shared machine), so the header names it.
            string omp = System.Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is { Length: > 0 } p ? p : "unset (libgomp default: spin, then sleep)";
            string header = $"{CpuModel()}, {Environment.ProcessorCount} logical cores, load average {loadBefore}; llama.cpp: {LlamaCppNative.SystemInfo()}, OMP_WAIT_POLICY {omp}; " +
                            $"matq: AVX2 path {Matq.Kernels.Simd.GemvPackedSimd.Avx2Path}, {PackedOptions.Name(acts)} activations, head {(head is null ? "fp32" : $"int{head}")}; " +
                            $"prompt {prompt} tokens, decode {decode} tokens, median of {repeats} interleaved rounds; {Matq.Kernels.Packed.HugePageArrays.Describe()}";
            Console.MarkupLine(Markup.Escape(header));
            foreach (var (t, bw) in bandwidth)
                Console.MarkupLine(Markup.Escape($"memory bandwidth, {t} thread(s): copy {bw.Copy:F1} GB/s, triad {bw.Triad:F1} GB/s, read {bw.Read:F1} GB/s (3×128 MiB arrays)"));

            var matqTimes = configs.Select(_ => new List<(double Prefill, double Decode)>()).ToArray();
            var llamaTimes = configs.Select(_ => new List<(double Prefill, double Decode)>()).ToArray();
            var fp32Prefill = configs.Select(_ => new List<double>()).ToArray();
            var batch = new LLamaBatch();
            var warm = Stopwatch.StartNew();
            for (int round = 0; round < 2 || warm.Elapsed.TotalSeconds < 1; round++)
                foreach (var c in configs)
                {
                    BenchGenerateVerb.Measure(c.Session, ids, decode);
                    if (c.Fp32Prefill is not null) MeasurePrefill(c.Fp32Prefill, ids);
                    MeasureLlama(c.Context, batch, ids, decode);
                }
            for (int round = 0; round < repeats; round++)
                for (int i = 0; i < configs.Count; i++)
                {
                    int c = (i + round) % configs.Count;   // rotate so no configuration always runs first
                    matqTimes[c].Add(BenchGenerateVerb.Measure(configs[c].Session, ids, decode));
                    if (configs[c].Fp32Prefill is { } f) fp32Prefill[c].Add(MeasurePrefill(f, ids));
                    llamaTimes[c].Add(MeasureLlama(configs[c].Context, batch, ids, decode));
                }

            var rows = new List<Row>();
            for (int c = 0; c < configs.Count; c++)
            {
                var (e, t) = (configs[c].Engine, configs[c].Threads);
                rows.Add(new Row(t, e.Bits, e.Type, ExportPath(e), e.MatqBytes, e.LlamaBytes,
                    prompt / BenchStats.Median(matqTimes[c].Select(x => x.Prefill)), prompt / BenchStats.Median(llamaTimes[c].Select(x => x.Prefill)),
                    decode / BenchStats.Median(matqTimes[c].Select(x => x.Decode)), decode / BenchStats.Median(llamaTimes[c].Select(x => x.Decode)),
                    bandwidth.TryGetValue(t, out var bw) ? bw.Read : double.NaN,
                    fp32Prefill[c].Count > 0 ? prompt / BenchStats.Median(fp32Prefill[c]) : double.NaN));
            }
            rows = rows.OrderBy(r => r.Threads).ThenByDescending(r => r.Bits).ThenBy(r => r.Type, StringComparer.Ordinal).ToList();
            var cells = rows.Select(Cells).ToList();
            var table = new Table().AddColumns(Columns);
            foreach (var r in cells) table.AddRow(r.Select(Markup.Escape).ToArray());
            Console.Write(table);
            var notes = Notes(engines, loadBefore);
            foreach (var r in rows.Where(r => !double.IsNaN(r.MatqPrefillFp32)))
                notes.Add($"matq prefill with fp32 activations (same rounds), {r.Threads} thread(s), {r.Bits} bits: {r.MatqPrefillFp32:F1} tok/s; " +
                          $"int8 ÷ fp32 activations {r.MatqPrefill / r.MatqPrefillFp32:F2}, fp32 activations ÷ llama.cpp {r.MatqPrefillFp32 / r.LlamaPrefill:F2}");
            foreach (var n in notes) Console.MarkupLine(Markup.Escape(n));
            if (outPath is not null)
                Matq.Formats.IO.AtomicFile.WriteAllText(outPath, Markdown(s.CommandLine, header, bandwidth, cells, notes));
            return 0;
        }
        finally
        {
            foreach (var c in configs) c.Context.Dispose();
            foreach (var e in engines) e.Llama.Dispose();
            if (keepDir is null)
                try { Directory.Delete(dir, recursive: true); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
        }
    }

    private static readonly string[] Columns =
    [
        "threads", "bits", "GGUF type (export path)", "weights read/token matq", "weights read/token llama.cpp",
        "prefill tok/s matq", "prefill tok/s llama.cpp", "prefill matq ÷ llama.cpp",
        "decode tok/s matq", "decode tok/s llama.cpp", "decode matq ÷ llama.cpp",
        "decode GB/s matq (% read bw)", "decode GB/s llama.cpp (% read bw)",
    ];

    private static string[] Cells(Row r) =>
    [
        $"{r.Threads}", $"{r.Bits}", $"{r.Type} ({r.Path})", Format.Bytes(r.MatqBytes), Format.Bytes(r.LlamaBytes),
        $"{r.MatqPrefill:F1}", $"{r.LlamaPrefill:F1}", $"{r.MatqPrefill / r.LlamaPrefill:F2}",
        $"{r.MatqDecode:F1}", $"{r.LlamaDecode:F1}", $"{r.MatqDecode / r.LlamaDecode:F2}",
        GbPerSecond(r.MatqBytes, r.MatqDecode, r.ReadBandwidth), GbPerSecond(r.LlamaBytes, r.LlamaDecode, r.ReadBandwidth),
    ];

    private static string GbPerSecond(long bytes, double tokPerSec, double readBw)
    {
        double gbs = bytes * tokPerSec / 1e9;
        return double.IsNaN(readBw) ? $"{gbs:F1}" : $"{gbs:F1} ({100 * gbs / readBw:F0}%)";
    }

    private static string ExportPath(Engine e)
    {
        int lossless = e.Export.Lossless;
        return lossless == e.Linears ? $"lossless, {lossless}/{e.Linears} linears" : $"re-quantized {e.Linears - lossless}/{e.Linears} linears";
    }

    private static List<string> Notes(List<Engine> engines, string loadBefore)
    {
        var notes = new List<string>();
        foreach (var e in engines)
            foreach (var n in e.Export.Notes) notes.Add($"GGUF {e.Type}: {n}");
        foreach (var e in engines)
        {
            var packed = e.Matq.Layers.SelectMany(l => l.Linears).Select(l => l.Packed).OfType<PackedMatrix>().ToArray();
            int sym = packed.Count(p => p.Params.Symmetric);
            long weights = packed.Sum(p => (long)p.Rows * p.Cols), bytes = packed.Sum(p => p.WeightBytes);
            notes.Add(string.Create(CultureInfo.InvariantCulture,
                $"matq int{e.Bits} layout: {sym}/{packed.Length} packed linears symmetric (codes + one fp16 scale per group), {packed.Length - sym} asymmetric " +
                $"(+ one fp16 zero per group); {8.0 * bytes / Math.Max(1, weights):F3} bits/weight read in the layer linears (padding included)"));
        }
        notes.Add($"load average before {loadBefore}, after {BenchStats.LoadAverage()}. Weights read/token: matq = packed layer linears (codes + fp16 group scales, + an fp16 zero per group when the zeros differ) " +
                  "+ head; llama.cpp = every GGUF tensor but token_embd (which counts as the output head when tied). Timed in interleaved rounds " +
                  "(matq, llama.cpp, ...); ratios and % of the read bandwidth are within this run. A model smaller than the last-level " +
                  "cache can read faster than memory (> 100%).");
        return notes;
    }

    private static string Markdown(string command, string header, Dictionary<int, (double Copy, double Triad, double Read)> bandwidth, List<string[]> cells, List<string> notes)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"`{command}`").AppendLine();
        md.AppendLine(header).AppendLine();
        foreach (var (t, bw) in bandwidth)
            md.AppendLine(CultureInfo.InvariantCulture, $"- memory bandwidth, {t} thread(s): copy {bw.Copy:F1} GB/s, triad {bw.Triad:F1} GB/s, read {bw.Read:F1} GB/s");
        if (bandwidth.Count > 0) md.AppendLine();
        md.AppendLine("| " + string.Join(" | ", Columns) + " |");
        md.AppendLine("|" + string.Concat(Columns.Select((_, i) => i < 3 ? "---|" : "---:|")));
        foreach (var r in cells) md.AppendLine("| " + string.Join(" | ", r) + " |");
        md.AppendLine();
        foreach (var n in notes) md.AppendLine("- " + n);
        return md.ToString();
    }

    /// <summary>Seconds of one prefill Forward of the whole prompt on a reset session (matq's prefill timing).</summary>
    private static double MeasurePrefill(PackedLlamaSession session, int[] prompt)
    {
        session.Reset();
        var logits = new float[session.Model.Config.VocabSize];
        long t0 = Stopwatch.GetTimestamp();
        session.Forward(prompt, logits);
        return Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>The same for llama.cpp: the prompt as one llama_decode batch (logits of its last token only), then one token
    /// per llama_decode with its logits, the next token being the argmax of the previous logits.</summary>
    private static (double Prefill, double Decode) MeasureLlama(LLamaContext ctx, LLamaBatch batch, int[] prompt, int decode)
    {
        ctx.NativeHandle.MemoryClear(true);
        batch.Clear();
        for (int i = 0; i < prompt.Length; i++) batch.Add((LLamaToken)prompt[i], i, (LLamaSeqId)0, i == prompt.Length - 1);
        long t0 = Stopwatch.GetTimestamp();
        Check(ctx.Decode(batch));
        double prefill = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        int last = batch.TokenCount - 1;
        t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < decode; i++)
        {
            int next = TokenSampler.ArgMax(ctx.NativeHandle.GetLogitsIth(last));
            batch.Clear();
            batch.Add((LLamaToken)next, prompt.Length + i, (LLamaSeqId)0, true);
            last = 0;
            Check(ctx.Decode(batch));
        }
        return (prefill, Stopwatch.GetElapsedTime(t0).TotalSeconds);
    }

    private static void Check(DecodeResult r)
    {
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {r}");
    }

    private static ModelParams Params(string gguf, int context, int prompt, int threads) => new(gguf)
    {
        // one ubatch holds the whole prompt, so prefill is one graph; llama.cpp's defaults otherwise (f16 KV cache, its
        // flash-attention choice), as a llama.cpp user would run it
        ContextSize = (uint)context, BatchSize = (uint)prompt, UBatchSize = (uint)prompt,
        GpuLayerCount = 0, Threads = threads, BatchThreads = threads,
    };

    /// <summary>Bytes llama.cpp reads per decoded token: every tensor but the embedding table (only one row of it is read),
    /// unless the model is tied and that table is the output head.</summary>
    private static long LlamaBytesPerToken(string gguf)
    {
        var f = GgufFile.Open(gguf);
        bool tied = f.Tensors.All(t => t.Name != "output.weight");
        return f.Tensors.Where(t => tied || t.Name != "token_embd.weight").Sum(t => Math.Max(0, t.ByteLength));
    }

    /// <summary>null for auto when the symmetry is not yet known.</summary>
    internal static GgmlType[]? ParseTypes(string text, bool? symmetric)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new MatqException("--types is empty: give auto, or a list of q8_0, q4_0, q4_1");
        var list = new List<GgmlType>();
        foreach (var p in parts)
        {
            if (p.Equals("auto", StringComparison.OrdinalIgnoreCase))
            {
                if (symmetric is null) return null;
                list.AddRange([GgmlType.Q8_0, symmetric.Value ? GgmlType.Q4_0 : GgmlType.Q4_1]);
                continue;
            }
            list.Add(p.ToLowerInvariant() switch
            {
                "q8_0" => GgmlType.Q8_0, "q4_0" => GgmlType.Q4_0, "q4_1" => GgmlType.Q4_1, "q3_k" => GgmlType.Q3_K, "q2_k" => GgmlType.Q2_K,
                _ => throw new MatqException($"--types '{p}' is not raced: use auto, or q8_0 (8 bits), q4_0 or q4_1 (4 bits), q3_K (3 bits), q2_K (2 bits)"),
            });
        }
        return list.Distinct().ToArray();
    }

    private static string TypeName(GgmlType t) => t switch { GgmlType.Q8_0 => "q8_0", GgmlType.Q4_0 => "q4_0", GgmlType.Q4_1 => "q4_1", GgmlType.Q3_K => "q3_K", GgmlType.Q2_K => "q2_K", _ => t.ToString() };

    internal static int[] ParseThreads(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new MatqException("--threads is empty: give 1 or more, -1 for all cores, or a list (1,2)");
        return parts.Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int t) && (t == -1 || t is >= 1 and <= 1024)
                ? (t == -1 ? Environment.ProcessorCount : t)
                : throw new MatqException($"--threads '{p}' is out of range: 1 or more, or -1 for all cores"))
            .Distinct().ToArray();
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "CPU model unknown" : line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { return "CPU model unknown"; }
        catch (UnauthorizedAccessException) { return "CPU model unknown"; }
    }
}

/// <summary>llama.cpp's native library through LLamaSharp, silenced once per process (it logs every tensor it loads); the
/// last error lines are kept for the message when a model fails to load.</summary>
internal static class LlamaCppNative
{
    private static readonly Lock Gate = new();
    private static bool _configured;
    private static readonly Queue<string> Errors = new();

    public static void Quiet()
    {
        lock (Gate)
        {
            if (_configured) return;
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (level != LLamaLogLevel.Error) return;
                lock (Errors)
                {
                    Errors.Enqueue(message.Trim());
                    while (Errors.Count > 4) Errors.Dequeue();
                }
            });
            _configured = true;
        }
    }

    public static LLamaWeights Load(ModelParams p)
    {
        try { return LLamaWeights.LoadFromFile(p); }
        catch (LLama.Exceptions.LoadWeightsFailedException)
        {
            string last;
            lock (Errors) last = string.Join("; ", Errors);
            throw new MatqException($"llama.cpp could not load {p.ModelPath}: {(last.Length > 0 ? last : "no error logged")}");
        }
    }

    /// <summary>The CPU features llama.cpp's loaded build reports as on (e.g. "AVX2 AVX512 ..."), or its raw info line.</summary>
    public static string SystemInfo()
    {
        string info = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()) ?? "";
        var on = info.Split('|', StringSplitOptions.TrimEntries).Where(s => s.EndsWith("= 1", StringComparison.Ordinal)).Select(s => s[..^3].Trim()).ToArray();
        return on.Length > 0 ? "CPU features on: " + string.Join(" ", on) : info.Trim();
    }
}

/// <summary>What `bench race` was asked: the option values as typed and the command line (for the report); <see cref="Validate"/> checks --threads, --head, --activations,
/// the run lengths, --bandwidth-seconds, --types, --model, --out and --gguf-dir (one line per mistake) before the artifact is read.</summary>
public sealed record BenchRaceSettings(string Model, string Types, string Threads, string Head, string Activations, int PromptTokens, int DecodeTokens,
    int Repeats, double BandwidthSeconds, string? GgufDir, string? Out, int Seed, string CommandLine) : IVerbSettings
{
    public int[] ThreadList => BenchRaceVerb.ParseThreads(Threads);

    public int? HeadBits => PackedOptions.ParseHead(Head);

    public PackedActivations Activation
    {
        get
        {
            var acts = PackedOptions.ParseActivations(Activations);
            if (acts.Length != 1) throw new MatqException("--activations takes one mode here (int8 or fp32)");
            return acts[0];
        }
    }

    /// <summary>--out checked and as a full path; null when not given.</summary>
    public string? OutFull => Out is null ? null : Matq.Formats.IO.OutputPaths.CheckFile(Out, "--out", Model);

    public void Validate()
    {
        _ = ThreadList;
        _ = HeadBits;
        _ = Activation;
        BenchStats.CheckRun(PromptTokens, DecodeTokens, Repeats);
        if (!(BandwidthSeconds >= 0) || BandwidthSeconds > 60) throw new MatqException($"--bandwidth-seconds {BandwidthSeconds} must be between 0 and 60");
        BenchRaceVerb.ParseTypes(Types, symmetric: null);   // the names, before the model is read
        if (!File.Exists(Model)) throw new MatqException($"--model {Model} does not exist (give a .matq artifact)");
        _ = OutFull;
        if (GgufDir is not null) Matq.Formats.IO.OutputPaths.CheckWorkFolder(GgufDir, "--gguf-dir", Model);
    }
}
