// Base of every `matq` verb: one class per verb, described options and examples, an injected console
// so tests can read what a user would see. Verbs throw MatqException for user mistakes; the host prints it.

namespace Matq.Cli.Common;

public abstract class Verb
{
    protected Verb(IAnsiConsole console) => Console = console;

    protected IAnsiConsole Console { get; }

    /// <summary>Name as typed, e.g. "inspect" (a nested verb's own name, e.g. "fetch").</summary>
    public abstract string Name { get; }

    public abstract string Description { get; }

    /// <summary>Example command lines shown in --help.</summary>
    public abstract IReadOnlyList<string> Examples { get; }

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
