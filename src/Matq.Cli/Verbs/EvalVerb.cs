// `matq eval`: sliding-window perplexity and bits per byte of a model on a dataset or text file, as a table.
// Engines: a .matq is scored on the packed CPU runtime (memory-mapped, r-bit kernels, no TorchSharp: host memory is
// about the r-bit weights plus the embedding as stored) unless --engine torch, --extra-precision or --device cuda picks
// the TorchSharp model, which dequantizes every weight to fp32 (host memory about 4 bytes per parameter); float models
// always run on TorchSharp. Both engines score the same windows and tokens.
using System.Diagnostics;

namespace Matq.Cli.Verbs;

public sealed class EvalVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<EvalSettings>(console, "eval",
    "Perplexity and bits per byte of a language model on SOTU, Moby-Dick or a text file (sliding windows)",
    "matq eval --model models/tiny --data sotu-validation",
    "matq eval --model models/tiny --data moby-dick --context 256 --stride 128",
    "matq eval --model models/small --data notes.txt --device cuda --max-tokens 20000",
    "matq eval --model out/tiny-rtn8.matq --bits 8,4,3,2 --data sotu-test",
    "matq eval --model out/tiny-rtn8.matq --plan plan.json --extra-precision",
    "matq eval --model out/tiny-rtn8.matq --bits 4 --engine torch --device cuda")
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

    protected override IEnumerable<Option> Options => [_model, _dataOpt, _context, _stride, _batch, _device, _maxTokens, _bits, _plan, _extra, _tokenizer, _engine, _threads, _head];

    protected override EvalSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_dataOpt)!, r.GetValue(_context), r.GetValue(_stride),
        r.GetValue(_batch), r.GetValue(_device)!, r.GetValue(_maxTokens), r.GetValue(_bits), r.GetValue(_plan), r.GetValue(_extra), r.GetValue(_tokenizer),
        r.GetValue(_engine)!, r.GetValue(_threads), r.GetValue(_head)!, _data);

    protected override int Run(EvalSettings s)
    {
        if (GenerateVerb.UsePackedEngine(s.Engine, s.Model, s.ExtraPrecision, s.Device))
            return RunPacked(s);
        if (s.Head != "fp32") throw new MatqException("--head applies to the packed engine; drop it with --engine torch or float models");
        var options = s.Perplexity;
        int? maxTokens = s.MaxTokens;
        var (dataName, modelPath, plan) = (s.Data, s.Model, s.Plan);
        var bitsList = s.BitsList;
        var device = TorchRuntime.Configure(s.Device).Device;
        EvalSet? set = null;
        var table = new ScoreTable(bitsList);
        string? description = null;
        foreach (var bits in bitsList)
        {
            using var lm = LanguageModelSource.Open(modelPath, device, new ServingRequest(bits, plan, s.ExtraPrecision, s.Tokenizer));
            if (options.Context > lm.ContextLength)
                throw new MatqException($"--context {options.Context} exceeds the model's context of {lm.ContextLength} tokens");
            if (set is null)   // every bit-width of one artifact shares its tokenizer: encode once
            {
                var (label, text) = EvalTexts.Resolve(dataName, _data);
                set = EvalSet.Tokenize(dataName, label, text, lm.Tokenizer, maxTokens);
            }
            var (tokens, bytes) = (set.Tokens, set.Bytes);
            description ??= bitsList.Length > 1 && lm.Served is { } first
                ? lm.Description.Replace($"served at {first.Bits} bits", "served at the bits below", StringComparison.Ordinal) : lm.Description;
            table.Score(Console, set, options, $"scoring {tokens.Length:N0} tokens" + (lm.Served is { } sv ? $" at {sv.Bits} bits" : ""),
                lm.Served is { } served ? $"{served.Bits}" + (served.ExtraPrecision ? $" (paper {served.MeanPaperBits:F3}, stored {served.MeanEffectiveBits:F3} escape / {served.MeanSparseBits:F3} sparse)" : "") : "-",
                progress => Perplexity.Evaluate(lm.Module, tokens, bytes, options, device, progress));
        }
        table.Write(Console, description!);
        return 0;
    }

    // The packed engine: each --bits row loads the artifact through the memory map (one tensor at a time) and scores it.
    private int RunPacked(EvalSettings s)
    {
        var (options, maxTokens, dataName, modelPath, bitsList, planPath) = (s.Perplexity, s.MaxTokens, s.Data, s.Model, s.BitsList, s.Plan);
        int threads = PackedOptions.CheckThreads(s.Threads);
        int? headBits = PackedOptions.ParseHead(s.Head);
        var serving = new ServingRequest(null, planPath, false, s.Tokenizer);
        var (_, plan) = serving.Resolve();
        EvalSet? set = null;
        var table = new ScoreTable(bitsList);
        string? description = null;
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
            table.Score(Console, set, options, $"scoring {tokens.Length:N0} tokens at {model.Bits} bits (packed)", $"{model.Bits}",
                progress => Perplexity.EvaluatePacked(session, tokens, bytes, options, progress));
        }
        table.Write(Console, description!);
        return 0;
    }

    // The table both engines fill: a bits column when bits were asked for, one row per served width; the data caption
    // comes from the first row's result.
    private sealed class ScoreTable
    {
        private readonly Table _table = new Table().Border(TableBorder.Rounded);
        private readonly bool _bitsColumn;
        private string? _caption;

        public ScoreTable(int?[] bitsList)
        {
            _bitsColumn = bitsList.Length > 1 || bitsList[0] is not null;
            if (_bitsColumn) _table.AddColumn("bits");
            _table.AddColumns("tokens", "NLL (nats)", "loss/token", "perplexity", "bits/byte", "time");
        }

        /// <summary>Runs <paramref name="score"/> under a progress bar labelled <paramref name="label"/> and adds its row.</summary>
        public void Score(IAnsiConsole console, EvalSet set, PerplexityOptions options, string label, string bitsCell,
            Func<Action<int, int>, PerplexityResult> score)
        {
            var sw = Stopwatch.StartNew();
            PerplexityResult r = null!;
            console.Progress().AutoClear(true).Start(ctx =>
            {
                var task = ctx.AddTask(label, maxValue: 1);
                r = score((done, total) => { task.MaxValue = total; task.Value = done; });
            });
            _caption ??= $"{set.Label}, {r.Bytes:N0} UTF-8 bytes, context {options.Context} / stride {options.Stride}, {r.Windows:N0} windows";
            var cells = new List<string>();
            if (_bitsColumn) cells.Add(bitsCell);
            cells.AddRange([$"{r.Tokens:N0}", $"{r.TotalNll:F1}", $"{r.MeanNll:F4}", $"[bold]{r.Perplexity:F3}[/]", $"[bold]{r.BitsPerByte:F4}[/]",
                $"{sw.Elapsed.TotalSeconds:F1} s"]);
            _table.AddRow(cells.ToArray());
        }

        // Model and data on their own lines keep the numeric table narrow enough for an 80-column terminal.
        public void Write(IAnsiConsole console, string description)
        {
            console.MarkupLine($"model: {Markup.Escape(description)}");
            console.MarkupLine($"data:  {Markup.Escape(_caption!)}");
            console.Write(_table);
        }
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

/// <summary>What `eval` was asked: the option values as typed and the dataset store; <see cref="Validate"/> checks the windows, --max-tokens, --bits,
/// --data, --model, --plan and --device (one line per mistake) before a dataset fetch or a model load.</summary>
public sealed record EvalSettings(string Model, string Data, int Context, int Stride, int Batch, string Device, int? MaxTokens, string? Bits,
    string? Plan, bool ExtraPrecision, string? Tokenizer, string Engine, int Threads, string Head, Func<DataStore> DataStore) : IVerbSettings
{
    public PerplexityOptions Perplexity => new() { Context = Context, Stride = Stride, Batch = Batch };

    /// <summary>The served bit-widths, one table row each; [null] = the model as stored (a .matq at its master bits).</summary>
    public int?[] BitsList => Bits is string b ? CommonOptions.ParseBits(b).Select(x => (int?)x).ToArray() : [null];

    /// <summary>Checks everything; <see cref="DataStore"/> is only asked for a name that is neither a dataset nor a file (to say so).</summary>
    public void Validate()
    {
        Perplexity.Validate();
        if (MaxTokens is < 2) throw new MatqException($"--max-tokens {MaxTokens} is out of range: at least 2");
        _ = BitsList;
        if (!EvalTexts.Names.Contains(Data) && !File.Exists(Data))
            EvalTexts.Resolve(Data, DataStore);
        if (!Directory.Exists(Model) && !File.Exists(Model))
            throw new MatqException($"--model {Model} does not exist");
        if (Plan is not null) BitPlan.Load(Plan);
        PackedOptions.CheckThreads(Threads);
        PackedOptions.ParseHead(Head);
        TorchRuntime.Check(Device);
        GenerateVerb.UsePackedEngine(Engine, Model, ExtraPrecision, Device);   // a bad --engine or an impossible combination
    }
}
