// `matq generate`: continues a prompt with a model, greedy (--temperature 0) or seeded top-k sampling, streaming text.
// Engines: a .matq runs on the packed CPU runtime (Matq.Runtime.Packed: r-bit kernels, no TorchSharp) unless
// --engine torch (or --extra-precision, which the packed layout cannot hold, or --device cuda) picks the TorchSharp model
// with dequantized weights; float models always run on TorchSharp. The packed engine loads the artifact through a
// memory map, one tensor at a time (host memory ≈ the r-bit weights + the embedding/head as stored); the torch engine
// holds every weight in fp32. A prompt longer than the model's context is refused.
using Matq.Runtime.Generation;

namespace Matq.Cli.Verbs;

public sealed class GenerateVerb(IAnsiConsole console) : Verb<GenerateSettings>(console, "generate",
    "Continue a prompt with a language model (greedy or seeded top-k / top-p sampling)",
    "matq generate --model models/tiny --prompt \"Fellow citizens\"",
    "matq generate --model models/tiny --prompt \"The economy\" --temperature 0 --max-tokens 100",
    "matq generate --model out/tiny-rtn8.matq --bits 3 --prompt \"Fellow citizens\" --temperature 0",
    "matq generate --model out/small8.matq --plan plan.json --threads 4 --prompt \"The economy\"",
    "matq generate --model out/small8.matq --bits 4 --engine torch --prompt \"The economy\"")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _prompt = new("--prompt") { Description = "Text to continue", Required = true, HelpName = "TEXT" };
    private readonly Option<int> _maxTokens = new("--max-tokens") { Description = "New tokens to generate", DefaultValueFactory = _ => 64, HelpName = "N" };
    private readonly Option<double> _temperature = new("--temperature") { Description = "Sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0.8, HelpName = "T" };
    private readonly Option<int> _topK = new("--top-k") { Description = "Sample among the K most likely tokens; 0 = all", DefaultValueFactory = _ => 40, HelpName = "K" };
    private readonly Option<double> _topP = new("--top-p") { Description = "Nucleus sampling: keep the most likely tokens until their probability reaches P; 1 = no cut", DefaultValueFactory = _ => 1.0, HelpName = "P" };
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int?> _bits = CommonOptions.ServeBits();
    private readonly Option<string?> _plan = CommonOptions.Plan();
    private readonly Option<bool> _extra = CommonOptions.ExtraPrecision("; torch engine");
    private readonly Option<string> _engine = new("--engine") { Description = "auto (packed for a .matq, torch otherwise), packed (r-bit CPU kernels) or torch (dequantized TorchSharp model)", DefaultValueFactory = _ => "auto", HelpName = "auto|packed|torch" };
    private readonly Option<int> _threads = PackedOptions.Threads();
    private readonly Option<string> _head = PackedOptions.Head();
    private readonly Option<string> _activations = PackedOptions.Activations("int8");

    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();

    protected override IEnumerable<Option> Options =>
    [
        _model, _prompt, _maxTokens, _temperature, _topK, _topP, _seed, _device, _bits, _plan, _extra, _engine, _threads, _head, _activations,
        _tokenizer,
    ];

    protected override GenerateSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_prompt) ?? "", r.GetValue(_maxTokens),
        new SamplingOptions { Temperature = r.GetValue(_temperature), TopK = r.GetValue(_topK), TopP = r.GetValue(_topP), Seed = r.GetValue(_seed) },
        r.GetValue(_device)!, new ServingRequest(r.GetValue(_bits), r.GetValue(_plan), r.GetValue(_extra), r.GetValue(_tokenizer)), r.GetValue(_engine)!,
        r.GetValue(_threads), r.GetValue(_head)!, r.GetValue(_activations)!);

    protected override int Run(GenerateSettings s)
    {
        var (sampling, max, prompt, path, serving) = (s.Sampling, s.MaxTokens, s.Prompt, s.Model, s.Serving);
        var (bits, plan) = serving.Resolve();
        var (threads, headBits, activations) = s.Packed;
        if (UsePackedEngine(s.Engine, path, serving.ExtraPrecision, s.Device))
        {
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, Plan = plan, HeadBits = headBits });
            var tokenizer = ArtifactSource.LoadArtifactTokenizer(path, model.Metadata, model.Config.VocabSize, serving.Tokenizer);
            var session = new PackedLlamaSession(model, threads: threads, activations: activations);
            var stats = Run(tokenizer, prompt, max, sampling, session.ContextLength,
                (ids, o, onToken) => PackedTextGenerator.Generate(session, ids, o, onToken).Stats);
            Console.MarkupLine("[dim]" + Markup.Escape($"packed engine: {model.Config.NumLayers} layers at {model.MeanLayerBits:F2} bits/weight, head {(model.Head.Packed is not null ? $"{model.Head.Bits}-bit" : model.Head.Stored is { } st ? $"{Matq.Formats.Safetensors.SafetensorsDtypes.ToName(st.Dtype).ToLowerInvariant()} as stored" : "fp32")}, {PackedOptions.Name(activations)} activations, "
                + $"{(threads < 0 ? Environment.ProcessorCount : threads)} thread(s); prefill {stats!.PrefillTokensPerSecond:F1} tok/s, decode {stats.DecodeTokensPerSecond:F1} tok/s") + "[/]");
            return 0;
        }
        if (s.Head != PackedOptions.DefaultHead) throw new MatqException("--head applies to the packed engine; drop it with --engine torch or float models");
        if (s.Activations != "int8") throw new MatqException("--activations applies to the packed engine; drop it with --engine torch or float models");
        var device = TorchRuntime.Configure(s.Device).Device;
        using var lm = LanguageModelSource.Open(path, device, serving);
        int promptTokens = lm.Tokenizer.Encode(prompt).Length;
        if (promptTokens > lm.ContextLength)
            throw new MatqException($"the prompt is {promptTokens} tokens, longer than the model's context of {lm.ContextLength} tokens; shorten --prompt");
        Run(lm.Tokenizer, prompt, max, sampling, lm.ContextLength, (ids, o, onToken) =>
        {
            TextGenerator.Generate(lm.Module, ids, o, device, onToken);
            return null;
        });
        return 0;
    }

    /// <summary>packed for a .matq unless told otherwise; refuses combinations that cannot run.</summary>
    internal static bool UsePackedEngine(string engine, string path, bool extraPrecision, string device)
    {
        bool artifact = ArtifactSource.IsArtifactFile(path);
        bool cuda = device.Trim().Equals("cuda", StringComparison.OrdinalIgnoreCase);
        switch (engine.Trim().ToLowerInvariant())
        {
            case "torch": return false;
            case "auto": return artifact && !extraPrecision && !cuda;
            case "packed":
                if (!artifact) throw new MatqException($"--engine packed serves .matq artifacts; {path} is a float model (use --engine torch or quantize it first)");
                if (extraPrecision) throw new MatqException("--extra-precision needs --engine torch: the packed layout holds r-bit codes only");
                if (cuda) throw new MatqException("--engine packed runs on the CPU; drop --device cuda or use --engine torch");
                return true;
            default: throw new MatqException($"--engine {engine} is not known: use auto, packed or torch");
        }
    }

    // Encodes, streams the continuation as text; returns the engine's stats (null for torch).
    private PackedGenerationStats? Run(TextTokenizer tokenizer, string prompt, int max, SamplingOptions sampling, int context,
        Func<IReadOnlyList<int>, GenerationOptions, Action<int>, PackedGenerationStats?> generate)
    {
        var promptIds = tokenizer.Encode(prompt);
        var options = new GenerationOptions
        {
            MaxNewTokens = max, ContextLength = context, Sampling = sampling,
            StopIds = tokenizer.EosId is int eos ? [eos] : [],
        };
        Console.Markup($"[bold]{Markup.Escape(prompt)}[/]");
        var stream = new TokenTextStream(tokenizer);   // holds back a character cut in half by a byte or BPE token
        void Emit(string piece)
        {
            if (piece.Length > 0) Console.Write(new Text(piece));
        }
        var stats = generate(promptIds, options, id => Emit(stream.Add(id)));
        Emit(stream.Finish());
        Console.WriteLine();
        return stats;
    }
}

/// <summary>What `generate` was asked: the option values as typed; <see cref="Validate"/> checks sampling, --max-tokens, --model,
/// --bits/--plan, the packed runtime's --threads/--head/--activations and --device (one line per mistake) before the model load.</summary>
public sealed record GenerateSettings(string Model, string Prompt, int MaxTokens, SamplingOptions Sampling, string Device, ServingRequest Serving,
    string Engine, int Threads, string Head, string Activations) : IVerbSettings
{
    /// <summary>--threads, --head and --activations as the packed runtime takes them.</summary>
    public (int Threads, int? HeadBits, PackedActivations Activations) Packed => PackedOptions.Resolve(Threads, Head, Activations, "generate");

    public void Validate()
    {
        Sampling.Validate();
        if (MaxTokens < 0) throw new MatqException($"--max-tokens {MaxTokens} is out of range: 0 or more");
        if (!Directory.Exists(Model) && !File.Exists(Model))
            throw new MatqException($"--model {Model} does not exist");
        Serving.Resolve();   // a bad --bits or --plan fails before the model load
        _ = Packed;
        TorchRuntime.Check(Device);
    }
}
