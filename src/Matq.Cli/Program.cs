// The `matq` command line: this file only wires verbs to the root command and runs it.
using System.CommandLine;
using Matq.Cli.Common;
using Matq.Cli.Verbs;
using Spectre.Console;

namespace Matq.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, AnsiConsole.Console);

    public static RootCommand BuildRoot(IAnsiConsole console)
    {
        var root = new RootCommand("matq: quantize neural networks to int8/int4/int3/int2 (Matryoshka, Athena/GPTQ, QAT) and serve them");
        var data = new Command("data", "Fetch and list the datasets matq uses");
        data.Subcommands.Add(new DataFetchVerb(console).Build());
        data.Subcommands.Add(new DataListVerb(console).Build());
        root.Subcommands.Add(data);
        root.Subcommands.Add(new DeviceVerb(console).Build());
        return root;
    }

    public static int Run(string[] args, IAnsiConsole console) => CliHost.Run(BuildRoot(console), args, console);
}
