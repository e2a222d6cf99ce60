// `matq generate`: continues a prompt with a model, greedy (--temperature 0) or seeded top-k sampling, streaming text.
using System.CommandLine;
using Matq.Cli.Common;
using Matq.Evaluation;
using Matq.Runtime;
using Matq.Runtime.Generation;
using Spectre.Console;

namespace Matq.Cli.Verbs;

public sealed class GenerateVerb(IAnsiConsole console) : Verb(console)
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _prompt = new("--prompt") { Description = "Text to continue", Required = true, HelpName = "TEXT" };
    private readonly Option<int> _maxTokens = new("--max-tokens") { Description = "New tokens to generate", DefaultValueFactory = _ => 64, HelpName = "N" };
    private readonly Option<double> _temperature = new("--temperature") { Description = "Sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0.8, HelpName = "T" };
    private readonly Option<int> _topK = new("--top-k") { Description = "Sample among the K most likely tokens; 0 = all", DefaultValueFactory = _ => 40, HelpName = "K" };
    private readonly Option<int> _seed = CommonOptions.Seed();
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int?> _bits = new("--bits") { Description = "For a .matq: serve at R bits, 1..master; default the master bits", HelpName = "R" };
    private readonly Option<string?> _plan = new("--plan") { Description = "For a .matq: per-layer bits JSON {\"default\": 4, \"layers\": {\"model.layers.0.mlp.down_proj\": 8}}", HelpName = "FILE" };
    private readonly Option<bool> _extra = new("--extra-precision") { Description = "For a .matq: keep the rounding overflow bucket 2^r (a few weights take an extra bit)" };

    public override string Name => "generate";
    public override string Description => "Continue a prompt with a language model (greedy or seeded top-k sampling)";
    public override IReadOnlyList<string> Examples =>
    [
        "matq generate --model models/tiny --prompt \"Fellow citizens\"",
        "matq generate --model models/tiny --prompt \"The economy\" --temperature 0 --max-tokens 100",
        "matq generate --model out/tiny-rtn8.matq --bits 3 --prompt \"Fellow citizens\" --temperature 0",
    ];

    protected override void Configure(Command command)
    {
        foreach (var o in new Option[] { _model, _prompt, _maxTokens, _temperature, _topK, _seed, _device, _bits, _plan, _extra })
            command.Options.Add(o);
    }

    protected override int Execute(ParseResult result)
    {
        var sampling = new SamplingOptions { Temperature = result.GetValue(_temperature), TopK = result.GetValue(_topK), Seed = result.GetValue(_seed) };
        sampling.Validate();
        int max = result.GetValue(_maxTokens);
        if (max < 0) throw new MatqException($"--max-tokens {max} is out of range: 0 or more");
        var prompt = result.GetValue(_prompt) ?? "";
        var path = result.GetValue(_model)!;
        if (!Directory.Exists(path) && !File.Exists(path))
            throw new MatqException($"--model {path} does not exist");
        var serving = new ServingRequest(result.GetValue(_bits), result.GetValue(_plan), result.GetValue(_extra));
        serving.Resolve();   // a bad --bits or --plan fails before the model load
        var device = TorchDevices.Resolve(result.GetValue(_device));
        using var lm = LanguageModelSource.Open(path, device, serving);
        var promptIds = lm.Tokenizer.Encode(prompt);
        var options = new GenerationOptions
        {
            MaxNewTokens = max, ContextLength = lm.ContextLength, Sampling = sampling,
            StopIds = lm.Tokenizer.EosId is int eos ? [eos] : [],
        };
        Console.Markup($"[bold]{Markup.Escape(prompt)}[/]");
        // Decode the whole continuation each time and print what is new; a trailing U+FFFD (a multi-byte character
        // cut in half by a byte or BPE token) is held back until its remaining bytes arrive.
        var produced = new List<int>();
        int printed = 0;
        void Emit(bool final)
        {
            var text = lm.Tokenizer.Decode(produced.ToArray());
            int upto = text.Length;
            if (!final) while (upto > printed && text[upto - 1] == '\uFFFD') upto--;
            if (upto > printed) { Console.Write(new Text(text[printed..upto])); printed = upto; }
        }
        TextGenerator.Generate(lm.Module, promptIds, options, device, id => { produced.Add(id); Emit(false); });
        Emit(true);
        Console.WriteLine();
        return 0;
    }
}
