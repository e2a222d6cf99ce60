// Base of every `matq` verb: one class per verb, described options and examples, an injected console
// so tests can read what a user would see. Verbs throw MatqException for user mistakes; the host prints it.
// A verb with options derives from Verb<TSettings>: it reads its options into a settings record, the record's Validate()
// checks them (one line per mistake, before any data, model or torch is touched), and Run takes the record alone.

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

/// <summary>What a verb was asked, as one record: <see cref="Validate"/> checks every option (one line naming the option and the fix
/// per mistake) before the verb touches data, a model or torch.</summary>
public interface IVerbSettings
{
    void Validate();
}

/// <summary>A verb whose options parse into a settings record: <see cref="Read"/> builds it from the parse result, its
/// <see cref="IVerbSettings.Validate"/> checks it, then <see cref="Run"/> works from the record alone.</summary>
public abstract class Verb<TSettings>(IAnsiConsole console, string name, string description, params IReadOnlyList<string> examples)
    : Verb(console, name, description, examples) where TSettings : IVerbSettings
{
    /// <summary>The option values (and, where a run needs it, the command line) as one record; checks nothing.</summary>
    protected abstract TSettings Read(ParseResult result);

    /// <summary>Runs the verb on validated settings; returns the process exit code.</summary>
    protected abstract int Run(TSettings settings);

    protected sealed override int Execute(ParseResult result)
    {
        var settings = Read(result);
        settings.Validate();
        return Run(settings);
    }
}
