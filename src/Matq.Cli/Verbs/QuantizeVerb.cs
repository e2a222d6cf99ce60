// `matq quantize`: post-training quantization of an HF model into a .matq artifact with any registered method
// (AlgorithmRegistry), showing per-block progress and a per-layer summary table; the artifact write is atomic.
// Vision model folders (written by `matq train cnn`) are quantized by `matq quantize-cnn`; given one here, or a vision
// method or option (the spelling of the vision branch this verb once had), it says so in one line.
// Block-walking methods (gptq, athena, omniquant, matquant with base athena|omniquant) keep a checkpoint per finished
// block beside --out (QuantizationCheckpoint: ".<out>.resume/"); --resume continues a killed run from it.
using System.CommandLine;
using System.Diagnostics;
using Matq.Algorithms.MatQuant;
using Matq.Cli.Common;
using Matq.Models.Vision;
using Spectre.Console;

namespace Matq.Cli.Verbs;

public sealed class QuantizeVerb : Verb<QuantizeSettings>
{
    internal static readonly string[] CalibNames = ["sotu-train", "sotu-validation", "sotu-test", "moby-dick"];

    /// <param name="observe">Sees every progress event of a language-model run (tests: a throw there is a killed run).</param>
    public QuantizeVerb(IAnsiConsole console, Func<DataStore>? data = null, Action<QuantizationEvent>? observe = null) : base(console, "quantize",
        "Quantize an HF model's linears to low-bit integer codes and write a .matq artifact (servable at any bits up to --bits)",
        "matq quantize --model models/tiny --method rtn --bits 4 --group 128 --out out/tiny-rtn4.matq",
        "matq quantize --model models/tiny --bits 8 --group 64 --clip mse --out out/tiny-rtn8.matq",
        "matq quantize --model models/small --method rtn --bits 3 --group 0 --symmetric --include-head --device cuda --out out/small-rtn3.matq",
        "matq quantize --model models/tiny --method rtn --bits 8 --group 64 --embedding-bits 8 --include-head --out out/tiny-rtn8-emb.matq  (no large float tensor left)",
        "matq quantize --model models/tiny --method omniquant --bits 4 --group 64 --option epochs=10 --out out/tiny-omni4.matq",
        "matq quantize --model models/tiny --method matquant --base omniquant --bits 8,4,2 --lambda 1,1,1 --codistill 8->2 --out out/tiny-mq.matq  (int8 master codes)",
        "matq quantize --model models/tiny --method matquant --base qat --bits 8,4,2 --layers ffn --out out/tiny-mq-ffn.matq  (attention stays float)",
        "matq quantize --model models/small --method athena --bits 4 --group 64 --device cuda --out out/small-athena4.matq --resume  (continue a killed run at its next block)")
    {
        _data = data ?? (() => new DataStore());
        _observe = observe;
    }

    private readonly Action<QuantizationEvent>? _observe;

