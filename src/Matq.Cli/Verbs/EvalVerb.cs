// `matq eval`: sliding-window perplexity and bits per byte of a model on a dataset or text file, as a table.
using System.Diagnostics;
using Matq.Data;
using Matq.Evaluation;
using Matq.Loading;
using Matq.Runtime;
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

    public override string Name => "eval";
    public override string Description => "Perplexity and bits per byte of a language model on SOTU, Moby-Dick or a text file (sliding windows)";
    public override IReadOnlyList<string> Examples =>
    [
        "matq eval --model models/tiny --data sotu-validation",
        "matq eval --model models/tiny --data moby-dick --context 256 --stride 128",
        "matq eval --model models/small --data notes.txt --device cuda --max-tokens 20000",
        "matq eval --model out/tiny-rtn8.matq --bits 8,4,3,2 --data sotu-test",
        "matq eval --model out/tiny-rtn8.matq --plan plan.json --extra-precision",
    ];

    protected override IEnumerable<Option> Options => [_model, _dataOpt, _context, _stride, _batch, _device, _maxTokens, _bits, _plan, _extra, _tokenizer];

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
}
