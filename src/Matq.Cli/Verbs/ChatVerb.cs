// `matq chat`: a conversation in the terminal with a .matq on the packed CPU runtime. Each line read from stdin (a
// terminal or a pipe) is a user message; the whole conversation is rendered by the model's chat template
// (tokenizer_config.json's chat_template, or --template FILE) with the generation prompt, and the reply streams until
// end-of-text, a stop sequence or --max-tokens, then joins the history. Commands: /bits R serves the next replies at R
// bits (the artifact's nested precisions, as "bits" does in every API), /reset forgets the history, /exit (or end of
// input) ends. A turn the template refuses or the context cannot hold is one error line and is dropped; the exit code
// is then 1.
using Matq.Runtime.Chat;
using Matq.Runtime.Generation;
using Matq.Runtime.Serving;

namespace Matq.Cli.Verbs;

public sealed class ChatVerb(IAnsiConsole console, TextReader? input = null) : Verb<ChatSettings>(console, "chat",
    "Chat with a .matq in the terminal (packed CPU runtime): each stdin line is a user message, the conversation is rendered by the model's chat template; /bits R, /reset, /exit",
    "matq chat --model out/qwen8.matq --bits 4",
    "matq chat --model out/llama8.matq --system \"Answer briefly.\" --temperature 0",
    "matq chat --model out/tiny8.matq --tokenizer models/tiny-chat --max-tokens 32",
    "matq chat --model out/tiny8.matq --template llama3.jinja < questions.txt")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<int?> _bits = new("--bits") { Description = "Serve at R bits, 1..master (change it mid-chat with /bits R); default the master bits", HelpName = "R" };
    private readonly Option<string?> _plan = new("--plan") { Description = "Per-layer bits JSON served until /bits picks a uniform precision", HelpName = "FILE" };
    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();
    private readonly Option<string?> _template = TemplateOption();
    private readonly Option<string?> _system = new("--system") { Description = "A system message opening the conversation", HelpName = "TEXT" };
    private readonly Option<int> _maxTokens = new("--max-tokens") { Description = "New tokens per reply at most (the context permitting)", DefaultValueFactory = _ => 256, HelpName = "N" };
    private readonly Option<double> _temperature = new("--temperature") { Description = "Sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0.7, HelpName = "T" };
    private readonly Option<int> _topK = new("--top-k") { Description = "Sample among the K most likely tokens; 0 = all", DefaultValueFactory = _ => 40, HelpName = "K" };
    private readonly Option<double> _topP = new("--top-p") { Description = "Nucleus sampling threshold; 1 = no cut", DefaultValueFactory = _ => 1.0, HelpName = "P" };
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<string[]> _stop = new("--stop") { Description = "Stop a reply before this text (repeatable)", HelpName = "TEXT", AllowMultipleArgumentsPerToken = false };
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = PackedOptions.Head();
    private readonly Option<string> _activations = PackedOptions.Activations("int8");

    /// <summary>--template FILE, shared with serve.</summary>
    public static Option<string?> TemplateOption() => new("--template")
    {
        Description = "A Jinja chat-template file, used instead of the tokenizer's chat_template (tokenizer_config.json)",
        HelpName = "FILE",
    };

    protected override IEnumerable<Option> Options =>
    [
        _model, _bits, _plan, _tokenizer, _template, _system, _maxTokens, _temperature, _topK, _topP, _seed, _stop, _threads, _head, _activations,
    ];

    protected override ChatSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_bits), r.GetValue(_plan), r.GetValue(_tokenizer), r.GetValue(_template),
        r.GetValue(_system), r.GetValue(_maxTokens),
        new SamplingOptions { Temperature = r.GetValue(_temperature), TopK = r.GetValue(_topK), TopP = r.GetValue(_topP), Seed = r.GetValue(_seed) },
        r.GetValue(_stop) ?? [], r.GetValue(_threads), r.GetValue(_head)!, r.GetValue(_activations)!);

    protected override int Run(ChatSettings s)
    {
        var path = s.Model;
        var (bits, plan) = new ServingRequest(s.Bits, s.Plan).Resolve();
        var (threads, headBits, activations) = s.Packed;
        var engine = CompletionEngine.Open(path, new PackedServingOptions
        {
            DefaultBits = bits, Plan = plan, HeadBits = headBits, Threads = threads, Activations = activations, Capacity = 2,
        }, s.Tokenizer);
        var chat = ChatEngine.Open(engine, s.Tokenizer, s.Template);
        chat.RequireTemplate();   // no template: one line naming the fix, before any input is read
        return Converse(chat, s.System, s.MaxTokens, s.Sampling, s.Stops);
    }

    private int Converse(ChatEngine chat, string? system, int max, SamplingOptions sampling, IReadOnlyList<string> stops)
    {
        var reader = input ?? System.Console.In;
        bool prompt = input is null && !System.Console.IsInputRedirected;
        var p = chat.Completions.Precisions;
        int? turnBits = null;
        var history = new List<TemplateDict>();
        if (!string.IsNullOrEmpty(system)) history.Add(ChatTemplate.Message("system", system));
        Console.MarkupLine("[dim]" + Markup.Escape($"chat with {Path.GetFileName(p.ArtifactPath)} ({p.MasterBits}-bit master, serving {(p.Options.Plan is null ? $"{p.DefaultBits} bits" : "its plan")}; "
            + $"template {chat.Template!.Source}); one message per line; /bits R (1..{p.MasterBits}), /reset, /exit") + "[/]");
        int failures = 0, seedStep = 0;
        while (true)
        {
            if (prompt) Console.Markup("[bold]> [/]");
            var line = reader.ReadLine();
            if (line is null || line.Trim() == "/exit") break;
            if (line.Trim().Length == 0) continue;
            if (line.StartsWith('/') && Command(line.Trim(), p.MasterBits, ref turnBits, history, system)) continue;
            history.Add(ChatTemplate.Message("user", line));
            var parameters = new ChatParameters
            {
                Messages = history, MaxTokens = null, Sampling = sampling with { Seed = sampling.Seed + seedStep++ }, Stop = stops, Bits = turnBits,
            };
            PreparedCompletion prepared;
            try
            {
                prepared = chat.Prepare(parameters);
                if (prepared.Parameters.MaxTokens > max) prepared = prepared with { Parameters = prepared.Parameters with { MaxTokens = max } };
                if (prepared.Parameters.MaxTokens == 0)
                    throw new CompletionArgumentException("messages", $"the conversation fills the model's context of {chat.Completions.ContextLength} tokens; /reset to start over");
            }
            catch (CompletionArgumentException e)
            {
                history.RemoveAt(history.Count - 1);
                failures++;
                Console.MarkupLine("[red]error:[/] " + Markup.Escape(e.Message));
                continue;
            }
            var reply = chat.Completions.Run(prepared, piece => Console.Write(new Text(piece)));
            Console.WriteLine();
            Console.MarkupLine("[dim]" + Markup.Escape($"[{reply.CompletionTokens} tokens, {reply.FinishReason}, {(reply.Precision == PackedPrecisionCache.PlanKey ? "plan" : reply.Bits + " bits")}, "
                + $"{reply.Stats.DecodeTokensPerSecond:F0} tok/s]") + "[/]");
            history.Add(ChatTemplate.Message("assistant", reply.Text));
        }
        return failures == 0 ? 0 : 1;
    }

    // /bits R, /reset; anything else starting with '/' is an ordinary message.
    private bool Command(string line, int master, ref int? turnBits, List<TemplateDict> history, string? system)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        switch (parts[0])
        {
            case "/bits":
                if (parts.Length == 2 && int.TryParse(parts[1], out int b) && b >= 1 && b <= master)
                {
                    turnBits = b;
                    Console.MarkupLine("[dim]" + Markup.Escape($"serving the next replies at {b} bits") + "[/]");
                }
                else Console.MarkupLine("[red]error:[/] " + Markup.Escape($"/bits takes one precision 1..{master}, e.g. /bits 4"));
                return true;
            case "/reset":
                history.Clear();
                if (!string.IsNullOrEmpty(system)) history.Add(ChatTemplate.Message("system", system));
                Console.MarkupLine("[dim]history cleared[/]");
                return true;
            default:
                return false;
        }
    }
}

