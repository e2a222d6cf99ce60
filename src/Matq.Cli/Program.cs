// The `matq` command line: this file only wires verbs to the root command and runs it.
using System.CommandLine;
using Matq.Cli.Common;
using Spectre.Console;

namespace Matq.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args, AnsiConsole.Console);

    public static RootCommand BuildRoot(IAnsiConsole console)
    {
        var root = new RootCommand("matq: quantize neural networks to int8/int4/int3/int2 (Matryoshka, Athena/GPTQ, QAT) and serve them");
        return root;
    }

    public static int Run(string[] args, IAnsiConsole console) => CliHost.Run(BuildRoot(console), args, console);
}
