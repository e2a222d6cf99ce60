// `matq eval`: sliding-window perplexity and bits per byte of a model on a dataset or text file, as a table.
// Engines: a .matq is scored on the packed CPU runtime (memory-mapped, r-bit kernels, no TorchSharp: host memory is
// about the r-bit weights plus the embedding as stored) unless --engine torch, --extra-precision or --device cuda picks
// the TorchSharp model, which dequantizes every weight to fp32 (host memory about 4 bytes per parameter); float models
// always run on TorchSharp. Both engines score the same windows and tokens.
using System.Diagnostics;
using Matq.Data;
using Matq.Evaluation;
using Matq.Loading;
using Matq.Runtime;
using Matq.Runtime.Loading;
using Matq.Runtime.Packed;
using Matq.Runtime.Plans;

namespace Matq.Cli.Verbs;

public sealed class EvalVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb(console)
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _dataOpt = CommonOptions.Data("sotu-test");
    private readonly Option<int> _context = new("--context") { Description = "Tokens per window", DefaultValueFactory = _ => 256, HelpName = "C" };
    private readonly Option<int> _stride = new("--stride") { Description = "Window step; each window after the first scores its last STRIDE tokens", DefaultValueFactory = _ => 128, HelpName = "S" };
    private readonly Option<int> _batch = new("--batch") { Description = "Windows per forward pass", DefaultValueFactory = _ => 8, HelpName = "B" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int?> _maxTokens = new("--max-tokens") { Description = "Evaluate only the first N tokens of the text", HelpName = "N" };
    private readonly Option<string?> _bits = new("--bits") { Description = "For a .matq: serve at these bits, comma-separated (one row each), each in 1..master; default the master bits", HelpName = "R[,R...]" };
    private readonly Option<string?> _plan = CommonOptions.Plan();
    private readonly Option<bool> _extra = CommonOptions.ExtraPrecision();

    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();
    private readonly Option<string> _engine = new("--engine")
    {
        Description = "auto (packed for a .matq, torch otherwise), packed (memory-mapped r-bit CPU kernels; host memory ≈ r-bit weights + embedding as stored) or torch (fp32 TorchSharp model; ≈ 4 bytes per parameter)",
        DefaultValueFactory = _ => "auto",
        HelpName = "auto|packed|torch",
    };
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = new("--head", "--head-bits")
    {
        Description = "Packed engine: the lm_head as stored (fp32: the artifact's head, bf16/f16 kept as stored and widened per tile), or RTN-quantized at load to B bits (groups of 128; a tied embedding shares it)",
        DefaultValueFactory = _ => "fp32",
        HelpName = "fp32|B",
    };

    public override string Name => "eval";
    public override string Description => "Perplexity and bits per byte of a language model on SOTU, Moby-Dick or a text file (sliding windows)";
    public override IReadOnlyList<string> Examples =>
    [
        "matq eval --model models/tiny --data sotu-validation",
        "matq eval --model models/tiny --data moby-dick --context 256 --stride 128",
        "matq eval --model models/small --data notes.txt --device cuda --max-tokens 20000",
        "matq eval --model out/tiny-rtn8.matq --bits 8,4,3,2 --data sotu-test",
        "matq eval --model out/tiny-rtn8.matq --plan plan.json --extra-precision",
        "matq eval --model out/tiny-rtn8.matq --bits 4 --engine torch --device cuda",
    ];

    protected override IEnumerable<Option> Options => [_model, _dataOpt, _context, _stride, _batch, _device, _maxTokens, _bits, _plan, _extra, _tokenizer, _engine, _threads, _head];

    protected override int Execute(ParseResult result)
    {
        var options = new PerplexityOptions { Context = result.GetValue(_context), Stride = result.GetValue(_stride), Batch = result.GetValue(_batch) };
        options.Validate();
        int? maxTokens = result.GetValue(_maxTokens);
        if (maxTokens is < 2) throw new MatqException($"--max-tokens {maxTokens} is out of range: at least 2");
        var dataName = result.GetValue(_dataOpt)!;
        var modelPath = result.GetValue(_model)!;
        int?[] bitsList = result.GetValue(_bits) is string b ? CommonOptions.ParseBits(b).Select(x => (int?)x).ToArray() : [null];
        var plan = result.GetValue(_plan);
        bool extra = result.GetValue(_extra);
        // Cheap checks first: a bad --data, --model or --plan fails before a dataset fetch or a model load.
        if (!EvalTexts.Names.Contains(dataName) && !File.Exists(dataName))
            EvalTexts.Resolve(dataName, _data);
        if (!Directory.Exists(modelPath) && !File.Exists(modelPath))
            throw new MatqException($"--model {modelPath} does not exist");
        if (plan is not null) BitPlan.Load(plan);
        int threads = PackedOptions.CheckThreads(result.GetValue(_threads));
        int? headBits = PackedOptions.ParseHead(result.GetValue(_head)!);
        if (GenerateVerb.UsePackedEngine(result.GetValue(_engine)!, modelPath, extra, result.GetValue(_device)!))
            return ExecutePacked(result, options, maxTokens, dataName, modelPath, bitsList, plan, threads, headBits);
        if (result.GetValue(_head) != "fp32") throw new MatqException("--head applies to the packed engine; drop it with --engine torch or float models");

        var device = TorchRuntime.Configure(result.GetValue(_device)).Device;
        EvalSet? set = null;
        var table = new Table().Border(TableBorder.Rounded);
        if (bitsList.Length > 1 || bitsList[0] is not null) table.AddColumn("bits");
        table.AddColumns("tokens", "NLL (nats)", "loss/token", "perplexity", "bits/byte", "time");
        string? description = null, caption = null;
        foreach (var bits in bitsList)
        {
            using var lm = LanguageModelSource.Open(modelPath, device, new ServingRequest(bits, plan, extra, result.GetValue(_tokenizer)));
            if (options.Context > lm.ContextLength)
                throw new MatqException($"--context {options.Context} exceeds the model's context of {lm.ContextLength} tokens");
            if (set is null)   // every bit-width of one artifact shares its tokenizer: encode once
            {
                var (label, text) = EvalTexts.Resolve(dataName, _data);
                set = EvalSet.Tokenize(dataName, label, text, lm.Tokenizer, maxTokens);
            }
            var (tokens, bytes) = (set.Tokens, set.Bytes);
            var sw = Stopwatch.StartNew();
            PerplexityResult r = null!;
            Console.Progress().AutoClear(true).Start(ctx =>
            {
                var task = ctx.AddTask($"scoring {tokens.Length:N0} tokens" + (lm.Served is { } s ? $" at {s.Bits} bits" : ""), maxValue: 1);
                r = Perplexity.Evaluate(lm.Module, tokens, bytes, options, device, (done, total) => { task.MaxValue = total; task.Value = done; });
            });
            description ??= bitsList.Length > 1 && lm.Served is { } first
                ? lm.Description.Replace($"served at {first.Bits} bits", "served at the bits below", StringComparison.Ordinal) : lm.Description;
            caption ??= $"{set.Label}, {r.Bytes:N0} UTF-8 bytes, context {options.Context} / stride {options.Stride}, {r.Windows:N0} windows";
            var cells = new List<string>();
            if (table.Columns.Count == 7) cells.Add(lm.Served is { } served ? $"{served.Bits}" + (served.ExtraPrecision ? $" (paper {served.MeanPaperBits:F3}, stored {served.MeanEffectiveBits:F3} escape / {served.MeanSparseBits:F3} sparse)" : "") : "-");
            cells.AddRange([$"{r.Tokens:N0}", $"{r.TotalNll:F1}", $"{r.MeanNll:F4}", $"[bold]{r.Perplexity:F3}[/]", $"[bold]{r.BitsPerByte:F4}[/]",
                $"{sw.Elapsed.TotalSeconds:F1} s"]);
            table.AddRow(cells.ToArray());
        }
        // Model and data on their own lines keep the numeric table narrow enough for an 80-column terminal.
        Console.MarkupLine($"model: {Markup.Escape(description!)}");
        Console.MarkupLine($"data:  {Markup.Escape(caption!)}");
        Console.Write(table);
        return 0;
    }

    // The packed engine: each --bits row loads the artifact through the memory map (one tensor at a time) and scores it.
    private int ExecutePacked(ParseResult result, PerplexityOptions options, int? maxTokens, string dataName, string modelPath, int?[] bitsList,
        string? planPath, int threads, int? headBits)
    {
        var serving = new ServingRequest(null, planPath, false, result.GetValue(_tokenizer));
        var (_, plan) = serving.Resolve();
        EvalSet? set = null;
        var table = new Table().Border(TableBorder.Rounded);
        if (bitsList.Length > 1 || bitsList[0] is not null) table.AddColumn("bits");
        table.AddColumns("tokens", "NLL (nats)", "loss/token", "perplexity", "bits/byte", "time");
        string? description = null, caption = null;
        foreach (var requested in bitsList)
        {
            var (bits, _) = new ServingRequest(requested, planPath, false, null).Resolve();
            var model = PackedLlamaModel.Load(modelPath, new PackedModelOptions { Bits = bits, Plan = plan, HeadBits = headBits });
            var session = new PackedLlamaSession(model, contextLength: options.Context, threads: threads, activations: PackedActivations.Fp32);
            if (options.Context > model.MaxPositions)
                throw new MatqException($"--context {options.Context} exceeds the model's context of {model.MaxPositions} tokens");
            if (set is null)
            {
                var tokenizer = ArtifactSource.LoadArtifactTokenizer(modelPath, model.Metadata, model.Config.VocabSize, serving.Tokenizer);
                var (label, text) = EvalTexts.Resolve(dataName, _data);
                set = EvalSet.Tokenize(dataName, label, text, tokenizer, maxTokens);
                description = Describe(modelPath, model, tokenizer.Name, bitsList.Length > 1, threads);
            }
            var (tokens, bytes) = (set.Tokens, set.Bytes);
            var sw = Stopwatch.StartNew();
            PerplexityResult r = null!;
            Console.Progress().AutoClear(true).Start(ctx =>
            {
                var task = ctx.AddTask($"scoring {tokens.Length:N0} tokens at {model.Bits} bits (packed)", maxValue: 1);
                r = Perplexity.EvaluatePacked(session, tokens, bytes, options, (done, total) => { task.MaxValue = total; task.Value = done; });
            });
            caption ??= $"{set.Label}, {r.Bytes:N0} UTF-8 bytes, context {options.Context} / stride {options.Stride}, {r.Windows:N0} windows";
            var cells = new List<string>();
            if (table.Columns.Count == 7) cells.Add($"{model.Bits}");
            cells.AddRange([$"{r.Tokens:N0}", $"{r.TotalNll:F1}", $"{r.MeanNll:F4}", $"[bold]{r.Perplexity:F3}[/]", $"[bold]{r.BitsPerByte:F4}[/]",
                $"{sw.Elapsed.TotalSeconds:F1} s"]);
            table.AddRow(cells.ToArray());
        }
        Console.MarkupLine($"model: {Markup.Escape(description!)}");
        Console.MarkupLine($"data:  {Markup.Escape(caption!)}");
        Console.Write(table);
        return 0;
    }

    // As the torch engine words it (ModelSource.Describe + the plan note), then the packed engine's own facts.
    private static string Describe(string path, PackedLlamaModel model, string tokenizer, bool severalBits, int threads)
    {
        var c = model.Config;
        var md = model.Metadata;
        var name = Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar));
        var served = severalBits ? "served at the bits below" : $"served at {model.Bits} bits";
        var quantized = model.Layers.SelectMany(l => l.Linears).Concat(md.Quantized.Any(q => q.Name == "lm_head.weight") ? [model.Head] : []).ToList();
        int moved = quantized.Count(l => l.Bits != model.Bits);
        var plan = moved == 0 || severalBits ? "" : $"; plan: {moved} of {quantized.Count} layers at other bits, mean {model.MeanLayerBits:F3} bits/weight";
        var head = model.Head.Packed is not null ? $"{model.Head.Bits}-bit head" : model.Head.Stored is { } s ? $"{SafetensorsName(s)} head as stored" : "fp32 head";
        return $"{name}: {c.Family} {c.ParameterCount():N0} params, {c.NumLayers} layers, {md.Algorithm} {md.MasterBits}-bit master {served}, hidden {c.HiddenSize}, vocab {c.VocabSize} ({tokenizer}){plan}"
            + $"; packed engine (memory-mapped load), {head}, {(threads < 0 ? Environment.ProcessorCount : threads)} thread(s)";
    }

    private static string SafetensorsName(StoredRows s) => Matq.Formats.Safetensors.SafetensorsDtypes.ToName(s.Dtype).ToLowerInvariant();
}
