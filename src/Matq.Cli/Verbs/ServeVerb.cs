// `matq serve`: OpenAI-style completions and chat-completions endpoints on 127.0.0.1 for one model on the packed CPU
// runtime (chat renders the conversation with the model's chat template: tokenizer_config.json, or --template), the
// precision chosen per request ("bits": r, default --bits) and packed lazily from the artifact's master codes, at most
// --max-precisions kept. A float model (HF folder or .safetensors) is RTN-quantized to an int8 master at start (groups of
// --group, into a temporary artifact removed at exit) and then served the same way. Runs until Ctrl+C or SIGTERM (or the
// injected stop token), then stops cleanly: running generations are cancelled and their requests end.
using System.Runtime.InteropServices;
using Matq.Cli.Serving;
using Matq.Runtime.Chat;
using Matq.Runtime.Serving;

namespace Matq.Cli.Verbs;

public sealed class ServeVerb(IAnsiConsole console, CancellationToken stop = default) : Verb<ServeSettings>(console, "serve",
    "Serve a model over HTTP on 127.0.0.1 in the OpenAI shapes (POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health); an extra request field \"bits\" picks the precision (1..master) per request",
    "matq serve --model out/tiny8.matq --bits 4",
    "matq serve --model out/small8.matq --port 0 --max-concurrency 1 --max-queue 4 --threads 8",
    "matq serve --model models/tiny --group 32        (float model: RTN int8 at start)",
    "curl -s localhost:8080/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Fellow citizens\", \"max_tokens\": 32, \"temperature\": 0, \"bits\": 2}'",
    "curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"bits\": 4}'")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<int?> _bits = new("--bits") { Description = "Default served bits R (1..master) for requests that name no \"bits\"; default the master bits", HelpName = "R" };
    private readonly Option<string?> _plan = new("--plan") { Description = "Per-layer bits JSON served to requests that name no \"bits\" (a request's \"bits\" serves uniformly)", HelpName = "FILE" };
    private readonly Option<int> _port = new("--port") { Description = "TCP port on 127.0.0.1 (never other interfaces); 0 = any free port (printed)", DefaultValueFactory = _ => 8080, HelpName = "N" };
    private readonly Option<int> _concurrency = new("--max-concurrency") { Description = "Requests generating at once", DefaultValueFactory = _ => 2, HelpName = "N" };
    private readonly Option<int> _batch = new("--batch")
    {
        Description = "Sequences decoded together, one pass over the weights per step (continuous batching: requests join and leave between steps); 1 = each request decodes alone. At most --max-concurrency are generating at once",
        DefaultValueFactory = _ => 8, HelpName = "B",
    };
    private readonly Option<int?> _context = new("--context")
    {
        Description = "Longest prompt + completion served, in tokens (each session's KV cache is sized for it); default the model's max_position_embeddings",
        HelpName = "N",
    };
    private readonly Option<int> _queue = new("--max-queue") { Description = "Requests waiting for a slot (first come, first served); beyond that 429 with an OpenAI-style error", DefaultValueFactory = _ => 8, HelpName = "N" };
    private readonly Option<long> _maxBody = new("--max-body-bytes") { Description = "Largest request body; larger ones get 413", DefaultValueFactory = _ => 256 * 1024, HelpName = "BYTES" };
    private readonly Option<int> _precisions = new("--max-precisions")
    {
        Description = "Packed precisions kept in memory (each built on first request for its bits; building another drops the least recently used)",
        DefaultValueFactory = _ => 4, HelpName = "N",
    };
    private readonly Option<int> _group = new("--group")
    {
        Description = "Float models only: group size of the int8 RTN master made at start (a multiple of 32 for the packed kernels); 0 = per output channel",
        DefaultValueFactory = _ => 128, HelpName = "G",
    };
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = PackedOptions.Head();
    private readonly Option<string> _activations = PackedOptions.Activations("int8");

    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();
    private readonly Option<string?> _template = ChatVerb.TemplateOption();

    protected override IEnumerable<Option> Options =>
    [
        _model, _bits, _plan, _port, _concurrency, _batch, _context, _queue, _maxBody, _precisions, _group, _threads, _head, _activations, _tokenizer, _template,
    ];

    protected override ServeSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_bits), r.GetValue(_plan), new ServeOptions
    {
        Port = r.GetValue(_port), MaxConcurrency = r.GetValue(_concurrency), MaxQueue = r.GetValue(_queue), MaxBodyBytes = r.GetValue(_maxBody),
    }, r.GetValue(_precisions), r.GetValue(_group), r.GetValue(_threads), r.GetValue(_head)!, r.GetValue(_activations)!, r.GetValue(_tokenizer),
        r.GetValue(_template), r.GetValue(_batch), r.GetValue(_context));

    protected override int Run(ServeSettings s)
    {
        var (path, options, group, capacity) = (s.Model, s.Options, s.Group, s.MaxPrecisions);
        var (bits, plan) = new ServingRequest(s.Bits, s.Plan).Resolve();
        var (threads, headBits, activations) = s.Packed;
        string? tempDir = null;
        try
        {
            string artifact = path, modelId = Path.GetFileNameWithoutExtension(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar));
            if (!ArtifactSource.IsArtifactFile(path))
            {
                tempDir = Directory.CreateTempSubdirectory("matq-serve-").FullName;
                artifact = QuantizeFloatModel(path, group, Path.Combine(tempDir, modelId + "-rtn8.matq"));
                modelId += "-rtn8";
            }
            var engine = CompletionEngine.Open(artifact, new PackedServingOptions
            {
                DefaultBits = bits, Plan = plan, HeadBits = headBits, Threads = threads, Activations = activations, Capacity = capacity,
                ContextLength = s.Context,
            }, s.Tokenizer, Math.Min(s.Batch, options.MaxConcurrency));
            var chat = ChatEngine.Open(engine, s.Tokenizer, s.Template);
            Serve(engine, chat, options with { ModelId = modelId });
            return 0;
        }
        catch (FileNotFoundException e) when (e.FileName?.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) == true
                                              || e.FileName?.StartsWith("Microsoft.Extensions", StringComparison.Ordinal) == true)
        {
            throw new MatqException($"this matq was published without the ASP.NET Core framework that serve needs ({e.FileName?.Split(',')[0]} is missing); publish with it (SERVE=1 bash scripts/publish-gpu.sh) or run serve from a full build");
        }
        finally
        {
            if (tempDir is not null) try { Directory.Delete(tempDir, recursive: true); } catch (IOException) { }
        }
    }

    private void Serve(CompletionEngine engine, ChatEngine chat, ServeOptions options)
    {
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(stop);
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; stopping.Cancel(); };
        System.Console.CancelKeyPress += onCancel;
        using var sigterm = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stopping.Cancel(); });
        var gate = new object();
        void Log(string line)
        {
            lock (gate) Console.MarkupLine("[dim]" + Markup.Escape($"{DateTime.Now:HH:mm:ss} {line}") + "[/]");
        }
        try
        {
            var server = CompletionServer.StartAsync(engine, options, Log, chat).GetAwaiter().GetResult();
            var p = engine.Precisions;
            var model = p.Default.Model;
            lock (gate)
            {
                Console.MarkupLine(Markup.Escape($"serving {server.ModelId}: {p.Metadata.Algorithm} {p.MasterBits}-bit master, {model.Config.NumLayers} layers, context {engine.ContextLength} tokens, "
                    + $"tokenizer {engine.Tokenizer.Name}; default {(p.Options.Plan is null ? $"{p.DefaultBits} bits" : $"plan ({model.MeanLayerBits:F2} bits/weight)")}, "
                    + $"a request's \"bits\" picks 1..{p.MasterBits}"));
                Console.MarkupLine(Markup.Escape($"precisions are packed on first use, at most {p.Options.Capacity} kept (least recently used dropped); "
                    + $"{options.MaxConcurrency} generating at once{(engine.MaxBatch > 1 ? $" (decoded together, up to {engine.MaxBatch} a step)" : "")}, {options.MaxQueue} queued, then 429; bodies up to {Format.Bytes(options.MaxBodyBytes)}"));
                Console.MarkupLine(Markup.Escape(chat.Template is not null
                    ? $"chat: the template of {chat.Template.Source} renders /v1/chat/completions"
                    : $"chat: /v1/chat/completions answers 400 until the model has a chat template: {chat.MissingTemplate}"));
                Console.MarkupLine($"listening on [bold]{Markup.Escape(server.BaseAddress.ToString().TrimEnd('/'))}[/] "
                    + Markup.Escape("(POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health; Ctrl+C stops)"));
            }
            try
            {
                stopping.Token.WaitHandle.WaitOne();
            }
            finally
            {
                Log("stopping: cancelling running generations");
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                Log("stopped");
            }
        }
        finally
        {
            System.Console.CancelKeyPress -= onCancel;
        }
    }

    // RTN to an int8 master at start, written as a temporary artifact (tokenizer copied next to it) for the packed runtime.
    private string QuantizeFloatModel(string path, int group, string outPath)
    {
        var device = TorchRuntime.Configure("cpu").Device;
        using var source = ModelSource.Open(path, device: device);
        var config = new QuantizationConfig("rtn", 8, group);
        Console.MarkupLine(Markup.Escape($"{path} is a float model: quantizing it with RTN to an int8 master ({(config.PerChannel ? "per-channel" : $"groups of {config.GroupSize}")}) for serving"));
        var run = QuantizationRunner.Run(config, new QuantizationContext(source.Model, device));
        return ArtifactExport.Write(run, source.Model, outPath, source.TokenizerFolder).Path;
    }
}

