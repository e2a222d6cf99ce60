// `matq bench ptq`: post-training quantization sweep of one float model — methods × bits × groups, each quantized
// fresh in memory and scored on eval sets — printed as one table and written as markdown, CSV and a PNG plot.
using System.Diagnostics;
using TorchSharp;

namespace Matq.Cli.Verbs;

public sealed class BenchPtqVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<BenchPtqSettings>(console, "ptq",
    "Sweep PTQ methods × bits × groups on one model: perplexity and bits/byte per eval set, as a table, markdown, CSV and a plot",
    "matq bench ptq --model models/tiny --max-tokens 20000 --threads 1",
    "matq bench ptq --model models/tiny --methods rtn,gptq --bits 4,2 --groups 0,32 --data sotu-test --max-tokens 5000 --out /tmp/ptq",
    "matq bench ptq --model models/small --device cuda --methods rtn,gptq,gptq:act-order=true,athena")
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _methods = new("--methods")
    {
        Description = "Methods, comma-separated: rtn, rtn-mse (rtn with clip=mse), gptq, athena; registry options after colons, e.g. gptq:act-order=true",
        DefaultValueFactory = _ => "rtn,rtn-mse,gptq,athena",
        HelpName = "M[,M...]",
    };
    private readonly Option<string> _bits = CommonOptions.Bits("8,4,3,2");
    private readonly Option<string> _groups = new("--groups")
    {
        Description = "Group sizes along the input dimension, comma-separated; 0 = per output channel. A size ≥ every layer's width is skipped (it equals per-channel)",
        DefaultValueFactory = _ => "0,128,64,32",
        HelpName = "G[,G...]",
    };
    private readonly Option<string> _dataOpt = new("--data")
    {
        Description = "Eval sets, comma-separated: sotu-train, sotu-validation, sotu-test, moby-dick or UTF-8 text files",
        DefaultValueFactory = _ => "sotu-test,moby-dick",
        HelpName = "NAME[,NAME...]",
    };
    private readonly Option<int?> _maxTokens = new("--max-tokens") { Description = "Score only the first N tokens of each eval set (default: all)", HelpName = "N" };
    private readonly Option<string> _calibData = new("--calib-data") { Description = "Calibration text (dataset name or file)", DefaultValueFactory = _ => "sotu-train", HelpName = "NAME|FILE" };
    private readonly Option<int> _calibN = new("--calib-n") { Description = "Calibration windows", DefaultValueFactory = _ => 128, HelpName = "N" };
    private readonly Option<int> _calibLen = new("--calib-len") { Description = "Tokens per calibration window", DefaultValueFactory = _ => 256, HelpName = "L" };
    private readonly Option<int> _context = new("--context") { Description = "Eval tokens per window", DefaultValueFactory = _ => 256, HelpName = "C" };
    private readonly Option<int> _stride = new("--stride") { Description = "Eval window step", DefaultValueFactory = _ => 128, HelpName = "S" };
    private readonly Option<int> _batch = new("--batch") { Description = "Eval windows per forward pass", DefaultValueFactory = _ => 8, HelpName = "B" };
    private readonly Option<bool> _symmetric = new("--symmetric") { Description = "Symmetric grid instead of asymmetric min-max" };
    private readonly Option<bool> _head = new("--include-head") { Description = "Also quantize lm_head (untied heads only)" };
    private readonly Option<string?> _out = new("--out") { Description = "Folder for ptq-<model>.md/.csv/.png (default docs/results)", HelpName = "DIR" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int?> _threads = new("--threads")
    {
        Description = "CPU threads for torch (default: torch's own); on a shared CPU, 1 avoids oversubscription (seen 7× faster on 2 busy cores)",
        HelpName = "N",
    };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options =>
    [
        _model, _methods, _bits, _groups, _dataOpt, _maxTokens, _calibData, _calibN, _calibLen, _context, _stride, _batch, _symmetric, _head, _out,
        _device, _threads, _seed,
    ];

    protected override BenchPtqSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_methods)!, r.GetValue(_bits)!, r.GetValue(_groups)!,
        r.GetValue(_dataOpt)!, r.GetValue(_maxTokens), r.GetValue(_calibData)!, r.GetValue(_calibN), r.GetValue(_calibLen), r.GetValue(_context),
        r.GetValue(_stride), r.GetValue(_batch), r.GetValue(_symmetric), r.GetValue(_head), r.GetValue(_out) ?? Path.Combine("docs", "results"),
        r.GetValue(_device)!, r.GetValue(_threads), r.GetValue(_seed), _data,
        "matq " + string.Join(' ', r.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value)));

    protected override int Run(BenchPtqSettings o)
    {
        // Cheap checks first: names, numbers and paths fail before a model load or a dataset fetch.
        var options = o.Options;
        var eval = options.Eval;
        var dataNames = BenchPtqSettings.Split(o.Data, "--data");
        int? maxTokens = o.MaxTokens;
        int calibN = o.CalibN, calibLen = o.CalibLen, seed = o.Seed;
        bool calibrate = options.Methods.Any(m => m.NeedsCalibration);
        var (modelPath, outDir) = (o.Model, o.Out);

        var device = TorchRuntime.Configure(o.Device, o.Threads).Device;
        torch.manual_seed(seed);
        var wall = Stopwatch.StartNew();
        using var source = ModelSource.Open(modelPath, device: device);
        if (source.Kind == ModelSourceKind.MatqArtifact)
            throw new MatqException($"--model {modelPath} is a .matq artifact: the sweep quantizes a float model (give the folder it came from)");
        var model = source.Model;
        var tokenizer = TextTokenizer.Load(source.RequireTokenizerFolder());
        int positions = model.Config.SlidingWindow ?? model.Config.MaxPositionEmbeddings;
        if (eval.Context > positions) throw new MatqException($"--context {eval.Context} exceeds the model's context of {positions} tokens");
        if (calibrate && calibLen > positions) throw new MatqException($"--calib-len {calibLen} exceeds the model's context of {positions} tokens");

        Console.MarkupLine($"[grey]tokenizing {dataNames.Count} eval set(s){(calibrate ? " and the calibration text" : "")}…[/]");
        var sets = dataNames.Select(d =>
        {
            var (label, text) = EvalTexts.Resolve(d, _data);
            return EvalSet.Tokenize(d, label, text, tokenizer, maxTokens);
        }).ToArray();
        CalibrationTokens? calibration = null;
        if (calibrate)
        {
            var (_, text) = EvalTexts.Resolve(o.CalibData, _data);
            calibration = CalibrationTokens.Sample(tokenizer.Encode(text), calibN, calibLen, seed);
        }

        PtqSweepResult sweep = null!;
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        System.Console.CancelKeyPress += onCancel;
        try
        {
            Console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var overall = ctx.AddTask("sweep", maxValue: 1);
                    var stage = ctx.AddTask("starting", maxValue: 1);
                    sweep = PtqSweep.Run(model, options, sets, calibration, device, p =>
                    {
                        overall.MaxValue = p.Runs;
                        overall.Value = p.Run;
                        overall.Description = $"run {p.Run + 1}/{p.Runs} · {Markup.Escape(p.Label)}";
                        stage.MaxValue = Math.Max(1, p.Total);
                        stage.Value = p.Done;
                        stage.Description = Markup.Escape(p.Stage);
                    }, cts.Token);
                    overall.Value = overall.MaxValue;
                });
        }
        finally
        {
            System.Console.CancelKeyPress -= onCancel;
        }

        var name = Path.GetFileName(Path.GetFullPath(modelPath).TrimEnd(Path.DirectorySeparatorChar));
        if (source.Kind == ModelSourceKind.SafetensorsFile) name = Path.GetFileNameWithoutExtension(modelPath);
        var settings = Settings(source, tokenizer, options, calibration, o.CalibData, maxTokens, device, wall.Elapsed.TotalSeconds,
            o.CommandLine);
        WriteTable(sweep, sets, settings);
        var stem = Path.Combine(outDir, $"ptq-{name}");
        var title = $"PTQ sweep: {name} ({model.Config.ParameterCount():N0} params)";
        PtqSweepPlot.Save(stem + ".png", sweep, sets, title);
        PtqSweepReport.WriteAtomic(stem + ".csv", PtqSweepReport.Csv(sweep, sets));
        PtqSweepReport.WriteAtomic(stem + ".md", PtqSweepReport.Markdown(sweep, sets, title, settings, $"ptq-{name}.png"));
        Console.MarkupLine($"wrote [bold]{Markup.Escape(stem)}.md[/], .csv and .png ({sweep.Rows.Count - 1} quantized runs, {wall.Elapsed.TotalMinutes:F1} min)");
        return 0;
    }

    private static List<string> Settings(OpenedModel source, TextTokenizer tokenizer, PtqSweepOptions o, CalibrationTokens? calibration,
        string calibData, int? maxTokens, torch.Device device, double seconds, string command)
    {
        var c = source.Model.Config;
        return
        [
            $"model: {source.Path} ({c.Family}, {c.ParameterCount():N0} params, {c.NumLayers} layers, hidden {c.HiddenSize}, vocab {c.VocabSize}, {tokenizer.Name} tokenizer), evaluated in fp32",
            $"quantized: every decoder linear{(o.IncludeHead ? " and lm_head" : " (lm_head and embeddings stay float)")}, {(o.Symmetric ? "symmetric" : "asymmetric")} min-max grid",
            calibration is null ? "calibration: none (no method needs it)"
                : $"calibration: {calibration.Count} windows × {calibration.Length} tokens of {calibData}, seed {o.Seed} (built once, shared by every run)",
            $"eval: sliding windows, context {o.Eval.Context}, stride {o.Eval.Stride}" + (maxTokens is int n ? $", the first {n:N0} tokens of each set" : ", every token of each set"),
            $"device: {device} ({(device.type == DeviceType.CUDA ? "CUDA" : $"CPU, torch threads: {torch.get_num_threads()}")}); sweep wall time {seconds / 60:F1} min",
            $"command: `{command}`",
        ];
    }

    private void WriteTable(PtqSweepResult sweep, IReadOnlyList<EvalSet> sets, IReadOnlyList<string> settings)
    {
        foreach (var line in settings) Console.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
        var table = new Table().Border(TableBorder.Rounded);
        var headers = PtqSweepReport.Headers(sets);
        for (int i = 0; i < headers.Count; i++)
            table.AddColumn(new TableColumn(Markup.Escape(headers[i])) { Alignment = i < 3 ? Justify.Left : Justify.Right });
        var cells = PtqSweepReport.Cells(sweep, sets);
        for (int r = 0; r < cells.Count; r++)
        {
            table.AddRow(cells[r].Select(Markup.Escape).ToArray());
            if (r + 1 < cells.Count && sweep.Rows[r].Method != sweep.Rows[r + 1].Method) table.AddEmptyRow();
        }
        Console.Write(table);
        foreach (var note in PtqSweepReport.Notes(sweep)) Console.MarkupLine($"[grey]{Markup.Escape(note)}[/]");
        var (methods, bits, ratio) = PtqSweepReport.Summary(sweep);
        var summary = new Table().Border(TableBorder.Rounded).Title("ppl ÷ RTN's");
        summary.AddColumn("method");
        foreach (var b in bits) summary.AddColumn(new TableColumn($"{b}-bit") { Alignment = Justify.Right });
        for (int m = 0; m < methods.Count; m++)
            summary.AddRow([Markup.Escape(methods[m]), .. bits.Select((_, b) => ratio[m, b] is double v ? $"{v:F3}" : "-")]);
        Console.Write(summary);
        Console.MarkupLine("[grey]geometric mean over group layouts and eval sets of perplexity ÷ min-max RTN's at the same bits and group; < 1 beats RTN[/]");
    }

}

