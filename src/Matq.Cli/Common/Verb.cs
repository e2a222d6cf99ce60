// Base of every `matq` verb: one class per verb, described options and examples, an injected console
// so tests can read what a user would see. Verbs throw MatqException for user mistakes; the host prints it.

namespace Matq.Cli.Common;

/// <summary>A verb declares its name (as typed, e.g. "inspect"; a nested verb's own name, e.g. "fetch"), its description
/// and the example command lines --help shows, once, in its base-constructor call.</summary>
public abstract class Verb(IAnsiConsole console, string name, string description, params IReadOnlyList<string> examples)
{
    protected IAnsiConsole Console { get; } = console;

    /// <summary>Name as typed, e.g. "inspect" (a nested verb's own name, e.g. "fetch").</summary>
    public string Name { get; } = name;

    public string Description { get; } = description;

    /// <summary>Example command lines shown in --help.</summary>
    public IReadOnlyList<string> Examples { get; } = examples;

    /// <summary>This verb's options, in the order --help lists them.</summary>
    protected virtual IEnumerable<Option> Options => [];

    /// <summary>Adds this verb's options (and, in an override, its arguments) to <paramref name="command"/>.</summary>
    protected virtual void Configure(Command command)
    {
        foreach (var option in Options) command.Options.Add(option);
    }

    /// <summary>Runs the verb; returns the process exit code.</summary>
    protected abstract int Execute(ParseResult result);

    public Command Build()
    {
        var description = Description;
        if (Examples.Count > 0)
            description += "\n\nExamples:\n" + string.Join("\n", Examples.Select(e => "  " + e));
        var command = new Command(Name, description);
        Configure(command);
        command.SetAction(Execute);
        return command;
    }
}