/// <summary>What `serve` was asked: the option values as typed; <see cref="Validate"/> checks the server limits, --bits/--plan, the
/// packed runtime's options, --max-precisions, --group and --model (one line per mistake) before any load.</summary>
public sealed record ServeSettings(string Model, int? Bits, string? Plan, ServeOptions Options, int MaxPrecisions, int Group, int Threads, string Head,
    string Activations, string? Tokenizer, string? Template, int Batch = 8, int? Context = null) : IVerbSettings
{
    /// <summary>--threads, --head and --activations as the packed runtime takes them.</summary>
    public (int Threads, int? HeadBits, PackedActivations Activations) Packed => PackedOptions.Resolve(Threads, Head, Activations, "serve");

    public void Validate()
    {
        Options.Validate();
        new ServingRequest(Bits, Plan).Resolve();
        _ = Packed;
        if (MaxPrecisions < 1) throw new MatqException($"--max-precisions {MaxPrecisions} is out of range: keep at least 1 precision");
        if (Batch < 1 || Batch > PackedLlamaSession.MaxBatch)
            throw new MatqException($"--batch {Batch} is out of range: 1..{PackedLlamaSession.MaxBatch} sequences decoded together (1 = no batching)");
        if (Context is int c && c < 1) throw new MatqException($"--context {c} is out of range: 1 or more tokens");
        CommonOptions.CheckGroup(Group);
        if (!Directory.Exists(Model) && !File.Exists(Model))
            throw new MatqException($"--model {Model} does not exist (give a .matq artifact, an HF model folder or a .safetensors file)");
    }
}