/// <summary>What `bench ptq` was asked: the option values as typed, the dataset store and the command line (for the report); <see cref="Validate"/> checks them all (one line per mistake)
/// and builds every method × bits × group config before a model load or a dataset fetch.</summary>
public sealed record BenchPtqSettings(string Model, string Methods, string Bits, string Groups, string Data, int? MaxTokens, string CalibData, int CalibN,
    int CalibLen, int Context, int Stride, int Batch, bool Symmetric, bool IncludeHead, string Out, string Device, int? Threads, int Seed, Func<DataStore> DataStore,
    string CommandLine) : IVerbSettings
{
    public PtqSweepOptions Options
    {
        get
        {
            var methods = Split(Methods, "--methods").Select(PtqMethod.Parse).ToArray();
            if (methods.Select(m => m.Label).Distinct().Count() != methods.Length) throw new MatqException("--methods names a method twice");
            var bits = CommonOptions.ParseBits(Bits);
            var groups = Split(Groups, "--groups").Select(g => int.TryParse(g, out var v) && v >= 0 ? v
                : throw new MatqException($"--groups '{g}' is not a group size: 0 (per-channel) or a positive number of input columns")).ToArray();
            return new PtqSweepOptions
            {
                Methods = methods, Bits = bits, Groups = groups, Symmetric = Symmetric, IncludeHead = IncludeHead, Seed = Seed,
                Eval = new PerplexityOptions { Context = Context, Stride = Stride, Batch = Batch },
            };
        }
    }

    /// <summary>Checks everything; <see cref="DataStore"/> is only asked for a name that is neither a dataset nor a file (to say so).</summary>
    public void Validate()
    {
        var options = Options;
        foreach (var d in Split(Data, "--data").Append(CalibData))
            if (!EvalTexts.Names.Contains(d) && !File.Exists(d)) EvalTexts.Resolve(d, DataStore);   // throws the one-line error
        if (MaxTokens is < 2) throw new MatqException($"--max-tokens {MaxTokens} is out of range: at least 2");
        options.Eval.Validate();
        bool calibrate = options.Methods.Any(m => m.NeedsCalibration);
        if (calibrate && CalibN < 1) throw new MatqException($"--calib-n {CalibN} is out of range: at least 1");
        if (calibrate && CalibLen < 2) throw new MatqException($"--calib-len {CalibLen} is out of range: at least 2");
        PtqSweep.Check(options);
        if (!Directory.Exists(Model) && !File.Exists(Model)) throw new MatqException($"--model {Model} does not exist");
        if (File.Exists(Out)) throw new MatqException($"--out {Out} is a file: give a folder");
        Matq.Formats.IO.OutputPaths.CheckWorkFolder(Out, "--out", Model);
        TorchRuntime.Check(Device, Threads);
    }

    public static List<string> Split(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (parts.Count == 0) throw new MatqException($"{option} is empty");
        return parts;
    }
}