    private readonly Func<DataStore> _data;
    // The vision branch's options, kept hidden so that their old spelling gets a pointer to `matq quantize-cnn`.
    private static readonly string[] VisionOptionNames = ["--wstates", "--astates", "--ends-wstates", "--surrogate", "--width", "--norm", "--freeze-lbn",
        "--clip-grad", "--float", "--init", "--fold", "--batch", "--epochs", "--lr", "--limit-train", "--limit-test", "--holdout", "--threads",
        "--cudnn-benchmark", "--abits", "--mode", "--fraction", "--sweep", "--sweep-settings"];
    private readonly Option<string?>[] _visionOptions = VisionOptionNames.Select(n => new Option<string?>(n) { Hidden = true, Arity = ArgumentArity.ZeroOrOne }).ToArray();
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _method = new("--method")
    {
        Description = "Quantization algorithm: " + string.Join("; ", AlgorithmRegistry.All.Select(r => $"{r.Name} = {r.Description}"))
            + " (vision model folders from `matq train cnn`: `matq quantize-cnn`)",
        DefaultValueFactory = _ => "rtn",
        HelpName = string.Join("|", AlgorithmRegistry.Names),
    };
    private readonly Option<string> _bits = CommonOptions.Bits("4");
    private readonly Option<int> _group = CommonOptions.Group(128);
    private readonly Option<bool> _symmetric = new("--symmetric") { Description = "Symmetric grid around 0 (z = 2^(bits-1)) instead of asymmetric min-max" };
    private readonly Option<string?> _clip = new("--clip") { Description = "rtn: range per group, minmax (default) or mse (search shrink factors for the least squared error)", HelpName = "mse|minmax" };
    private readonly Option<string[]> _options = new("--option")
    {
        Description = "A method-specific setting KEY=VALUE (repeatable). " + string.Join("; ", AlgorithmRegistry.All.Where(r => r.Options.Count > 0)
            .Select(r => $"{r.Name}: " + string.Join(", ", r.Options.Select(o => $"{o.Key} ({o.Description}; default {o.Default})")))),
        HelpName = "KEY=VALUE",
        AllowMultipleArgumentsPerToken = false,
    };
    private readonly Option<string?> _base = new("--base")
    {
        Description = "matquant: the base whose loss is summed over the nested widths, qat, athena or omniquant (= --option base=...)",
        HelpName = "qat|athena|omniquant",
    };
    private readonly Option<string?> _lambda = new("--lambda") { Description = "matquant: weights λ_r of the per-width losses, one per nested width (= --option lambda=...)", HelpName = "L[,L...]" };
    private readonly Option<string?> _codistill = new("--codistill") { Description = "matquant (qat, omniquant bases): co-distillation pairs TEACHER->STUDENT, e.g. 8->2,8->4", HelpName = "T->S[,...]" };
    private readonly Option<string> _layers = new("--layers")
    {
        Description = "Which linears to quantize (the rest stay float in the artifact): all, ffn (gate/up/down; the MatQuant paper's main setting), "
            + "attn (q/k/v/o), or a comma list of module suffixes and globs, e.g. mlp.down_proj,mlp.up_proj or model.layers.1?.mlp.*; recorded in the artifact",
        DefaultValueFactory = _ => "all",
        HelpName = "all|ffn|attn|PATTERN[,...]",
    };
    private readonly Option<bool> _head = new("--include-head") { Description = "Also quantize lm_head (untied heads only, calibrated like the linears; a tied head is the embedding: see --embedding-bits)" };
    private readonly Option<int?> _embeddingBits = new("--embedding-bits")
    {
        Description = "Also store the token embedding as master codes like a linear (min-max grid from the weights, groups of --group along hidden; "
            + "served sliced to --bits at load like the linears; a tied head reads it too); B must be the master bits (--bits, 8 for a matquant list). "
            + "Default: the embedding stays float in the checkpoint dtype",
        HelpName = "B",
    };
    private readonly Option<string> _calibData = new("--calib-data")
    {
        Description = "Calibration text for methods that need it: sotu-train, sotu-validation, sotu-test, moby-dick or a UTF-8 text file",
        DefaultValueFactory = _ => "sotu-train",
        HelpName = "NAME|FILE",
    };
    private readonly Option<int> _calibN = new("--calib-n") { Description = "Calibration windows", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<int> _calibLen = new("--calib-len") { Description = "Tokens per calibration window", DefaultValueFactory = _ => 512, HelpName = "L" }; // capped at the model's context unless given
    private readonly Option<string> _out = CommonOptions.Out(required: false);
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<bool> _resume = new("--resume")
    {
        Description = "Continue a killed run from its last finished block (" + QuantizationCheckpoint.ResumableMethods + "). These methods write a "
            + "checkpoint after every block to the hidden folder .NAME.resume beside --out NAME, deleted once the artifact is written; the settings, "
            + "model and calibration data must match the killed run's. Without --resume an existing checkpoint for --out is replaced",
    };

    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();
    private readonly Option<int> _gpus = new("--gpus")
    {
        Description = "N ranks, one process per GPU (rank 0 writes --out): gptq, athena, matquant --base athena spread each block's linears over them (layer-parallel, the one-GPU artifact); matquant --base qat, efqat train data-parallel (each rank 1/N of every step's rows, gradients averaged through NCCL)",
        DefaultValueFactory = _ => 1,
        HelpName = "N",
    };

    protected override void Configure(Command command)
    {
        foreach (var o in new Option[] { _model, _method, _bits, _group, _symmetric, _clip, _options, _base, _lambda, _codistill, _layers, _head, _embeddingBits, _calibData, _calibN, _calibLen, _out, _device, _seed, _resume, _tokenizer, _gpus })
            command.Options.Add(o);
        foreach (var o in _visionOptions) command.Options.Add(o);
    }

    // The LM options that, given explicitly for a vision method on a vision folder, are named in the pointer to `matq quantize-cnn`.
    private Option[] LmOnlyOptions => [_group, _symmetric, _clip, _options, _layers, _head, _embeddingBits, _calibData, _calibN, _calibLen, _out, _tokenizer];

    protected override QuantizeSettings Read(ParseResult r)
    {
        static bool Given(ParseResult r, Option o) => r.GetResult(o) is { Implicit: false };
        return new(r.GetValue(_model)!, r.GetValue(_method) ?? "", r.GetValue(_bits)!, r.GetValue(_group), r.GetValue(_symmetric), r.GetValue(_clip),
            r.GetValue(_options) ?? [], r.GetValue(_base), r.GetValue(_lambda), r.GetValue(_codistill), r.GetValue(_layers)!, r.GetValue(_head),
            r.GetValue(_embeddingBits), r.GetValue(_calibData)!, r.GetValue(_calibN), r.GetValue(_calibLen), Given(r, _calibLen), r.GetValue(_out), r.GetValue(_device)!,
            r.GetValue(_seed), r.GetValue(_resume), r.GetValue(_tokenizer),
            LmOnlyOptions.FirstOrDefault(o => Given(r, o))?.Name, _visionOptions.FirstOrDefault(o => Given(r, o))?.Name, r.GetValue(_gpus));
    }

    protected override int Run(QuantizeSettings s)
    {
        var config = s.Config;
        var registration = AlgorithmRegistry.Get(config.Method);
        bool matquant = registration.Name == MatQuantAlgorithm.MethodName;
        var (modelPath, outPath, resume) = (s.Model, s.Out!, s.Resume);
        var algorithm = AlgorithmRegistry.Create(config);
        int calibN = s.CalibN, calibLen = s.CalibLen, seed = s.Seed;
        var calibData = s.CalibData;

        var device = TorchRuntime.Configure(s.Device).Device;
        if (s.Gpus > 1 && !RankLauncher.IsRank)
            return RankLauncher.LaunchSelf(Console, s.Gpus, device,
                $"{(algorithm.LayerParallel ? "layer" : "data")}-parallel {registration.Name}; rank 0 writes {outPath}");
        device = Matq.Distributed.ProcessGroup.RankDevice(device);
        using var group = Matq.Distributed.ProcessGroup.FromEnvironment(device);
        // PTQ methods stream an HF folder block by block (LlamaBlockStream: one block in host/device memory at a time);
        // the others need the whole model resident, which is said with its size before the load.
        bool streamed = algorithm.Streams && Directory.Exists(modelPath);
        if (!algorithm.Streams && Directory.Exists(modelPath) && File.Exists(Path.Combine(modelPath, "config.json")))
            Console.MarkupLine($"[yellow]note:[/] {Markup.Escape(algorithm.Name)}{(matquant ? " with base qat" : "")} trains the whole model, so it is loaded resident: "
                + $"about {Format.Bytes(ResidentTrainingBytes(modelPath))} (fp32 weights, gradients and Adam moments, 16 bytes per parameter) plus activations; "
                + "the PTQ methods (rtn, gptq, athena, omniquant, matquant with --base athena|omniquant) stream one block at a time");
        var tokenizerOverride = s.Tokenizer;
        if (streamed && tokenizerOverride is not null) ArtifactSource.CheckTokenizerFolder(tokenizerOverride);
        using var stream = streamed ? LlamaBlockStream.Open(modelPath, device) : null;
        using var source = streamed ? null : ModelSource.Open(modelPath, device: device, tokenizer: tokenizerOverride);
        if (source?.Kind == ModelSourceKind.MatqArtifact)
            throw new MatqException($"--model {modelPath} is already a .matq artifact: quantize the float model it came from");
        var model = stream?.Model ?? source!.Model;
        string? tokenizerFolder = streamed ? tokenizerOverride ?? modelPath : source!.TokenizerFolder;
        // The default window is capped at the model's context; an explicit --calib-len longer than it is an error.
        if (!s.CalibLenGiven)
            calibLen = Math.Min(calibLen, model.Config.MaxPositionEmbeddings);
        if (registration.NeedsCalibration && calibLen > model.Config.MaxPositionEmbeddings)
            throw new MatqException($"--calib-len {calibLen} exceeds the model's {model.Config.MaxPositionEmbeddings} positions");
        var sourceDtypes = stream?.SourceDtypes ?? (source!.Kind == ModelSourceKind.HfFolder ? LlamaLoader.SourceDtypes(modelPath) : null);
        FloatTensorSource? floats = stream is not null ? stream.ReadSource
            : sourceDtypes is not null ? ArtifactExport.InSourceDtypes(model, sourceDtypes) : null;
        OutputPaths.CheckFreeSpace(outPath, 2 * ArtifactExport.EstimateBytes(model, config, sourceDtypes), "--out");   // staged, then written

        // rank 0 alone keeps the resume checkpoint (the ranks hold the same results)
        var checkpoint = group.IsRoot ? OpenCheckpoint(algorithm, model, modelPath, outPath, resume, registration.NeedsCalibration ? (calibData, calibN, calibLen) : null,
            seed, device.ToString()) : null;

        CalibrationTokens Calibration()
        {
            var tokenizer = TextTokenizer.Load(tokenizerFolder ?? source!.RequireTokenizerFolder());
            var ids = tokenizer.Encode(CalibrationText(calibData));
            return CalibrationTokens.Sample(ids, calibN, calibLen, seed);
        }

        // a streamed method without a checkpoint (rtn) keeps its finished codes in a temp file beside --out, not in memory
        using var spill = streamed && checkpoint is null && group.IsRoot ? new CodeSpill(outPath) : null;
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        System.Console.CancelKeyPress += onCancel;
        var sw = Stopwatch.StartNew();
        QuantizationResult run = null!;
        ArtifactExportResult written = null!;
        try
        {
            Console.Progress().AutoClear(true).Start(ctx =>
            {
                var task = ctx.AddTask($"{registration.Name} {config.Bits}-bit", maxValue: 1);
                var context = new QuantizationContext(model, device, registration.NeedsCalibration ? Calibration : null, seed,
                    e => { OnEvent(task, e); _observe?.Invoke(e); }, cts.Token) { Checkpoint = checkpoint, Blocks = stream, CodeSpill = spill, Group = group };
                run = QuantizationRunner.Run(algorithm, context);
                if (!group.IsRoot) return;   // the ranks hold identical results; rank 0 writes them
                task.Description = "writing artifact";
                written = ArtifactExport.Write(run, model, outPath, tokenizerFolder, floats, stream is null ? null : stream.StoredReader);
                task.Value = task.MaxValue;
            });
        }
        catch (Exception e) when (checkpoint is { BlocksDone: > 0 } && e is OperationCanceledException or MatqException)
        {
            Console.MarkupLine($"[yellow]{checkpoint.BlocksDone} finished block(s) are saved in {Markup.Escape(checkpoint.Folder)}: add --resume to continue[/]");
            throw;
        }
        finally
        {
            System.Console.CancelKeyPress -= onCancel;
        }
        if (!group.IsRoot)
        {
            Console.MarkupLine($"rank {group.Rank}: done; rank 0 writes {Markup.Escape(outPath)}");
            return 0;
        }
        // the artifact is written: its checkpoint (or a stale one of an earlier run for this --out) has no use left
        if (checkpoint is not null) checkpoint.Delete();
        else QuantizationCheckpoint.DeleteFor(outPath);
        WriteSummary(run, written, sw.Elapsed.TotalSeconds);
        return 0;
    }

    // Block-walking methods get a checkpoint: --resume opens it (settings checked, "resuming at block k/N"), otherwise
    // a fresh one replaces any earlier one (with a note). Other methods get none; an earlier one is noted and left until
    // this run's artifact is written.
    private QuantizationCheckpoint? OpenCheckpoint(QuantizationAlgorithm algorithm, Matq.Models.LlamaForCausalLM model, string modelPath, string outPath,
        bool resume, (string Data, int Count, int Length)? calibration, int seed, string device)
    {
        int blocks = LinearSelection.BlockCount(model, LinearSelection.Select(model, algorithm.Config));
        if (!resume && QuantizationCheckpoint.Exists(outPath))
            Console.MarkupLine($"[yellow]note:[/] {Markup.Escape(QuantizationCheckpoint.FolderFor(outPath))} holds an unfinished run "
                + $"({QuantizationCheckpoint.PeekBlocksDone(outPath)}/{blocks} blocks); "
                + (algorithm.SupportsResume ? "starting over replaces it (--resume would have continued it)" : "it is removed once this run's artifact is written"));
        if (!algorithm.SupportsResume) return null;
        var settings = QuantizationCheckpoint.RunSettings(algorithm, model, seed);
        settings.Add(new("model", Path.GetFullPath(modelPath)));
        settings.Add(new("model files", QuantizationCheckpoint.FileFingerprint(modelPath)));
        if (calibration is var (data, count, length))
        {
            settings.Add(new("calib-data", CalibNames.Contains(data) ? data : Path.GetFullPath(data) + " (" + QuantizationCheckpoint.FileFingerprint(data) + ")"));
            settings.Add(new("calib-n", count.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            settings.Add(new("calib-len", length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        settings.Add(new("device", device));
        if (!resume) return QuantizationCheckpoint.Create(outPath, settings);
        var checkpoint = QuantizationCheckpoint.Open(outPath, settings);
        Console.MarkupLine(checkpoint.BlocksDone >= blocks
            ? $"resuming: all {blocks} blocks are finished in {Markup.Escape(checkpoint.Folder)}; writing the artifact"
            : $"resuming at block {checkpoint.BlocksDone + 1}/{blocks} ({checkpoint.BlocksDone} finished block(s) restored from {Markup.Escape(checkpoint.Folder)})");
        return checkpoint;
    }

    // QAT-style training memory: every parameter in fp32 with its gradient and two Adam moments (config.json only).
    private static long ResidentTrainingBytes(string folder) => HfLlamaConfig.Read(folder).ParameterCount() * 16;

    private static void OnEvent(ProgressTask task, QuantizationEvent e)
    {
        task.MaxValue = Math.Max(1, e.LayerCount);
        task.Value = e.LayersDone;
        string block = $"block {e.Block + 1}/{e.BlockCount}";
        task.Description = e.Kind switch
        {
            QuantizationEventKind.LayerDone => $"{block} · {Markup.Escape(e.Report!.Name)}",
            QuantizationEventKind.Message => $"{block} · {Markup.Escape(e.Message ?? "")}",
            _ => block,
        };
    }

    private string CalibrationText(string name) => name switch
    {
        "sotu-train" => _data().Sotu().Text(DataSplit.Train),
        "sotu-validation" => _data().Sotu().Text(DataSplit.Validation),
        "sotu-test" => _data().Sotu().Text(DataSplit.Test),
        "moby-dick" => _data().MobyDick(),
        _ => File.ReadAllText(name),
    };

    private void WriteSummary(QuantizationResult run, ArtifactExportResult written, double seconds)
    {
        bool hessian = run.Layers.Any(l => l.Report.HessianErrorBefore is not null || l.Report.HessianErrorAfter is not null);
        var table = new Table().Border(TableBorder.Rounded).Title($"[bold]{run.Algorithm}[/] {run.MasterBits}-bit, "
            + (run.Config.PerChannel ? "per-channel" : $"group {run.Config.GroupSize}") + (run.Config.Symmetric ? ", symmetric" : ""));
        table.AddColumns("layer", "shape", "bits", "weight MSE");
        if (hessian) table.AddColumns("H-error before", "H-error after");
        table.AddColumn("time");
        foreach (var r in run.Layers.Select(l => l.Report))
        {
            var cells = new List<string> { Markup.Escape(r.Name), $"{r.OutFeatures}×{r.InFeatures}", r.Bits.ToString(), $"{r.WeightMse:E3}" };
            if (hessian) cells.AddRange([Optional(r.HessianErrorBefore), Optional(r.HessianErrorAfter)]);
            cells.Add($"{r.Seconds:F2} s");
            table.AddRow(cells.ToArray());
        }
        Console.Write(table);
        double meanMse = run.Layers.Sum(l => l.Report.WeightMse * l.OutFeatures * (double)l.InFeatures) / Math.Max(1, run.Layers.Sum(l => (double)l.OutFeatures * l.InFeatures));
        if (!run.Config.Layers.IsAll)
            Console.MarkupLine($"--layers {Markup.Escape(run.Config.Layers.Text)}: the other linears stay float in the artifact");
        Console.MarkupLine($"{run.Layers.Count} layers, mean weight MSE {meanMse:E3}, quantize {run.Seconds:F1} s, total {seconds:F1} s");
        if (written.Embedding is { } e)
            Console.MarkupLine($"embedding {e.OutFeatures}×{e.InFeatures} stored as {e.Bits}-bit codes (min-max grid, weight MSE {e.WeightMse:E3}, {e.Seconds:F1} s)");
        Console.MarkupLine($"wrote [bold]{Markup.Escape(written.Path)}[/] ({Format.Bytes(written.Bytes)})"
            + (written.TokenizerFolder is null ? " [yellow](no tokenizer files found to copy)[/]" : $" + tokenizer {Markup.Escape(written.TokenizerFolder)}"));
    }

    private static string Optional(double? v) => v is double d ? $"{d:E3}" : "-";
}

/// <summary>What `quantize` was asked: the option values as typed, whether --calib-len was given, and the first LM-only and vision
/// option given explicitly (for the one-line pointer to `matq quantize-cnn`); <see cref="Validate"/> checks the method, bits, options,
/// paths, --resume, calibration and --device (one line per mistake) before a model load or a dataset fetch.</summary>
public sealed record QuantizeSettings(string Model, string Method, string Bits, int Group, bool Symmetric, string? Clip, string[] Options, string? Base,
    string? Lambda, string? Codistill, string Layers, bool IncludeHead, int? EmbeddingBits, string CalibData, int CalibN, int CalibLen, bool CalibLenGiven, string? Out,
    string Device, int Seed, bool Resume, string? Tokenizer, string? GivenLmOption, string? GivenVisionOption, int Gpus = 1) : IVerbSettings
{
    /// <summary>The method's config: method, master bits (int8 for a MatQuant list of widths), group, options and layers.</summary>
    public QuantizationConfig Config
    {
        get
        {
            var registration = AlgorithmRegistry.Get(Method.Trim().ToLowerInvariant());
            var bits = CommonOptions.ParseBits(Bits);
            var options = ParseOptions(Options, Clip, registration);
            bool matquant = registration.Name == MatQuantAlgorithm.MethodName;
            foreach (var (value, key) in new[] { (Base, MatQuantConfig.BaseKey), (Lambda, MatQuantConfig.LambdaKey), (Codistill, MatQuantConfig.CodistillKey) })
            {
                if (value is null) continue;
                if (!matquant) throw new MatqException($"--{key} applies to --method matquant, not '{registration.Name}'");
                if (!options.TryAdd(key, value)) throw new MatqException($"--{key} and --option {key}=... are both given; use one");
            }
            int master = bits[0];
            if (bits.Length > 1)
            {
                // matquant: a list is the nested widths R, stored as int8 master codes (c = 8)
                if (!matquant)
                    throw new MatqException($"--bits {Bits}: {registration.Name} takes one master bit-width (serve lower widths from the artifact with --bits at load)");
                if (!options.TryAdd(MatQuantConfig.BitsKey, string.Join(",", bits)))
                    throw new MatqException("--bits with several widths and --option bits=... are both given; use one");
                master = 8;
            }
            return new QuantizationConfig(registration.Name, master, CommonOptions.CheckGroup(Group), Symmetric, IncludeHead, options,
                layers: LayerFilter.Parse(Layers), embeddingBits: EmbeddingBits);
        }
    }

    public void Validate()
    {
        // Cheap checks first: a bad method, option or path fails before a model load or a dataset fetch.
        string method = Method.Trim().ToLowerInvariant();
        RejectVision(method);
        var config = Config;
        var registration = AlgorithmRegistry.Get(config.Method);
        bool matquant = registration.Name == MatQuantAlgorithm.MethodName;
        var outPath = Out
            ?? throw new MatqException("--out is required to quantize a language model: the .matq artifact to write (e.g. --out out/model.matq)");
        if (!Directory.Exists(Model) && !File.Exists(Model))
            throw new MatqException($"--model {Model} does not exist (give an HF model folder)");
        if (Directory.Exists(outPath)) throw new MatqException($"--out {outPath} is a folder: give a file path, e.g. {Path.Combine(outPath, "model.matq")}");
        // Before any compute: never write over (or into) the input, and fail now, not after minutes, on an unwritable --out.
        OutputPaths.CheckFile(outPath, "--out", Model);
        OutputPaths.CheckNotInput(ArtifactExport.TokenizerFolderFor(outPath), "--out", Model);
        var algorithm = AlgorithmRegistry.Create(config);   // the method's own options are checked here, before the load
        if (Gpus < 1) throw new MatqException($"--gpus {Gpus}: give 1 or more");
        if (Gpus > 1 && algorithm.Streams && !algorithm.LayerParallel)
            throw new MatqException($"--gpus {Gpus} with {algorithm.Name}: spreading it over several GPUs is not implemented; run it on one GPU (--gpus applies to gptq, athena, matquant --base athena (layer-parallel) and to matquant --base qat, efqat (data-parallel))");
        if (Gpus > 1 && Resume) throw new MatqException("--gpus with --resume is not implemented: resume on one GPU, or run without --resume");
        if (Resume && !algorithm.SupportsResume)
            throw new MatqException($"--resume: {algorithm.Name}{(matquant ? " with base " + config.Options.GetValueOrDefault(MatQuantConfig.BaseKey, "qat") : "")} does not walk the model block by block, so it has no checkpoint to continue; methods that resume: {QuantizationCheckpoint.ResumableMethods}");
        if (Resume && !QuantizationCheckpoint.Exists(outPath))
            throw new MatqException($"--resume: no checkpoint for --out {outPath} (expected {QuantizationCheckpoint.FolderFor(outPath)}); run without --resume to start");
        if (registration.NeedsCalibration)
        {
            if (CalibN < 1) throw new MatqException($"--calib-n {CalibN} is out of range: at least 1");
            if (CalibLen < 2) throw new MatqException($"--calib-len {CalibLen} is out of range: at least 2");
            if (!QuantizeVerb.CalibNames.Contains(CalibData) && !File.Exists(CalibData))
                throw new MatqException($"--calib-data '{CalibData}' is neither a dataset ({string.Join(", ", QuantizeVerb.CalibNames)}) nor an existing file");
        }
        TorchRuntime.Check(Device);
    }

    // Vision folders, vision methods and the vision branch's options belong to `matq quantize-cnn`: one line saying so.
    private void RejectVision(string method)
    {
        var vision = VisionQuantizeSettings.Methods.Where(m => !AlgorithmRegistry.Contains(m)).ToArray();   // efqat is both
        if (!AlgorithmRegistry.Contains(method) && !vision.Contains(method))
            throw new MatqException($"method '{Method}' is not known: choose one of {string.Join(", ", AlgorithmRegistry.Names)} (language models); "
                + $"{string.Join(", ", VisionQuantizeSettings.Methods)} (vision models) are methods of `matq quantize-cnn`");
        if (VisionNetIO.IsVisionFolder(Model))
        {
            if (VisionQuantizeSettings.Methods.Contains(method) && GivenLmOption is { } lm)
                throw new MatqException($"{lm} applies to LM quantization (HF models), not to --method {method} on a vision model: quantize vision models with `matq quantize-cnn`");
            throw new MatqException($"--model {Model} is a vision model (written by `matq train cnn`): quantize it with --method efqat or maqd (or ptq, qat) "
                + $"of `matq quantize-cnn --model {Model}`; `matq quantize` quantizes language models");
        }
        if (vision.Contains(method))
            throw new MatqException($"--method {method} needs a vision model folder written by `matq train cnn` and is a method of `matq quantize-cnn --model DIR --method {method}`; "
                + "`matq quantize` quantizes language models");
        if (GivenVisionOption is { } v)
            throw new MatqException($"{v} applies to the vision methods of `matq quantize-cnn` (a folder written by `matq train cnn`), not to --method {method}");
    }

    // --clip is rtn's dedicated flag; --option KEY=VALUE carries any method's settings (keys checked by the config).
    private static Dictionary<string, string> ParseOptions(string[] pairs, string? clip, AlgorithmRegistration registration)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0) throw new MatqException($"--option '{pair}' is not KEY=VALUE (e.g. --option clip=mse)");
            if (!options.TryAdd(pair[..eq].Trim(), pair[(eq + 1)..].Trim()))
                throw new MatqException($"--option {pair[..eq].Trim()} is given twice");
        }
        if (clip is not null)
        {
            if (!registration.Options.Any(o => o.Key == "clip"))
                throw new MatqException($"--clip applies to methods with a clip setting (rtn); '{registration.Name}' has none");
            if (options.ContainsKey("clip")) throw new MatqException("--clip and --option clip=... are both given; use one");
            options["clip"] = clip;
        }
        return options;
    }
}
