// `matq eval`: sliding-window perplexity and bits per byte of a model on a dataset or text file, as a table.
using System.CommandLine;
using System.Diagnostics;
using System.Text;
using Matq.Cli.Common;
using Matq.Data;
using Matq.Evaluation;
using Matq.Runtime;
using Spectre.Console;

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

    public override string Name => "eval";
    public override string Description => "Perplexity and bits per byte of a language model on SOTU, Moby-Dick or a text file (sliding windows)";
    public override IReadOnlyList<string> Examples =>
    [
        "matq eval --model models/tiny --data sotu-validation",
        "matq eval --model models/tiny --data moby-dick --context 256 --stride 128",
        "matq eval --model models/small --data notes.txt --device cuda --max-tokens 20000",
    ];

    protected override void Configure(Command command)
    {
        foreach (var o in new Option[] { _model, _dataOpt, _context, _stride, _batch, _device, _maxTokens })
            command.Options.Add(o);
    }

    protected override int Execute(ParseResult result)
    {
        var options = new PerplexityOptions { Context = result.GetValue(_context), Stride = result.GetValue(_stride), Batch = result.GetValue(_batch) };
        options.Validate();
        int? maxTokens = result.GetValue(_maxTokens);
        if (maxTokens is < 2) throw new MatqException($"--max-tokens {maxTokens} is out of range: at least 2");
        var dataName = result.GetValue(_dataOpt)!;
        var modelPath = result.GetValue(_model)!;
        // Cheap checks first: a bad --data or --model fails before a dataset fetch or a model load.
        if (!EvalTexts.Names.Contains(dataName) && !File.Exists(dataName))
            EvalTexts.Resolve(dataName, _data);
        if (!Directory.Exists(modelPath) && !modelPath.EndsWith(".matq", StringComparison.OrdinalIgnoreCase))
            throw new MatqException($"--model {modelPath} does not exist");

        var device = TorchDevices.Resolve(result.GetValue(_device));
        using var lm = LanguageModelSource.Open(modelPath, device);
        if (options.Context > lm.ContextLength)
            throw new MatqException($"--context {options.Context} exceeds the model's context of {lm.ContextLength} tokens");
        var (label, text) = EvalTexts.Resolve(dataName, _data);
        var ids = lm.Tokenizer.Encode(text);
        long bytes = Encoding.UTF8.GetByteCount(text);
        if (maxTokens is int m && m < ids.Length)
        {
            ids = ids[..m];
            bytes = Encoding.UTF8.GetByteCount(lm.Tokenizer.Decode(ids));   // the bytes these tokens actually cover
        }
        var sw = Stopwatch.StartNew();
        PerplexityResult r = null!;
        Console.Progress().AutoClear(true).Start(ctx =>
        {
            var task = ctx.AddTask($"scoring {ids.Length:N0} tokens", maxValue: 1);
            r = Perplexity.Evaluate(lm.Module, ids, bytes, options, device, (done, total) => { task.MaxValue = total; task.Value = done; });
        });
        // Model and data on their own lines keep the numeric table narrow enough for an 80-column terminal.
        Console.MarkupLine($"model: {Markup.Escape(lm.Description)}");
        Console.MarkupLine($"data:  {Markup.Escape(label)}, {r.Bytes:N0} UTF-8 bytes, context {options.Context} / stride {options.Stride}, {r.Windows:N0} windows");
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumns("tokens", "NLL (nats)", "loss/token", "perplexity", "bits/byte", "time");
        table.AddRow($"{r.Tokens:N0}", $"{r.TotalNll:F1}", $"{r.MeanNll:F4}", $"[bold]{r.Perplexity:F3}[/]", $"[bold]{r.BitsPerByte:F4}[/]",
            $"{sw.Elapsed.TotalSeconds:F1} s");
        Console.Write(table);
        return 0;
    }
}