/// <summary>What `chat` was asked: the option values as typed; <see cref="Validate"/> checks sampling, --max-tokens, --stop,
/// --bits/--plan, the packed runtime's options, --template and --model (one line per mistake) before the artifact is opened.</summary>
public sealed record ChatSettings(string Model, int? Bits, string? Plan, string? Tokenizer, string? Template, string? System, int MaxTokens,
    SamplingOptions Sampling, string[] Stops, int Threads, string Head, string Activations) : IVerbSettings
{
    /// <summary>--threads, --head and --activations as the packed runtime takes them.</summary>
    public (int Threads, int? HeadBits, PackedActivations Activations) Packed => PackedOptions.Resolve(Threads, Head, Activations, "chat");

    public void Validate()
    {
        Sampling.Validate();
        if (MaxTokens < 1) throw new MatqException($"--max-tokens {MaxTokens} is out of range: 1 or more");
        if (Stops.Any(string.IsNullOrEmpty)) throw new MatqException("--stop is empty: give the text a reply should stop before");
        new ServingRequest(Bits, Plan).Resolve();
        _ = Packed;
        if (Template is not null && !File.Exists(Template)) throw new MatqException($"--template {Template} does not exist: give a Jinja chat-template file");
        if (!File.Exists(Model) && !Directory.Exists(Model)) throw new MatqException($"--model {Model} does not exist (give a .matq artifact)");
        if (!ArtifactSource.IsArtifactFile(Model))
            throw new MatqException($"--model {Model} is not a .matq artifact: matq chat runs the packed runtime on an artifact; quantize the model first "
                + $"(matq quantize --model {Model} --method rtn --bits 8 --out model8.matq) or serve it with matq serve, which does that at start");
    }
}
