// `matq bench scale`: quantizes and evaluates a synthetic checkpoint of a real model's shape (random bf16 weights, the
// family's published config.json, sharded with an index) the way `matq quantize` does — block-streamed — and reports
// per stage the wall time, peak host RSS (VmHWM, reset per stage) and peak GPU memory (NVML samples; n/a without it),
// plus checkpoint and artifact sizes: a Spectre table and, with --out, a markdown file.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Matq.Cli.Common;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchScaleVerb(IAnsiConsole console) : Verb<BenchScaleSettings>(console, "scale",
    "Quantize and evaluate a synthetic checkpoint of a real model's shape, block-streamed: time, peak host and GPU memory per stage, sizes",
    "matq bench scale --shape llama-3.2-1b --layers 2 --threads 1",
    "matq bench scale --shape llama-3.2-1b --method rtn --bits 4 --group 128 --work /tmp/scale --out docs/results/scale-1b-rtn.md",
    "matq bench scale --shape llama-3.1-8b --method gptq --bits 4 --group 128 --device cuda --work /data/scale --out scale-8b-gptq.md")
{
    private readonly Option<string> _shape = new("--shape")
    {
        Description = "The real model whose shapes the synthetic checkpoint has: " + string.Join(", ", RealConfigs.Shapes.Select(s => s.Name)),
        Required = true,
        HelpName = string.Join("|", RealConfigs.Shapes.Select(s => s.Name)),
    };
    private readonly Option<string> _method = new("--method")
    {
        Description = "A PTQ method that streams: " + string.Join(", ", AlgorithmRegistry.Names) + " (QAT-based ones need the model resident and are refused)",
        DefaultValueFactory = _ => "rtn",
        HelpName = "METHOD",
    };
    private readonly Option<string> _bits = CommonOptions.Bits("4");
    private readonly Option<int> _group = CommonOptions.Group(128);
    private readonly Option<string[]> _options = new("--option") { Description = "A method setting KEY=VALUE (repeatable), as for `matq quantize`", HelpName = "KEY=VALUE" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<string?> _work = new("--work")
    {
        Description = "Folder for the synthetic checkpoint (reused when it already holds this shape) and the artifact; default: a fresh temp folder, deleted after",
        HelpName = "DIR",
    };
    private readonly Option<int?> _layers = new("--layers") { Description = "Keep only the first N decoder layers (quick runs); default: all of the shape's", HelpName = "N" };
    private readonly Option<int> _calibN = new("--calib-n") { Description = "Calibration windows (random token ids) for methods that calibrate", DefaultValueFactory = _ => 32, HelpName = "N" };
    private readonly Option<int> _calibLen = new("--calib-len") { Description = "Tokens per calibration window", DefaultValueFactory = _ => 512, HelpName = "L" };
    private readonly Option<int> _evalTokens = new("--eval-tokens") { Description = "Tokens the eval stage runs through the artifact's model (windows of 256); 0 skips the eval stage (the packed runtime on the host CPU, the artifact memory-mapped, as `matq eval`)", DefaultValueFactory = _ => 512, HelpName = "N" };
    private readonly Option<int?> _threads = new("--threads") { Description = "CPU threads for torch (default: torch's own)", HelpName = "N" };
    private readonly Option<string?> _out = new("--out") { Description = "Also write the table as markdown to this file", HelpName = "FILE.md" };
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<bool> _head = new("--include-head") { Description = "Also quantize an untied lm_head, as `matq quantize --include-head`" };
    private readonly Option<int?> _embeddingBits = new("--embedding-bits")
    {
        Description = "Also store the token embedding as master codes (= the master bits), as `matq quantize --embedding-bits`",
        HelpName = "B",
    };

    protected override void Configure(Command command)
    {
        foreach (var o in new Option[] { _shape, _method, _bits, _group, _options, _device, _work, _layers, _calibN, _calibLen, _evalTokens, _threads, _out, _seed, _head, _embeddingBits })
            command.Options.Add(o);
    }

    private sealed record Stage(string Name, double Seconds, long? HostPeak, long? GpuPeak, string Note);

    protected override BenchScaleSettings Read(ParseResult r) => new(r.GetValue(_shape)!.Trim().ToLowerInvariant(), r.GetValue(_method)!.Trim().ToLowerInvariant(),
        r.GetValue(_bits)!, r.GetValue(_group), r.GetValue(_options) ?? [], r.GetValue(_device)!, r.GetValue(_work), r.GetValue(_layers), r.GetValue(_calibN),
        r.GetValue(_calibLen), r.GetValue(_evalTokens), r.GetValue(_threads), r.GetValue(_out), r.GetValue(_seed))
        { IncludeHead = r.GetValue(_head), EmbeddingBits = r.GetValue(_embeddingBits) };

    protected override int Run(BenchScaleSettings s)
    {
        var (shape, layers, method) = (s.Shape, s.Layers, s.Method);
        var configText = s.ConfigText;
        var registration = AlgorithmRegistry.Get(method);
        var config = s.Config;
        int master = config.Bits;
        var algorithm = AlgorithmRegistry.Create(config);
        int calibN = s.CalibN, calibLen = s.CalibLen, evalTokens = s.EvalTokens, seed = s.Seed;
        var outMd = s.Out;
        bool tempWork = s.Work is null;
        var work = s.Work ?? Path.Combine(Path.GetTempPath(), $"matq-scale-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        var device = TorchRuntime.Configure(s.Device, s.Threads).Device;   // the device first, then the threads

        var stages = new List<Stage>();
        using var gpu = device.type == DeviceType.CUDA ? new GpuMemorySampler(device.index < 0 ? 0 : device.index) : null;
        var sw = new Stopwatch();
        void Begin()
        {
            // aggressive: the heap the previous stage freed is decommitted, so it is not counted in this stage's peak
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            HostMemory.ResetPeak();
            gpu?.Reset();
            sw.Restart();
        }
        void End(string name, string note)
        {
            if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
            stages.Add(new Stage(name, sw.Elapsed.TotalSeconds, HostMemory.PeakBytes(), gpu?.Peak, note));
            var peak = stages[^1].HostPeak is long p ? $", peak host RSS {Format.Bytes(p)}" : "";
            Console.MarkupLine($"[grey]{Markup.Escape(name)}: {sw.Elapsed.TotalSeconds:F1} s{peak}[/]");
        }

        var checkpointDir = Path.Combine(work, "checkpoint");
        var artifactPath = Path.Combine(work, $"{shape}-{method}{master}.matq");
        try
        {
            Directory.CreateDirectory(work);
            Begin();
            SyntheticCheckpointInfo info;
            bool reused = File.Exists(Path.Combine(checkpointDir, "config.json")) && File.Exists(Path.Combine(checkpointDir, Matq.Formats.Safetensors.SafetensorsCheckpoint.IndexFileName))
                && SameShape(checkpointDir, configText);
            if (reused)
            {
                var cfg = HfLlamaConfig.Read(checkpointDir);
                var files = Directory.GetFiles(checkpointDir, "model-*.safetensors");
                info = new SyntheticCheckpointInfo(checkpointDir, cfg, files, files.Sum(f => new FileInfo(f).Length), cfg.ParameterCount());
            }
            else
            {
                Console.MarkupLine($"writing a synthetic {Markup.Escape(shape)} checkpoint to {Markup.Escape(checkpointDir)}");
                info = SyntheticCheckpoint.Write(checkpointDir, shape, layers, seed);
            }
            End("checkpoint", reused ? "reused" : $"{info.Shards.Count} shard(s), {Format.Bytes(info.Bytes)}");

            Begin();
            using var stream = LlamaBlockStream.Open(checkpointDir, device);
            End("open", "headers checked, placeholder model");

            int blocks = info.Config.NumLayers;
            var rng = new Random(seed);
            var windows = Enumerable.Range(0, calibN).Select(_ => Enumerable.Range(0, calibLen).Select(_ => rng.Next(info.Config.VocabSize)).ToArray()).ToList();
            Begin();
            OutputPaths.CheckFreeSpace(artifactPath, 2 * ArtifactExport.EstimateBytes(stream.Model, config, stream.SourceDtypes), "--work");
            // as `matq quantize` does: block-walking methods keep a checkpoint per block, which also holds the finished
            // blocks' codes (offloaded from memory) until the artifact is written
            var checkpoint = algorithm.SupportsResume ? QuantizationCheckpoint.Create(artifactPath, QuantizationCheckpoint.RunSettings(algorithm, stream.Model, seed)) : null;
            using var spill = checkpoint is null ? new CodeSpill(artifactPath) : null;   // rtn: its codes, as `matq quantize` does
            var context = new QuantizationContext(stream.Model, device, registration.NeedsCalibration ? () => new CalibrationTokens(windows) : null, seed,
                e =>
                {
                    // per block: the phase times (the calibrator's message), host RSS now and the stage's peak, GPU memory in use now
                    if (e.Kind == QuantizationEventKind.Message) Console.MarkupLine($"[grey]  {Markup.Escape(e.Message ?? "")}[/]");
                    if (e.Kind != QuantizationEventKind.BlockDone) return;
                    var gpuNow = gpu?.Current is long g ? $", GPU used {Format.Bytes(g)}" : "";
                    Console.MarkupLine($"[grey]  block {e.Block + 1}/{e.BlockCount} ({sw.Elapsed.TotalSeconds:F1} s): host RSS {Mem(HostMemory.CurrentBytes())} (peak {Mem(HostMemory.PeakBytes())}; managed heap {Mem(GC.GetGCMemoryInfo().HeapSizeBytes)}){gpuNow}[/]");
                })
            { Blocks = stream, Checkpoint = checkpoint, CodeSpill = spill };
            var run = QuantizationRunner.Run(algorithm, context);
            End("calibrate + quantize", $"{run.Layers.Count} linears, {blocks} blocks, {sw.Elapsed.TotalSeconds / Math.Max(1, blocks):F2} s/block"
                + (registration.NeedsCalibration ? $", {calibN}×{calibLen} tokens" : ""));

            Begin();
            var written = ArtifactExport.Write(run, stream.Model, artifactPath, null, stream.ReadSource, stream.StoredReader);
            run = null!;   // RTN's codes (1 byte per weight) are done with once written
            checkpoint?.Delete();
            End("write artifact", Format.Bytes(written.Bytes) + (written.Embedding is { } emb ? $", embedding as {emb.Bits}-bit codes" : ", embedding float")
                + (config.IncludeLmHead && !info.Config.TieWordEmbeddings ? ", lm_head quantized" : ""));
            stream.Dispose();

            if (evalTokens > 0)
            {
                Begin();
                // as `matq eval` serves a .matq: the packed runtime on the host CPU, loaded through the memory map one tensor at a
                // time, whatever device quantized it (the torch engine would widen every weight to fp32: 25 GiB at 8B)
                var packed = Matq.Runtime.Packed.PackedLlamaModel.Load(artifactPath, new Matq.Runtime.Packed.PackedModelOptions { Bits = master });
                double nll = MeanNllPacked(packed, evalTokens, seed);
                const string engine = "packed, memory-mapped, host CPU";
                End("eval artifact", $"{master}-bit ({engine}), {evalTokens} tokens, mean NLL {nll:F3} (random weights: ≈ ln vocab {Math.Log(info.Config.VocabSize):F2})");
            }

            Report(shape, layers, info, method, master, config.GroupSize, device.ToString(), written.Bytes, stages, outMd);
            return 0;
        }
        finally
        {
            if (tempWork && Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    private static bool SameShape(string folder, string configText)
    {
        try
        {
            var want = HfLlamaConfig.Parse(configText);
            var have = HfLlamaConfig.Read(folder);
            return want.NumLayers == have.NumLayers && want.HiddenSize == have.HiddenSize && want.VocabSize == have.VocabSize
                && want.IntermediateSize == have.IntermediateSize && want.Family == have.Family;
        }
        catch (MatqException)
        {
            return false;
        }
    }


    // mean next-token NLL over seeded random ids in windows of 256 through the packed runtime (fp32 activations, the head as
    // stored); memory and time are what count
    private static double MeanNllPacked(Matq.Runtime.Packed.PackedLlamaModel model, int tokens, int seed)
    {
        int vocab = model.Config.VocabSize;
        var rng = new Random(seed + 1);
        var session = new Matq.Runtime.Packed.PackedLlamaSession(model, contextLength: Math.Min(256, model.MaxPositions));
        double sum = 0;
        long count = 0;
        for (int start = 0; start < tokens; start += 256)
        {
            int len = Math.Min(256, tokens - start);
            if (len < 2) break;
            var ids = Enumerable.Range(0, len).Select(_ => rng.Next(vocab)).ToArray();
            session.Reset();
            var logits = session.Forward(ids.AsSpan(0, len - 1), allLogits: true);
            for (int j = 0; j < len - 1; j++)
            {
                var row = logits.AsSpan(j * vocab, vocab);
                float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                double e = 0;
                foreach (float v in row) e += Math.Exp(v - (double)max);
                sum += Math.Log(e) + max - row[ids[j + 1]];
            }
            count += len - 1;
        }
        return sum / Math.Max(1, count);
    }

    private static string Mem(long? b) => b is long v ? Format.Bytes(v) : "n/a";

    private void Report(string shape, int? layers, SyntheticCheckpointInfo info, string method, int bits, int group, string device, long artifactBytes,
        List<Stage> stages, string? outMd)
    {
        string title = $"{shape}{(layers is int n ? $" (first {n} layers)" : "")}: {info.Parameters:N0} parameters, {method} {bits}-bit"
            + (group <= 0 ? " per-channel" : $" g{group}") + $", {device}";
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(title));
        table.AddColumns("stage", "wall", "peak host RSS", "peak GPU", "notes");
        foreach (var s in stages)
            table.AddRow(Markup.Escape(s.Name), $"{s.Seconds:F1} s", Mem(s.HostPeak), Mem(s.GpuPeak), Markup.Escape(s.Note));
        Console.Write(table);
        long modelBf16 = info.Parameters * 2;
        Console.MarkupLine($"checkpoint {Format.Bytes(info.Bytes)} (bf16), artifact {Format.Bytes(artifactBytes)}; whole model in bf16 {Format.Bytes(modelBf16)}, in fp32 {Format.Bytes(modelBf16 * 2)}");
        if (outMd is null) return;
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# matq bench scale: {title}").AppendLine();
        md.AppendLine("| stage | wall (s) | peak host RSS | peak GPU | notes |").AppendLine("|---|---:|---:|---:|---|");
        foreach (var s in stages)
            md.AppendLine(CultureInfo.InvariantCulture, $"| {s.Name} | {s.Seconds:F1} | {Mem(s.HostPeak)} | {Mem(s.GpuPeak)} | {s.Note.Replace("|", "\\|")} |");
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture,
            $"Checkpoint {Format.Bytes(info.Bytes)} (bf16, {info.Shards.Count} shard(s)); artifact {Format.Bytes(artifactBytes)}; whole model in bf16 {Format.Bytes(modelBf16)}, in fp32 {Format.Bytes(modelBf16 * 2)}.");
        md.AppendLine().AppendLine("Peak host RSS is VmHWM, reset at each stage; peak GPU is NVML's used memory above the stage's start (n/a without a GPU).");
        AtomicFile.WriteAllText(outMd, md.ToString());
        Console.MarkupLine($"wrote {Markup.Escape(outMd)}");
    }
}

/// <summary>What `bench scale` was asked: the option values as typed (--shape and --method trimmed, lower-cased); <see cref="Validate"/>
/// checks the shape and --layers, the method and its options, the calibration and eval sizes, --work, --out, --threads and --device
/// (one line per mistake) before anything is written.</summary>
public sealed record BenchScaleSettings(string Shape, string Method, string Bits, int Group, string[] Options, string Device, string? Work, int? Layers,
    int CalibN, int CalibLen, int EvalTokens, int? Threads, string? Out, int Seed) : IVerbSettings
{
    /// <summary>--include-head: also quantize an untied lm_head.</summary>
    public bool IncludeHead { get; init; }
    /// <summary>--embedding-bits: store the embedding as master codes (must equal the master bits).</summary>
    public int? EmbeddingBits { get; init; }

    /// <summary>The shape's config.json (first --layers layers); an unknown shape or --layers out of range is one line.</summary>
    public string ConfigText => RealConfigs.Config(Shape, Layers);

    /// <summary>The method's config: master bits (int8 for a MatQuant list of widths), group and --option settings.</summary>
    public QuantizationConfig Config
    {
        get
        {
            if (!AlgorithmRegistry.Contains(Method))
                throw new MatqException($"--method '{Method}' is not known: choose one of {string.Join(", ", AlgorithmRegistry.Names)}");
            var registration = AlgorithmRegistry.Get(Method);
            var bits = CommonOptions.ParseBits(Bits);
            var options = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var pair in Options)
            {
                int eq = pair.IndexOf('=');
                if (eq <= 0 || !options.TryAdd(pair[..eq].Trim(), pair[(eq + 1)..].Trim()))
                    throw new MatqException($"--option '{pair}' is not KEY=VALUE or is given twice");
            }
            int master = bits[0];
            if (bits.Length > 1)
            {
                if (Method != Matq.Algorithms.MatQuant.MatQuantAlgorithm.MethodName) throw new MatqException($"--bits {Bits}: {Method} takes one bit-width");
                options[Matq.Algorithms.MatQuant.MatQuantConfig.BitsKey] = string.Join(",", bits);
                master = 8;
            }
            return new QuantizationConfig(registration.Name, master, CommonOptions.CheckGroup(Group), false, IncludeHead, options, embeddingBits: EmbeddingBits);
        }
    }

    public void Validate()
    {
        // Cheap checks first: names, numbers and paths fail before anything is written.
        _ = ConfigText;
        var config = Config;
        if (!AlgorithmRegistry.Create(config).Streams)
            throw new MatqException($"--method {Method}{(config.Options.TryGetValue("base", out var b) ? " with base " + b : "")} trains the whole model resident, so it has no block-streamed run to measure; bench a PTQ method (rtn, gptq, athena, omniquant, matquant with base athena|omniquant)");
        if (CalibN < 1 || CalibLen < 2) throw new MatqException($"--calib-n {CalibN} / --calib-len {CalibLen}: at least 1 window of 2 tokens");
        if (EvalTokens is < 2 and not 0) throw new MatqException($"--eval-tokens {EvalTokens}: 0 (no eval stage) or at least 2");
        if (Work is not null) OutputPaths.CheckWorkFolder(Work, "--work");
        if (Out is not null) OutputPaths.CheckFile(Out, "--out", Work);
        if (Threads is < 1) throw new MatqException($"--threads {Threads}: at least 1");
        TorchRuntime.Check(Device);
    }
}
