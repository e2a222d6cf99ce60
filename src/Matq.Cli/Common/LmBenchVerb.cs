// Base of the LM quantization benches (`bench matquant`, `bench efqat-lm`): the options they name and describe the same
// way (--model, --group, the QAT budget of each run, the scored tokens, the artifacts' folder, --device, --seed) and the
// dataset store; the shared run loop is Evaluation/QuantizeServeBench.

namespace Matq.Cli.Common;

public abstract class LmBenchVerb<TSettings>(IAnsiConsole console, Func<DataStore>? data, string defaultWork, string name, string description,
    params IReadOnlyList<string> examples) : Verb<TSettings>(console, name, description, examples) where TSettings : IVerbSettings
{
    protected Func<DataStore> Data { get; } = data ?? (() => new DataStore());
    protected Option<string> ModelOption { get; } = CommonOptions.Model();
    protected Option<int> GroupOption { get; } = CommonOptions.Group(64);
    protected Option<int> StepsOption { get; } = new("--steps") { Description = "QAT steps per run (every run gets the same budget)", DefaultValueFactory = _ => 200, HelpName = "N" };
    protected Option<int> BatchOption { get; } = new("--batch") { Description = "QAT windows per step", DefaultValueFactory = _ => 8, HelpName = "N" };
    protected Option<int> ContextOption { get; } = new("--context") { Description = "QAT window length (tokens)", DefaultValueFactory = _ => 128, HelpName = "T" };
    protected Option<int> MaxTokensOption { get; } = new("--max-tokens") { Description = "Tokens of each evaluation text scored (0 = all)", DefaultValueFactory = _ => 20000, HelpName = "N" };
    protected Option<string> WorkOption { get; } = new("--work") { Description = "Folder for the artifacts", DefaultValueFactory = _ => defaultWork, HelpName = "DIR" };
    protected Option<string> DeviceOption { get; } = CommonOptions.Device();
    protected Option<int> SeedOption { get; } = CommonOptions.Seed();
}
