// The `matq` command line: this file only wires verbs to the root command and runs it.
using Matq.Cli.Verbs;

namespace Matq.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        // Redirected output has no terminal width; keep tables and one-line errors unwrapped.
        if (System.Console.IsOutputRedirected) AnsiConsole.Console.Profile.Width = 240;
        return Run(args, AnsiConsole.Console);
    }

    public static RootCommand BuildRoot(IAnsiConsole console)
    {
        var root = new RootCommand("matq: quantize neural networks to int8/int4/int3/int2 (Matryoshka, Athena/GPTQ, QAT) and serve them")
        {
            HelpName = "matq",   // the command users type (the dotnet tool's command), not the assembly name Matq.Cli
        };
        var data = new Command("data", "Fetch and list the datasets matq uses");
        data.Subcommands.Add(new DataFetchVerb(console).Build());
        data.Subcommands.Add(new DataListVerb(console).Build());
        root.Subcommands.Add(data);
        root.Subcommands.Add(new InspectVerb(console).Build());
        var train = new Command("train", "Train reference models from scratch");
        train.Subcommands.Add(new TrainLmVerb(console).Build());
        train.Subcommands.Add(new TrainCnnVerb(console).Build());
        root.Subcommands.Add(train);
        root.Subcommands.Add(new QuantizeVerb(console).Build());
        root.Subcommands.Add(new EvalVerb(console).Build());
        root.Subcommands.Add(new GenerateVerb(console).Build());
        root.Subcommands.Add(new ChatVerb(console).Build());
        root.Subcommands.Add(new LogitsVerb(console).Build());
        root.Subcommands.Add(new ServeVerb(console).Build());
        root.Subcommands.Add(new VisionQuantizeVerb(console).Build());
        root.Subcommands.Add(new PlanVerb(console).Build());
        root.Subcommands.Add(new ExportVerb(console).Build());
        root.Subcommands.Add(new DemoVerb(console).Build());
        root.Subcommands.Add(new DeviceVerb(console).Build());
        var bench = new Command("bench", "Benchmarks that print ratios measured in one run");
        bench.Subcommands.Add(new BenchQuantizeLayerVerb(console).Build());
        bench.Subcommands.Add(new BenchPtqVerb(console).Build());
        bench.Subcommands.Add(new BenchScaleVerb(console).Build());
        bench.Subcommands.Add(new BenchKernelsVerb(console).Build());
        bench.Subcommands.Add(new BenchGenerateVerb(console).Build());
        bench.Subcommands.Add(new BenchServeVerb(console).Build());
        bench.Subcommands.Add(new BenchRaceVerb(console).Build());
        bench.Subcommands.Add(new BenchEfQatVerb(console).Build());
        bench.Subcommands.Add(new BenchEfQatLmVerb(console).Build());
        bench.Subcommands.Add(new BenchMatQuantVerb(console).Build());
        bench.Subcommands.Add(new BenchMatQuantMergeVerb(console).Build());
        root.Subcommands.Add(bench);
        return root;
    }

    public static int Run(string[] args, IAnsiConsole console) => CliHost.Run(BuildRoot(console), args, console);
}
