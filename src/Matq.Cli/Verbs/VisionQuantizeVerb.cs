// `matq quantize-cnn`: PTQ, full QAT or EfQAT of a trained Fashion-MNIST model folder, printing test accuracy; with
// --sweep it runs the whole accuracy table (PTQ, EfQAT modes × fractions, full QAT at W4A8 and W2A8) and writes markdown.
using System.CommandLine;
using System.Text;
using Matq.Algorithms.EfQat;
using Matq.Cli.Common;
using Matq.Data;
using Matq.Models.Vision;
using Matq.Runtime;
using Matq.Runtime.Models;
using Matq.Training.Vision;
using Spectre.Console;
using TorchSharp;

namespace Matq.Cli.Verbs;

/// <summary>Top-level verb "quantize-cnn".</summary>
public sealed class VisionQuantizeVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb(console)
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = new("--model") { Description = "A folder written by `matq train cnn`", Required = true, HelpName = "DIR" };
    private readonly Option<string> _method = new("--method") { Description = "ptq, qat or efqat", DefaultValueFactory = _ => "efqat", HelpName = "ptq|qat|efqat" };
    private readonly Option<int> _wbits = new("--wbits") { Description = "Weight bits, 2..8 (signed, per output channel)", DefaultValueFactory = _ => 4, HelpName = "B" };
    private readonly Option<int> _abits = new("--abits") { Description = "Activation bits, 2..8 (unsigned, per tensor)", DefaultValueFactory = _ => 8, HelpName = "B" };
    private readonly Option<string> _mode = new("--mode") { Description = "EfQAT selection: cwpl, cwpn or lwpn", DefaultValueFactory = _ => "cwpl", HelpName = "cwpl|cwpn|lwpn" };
    private readonly Option<double> _fraction = new("--fraction") { Description = "EfQAT fraction of channels/layers trained, 0..1", DefaultValueFactory = _ => 0.25, HelpName = "F" };
    private readonly Option<int> _epochs = new("--epochs") { Description = "QAT epochs", DefaultValueFactory = _ => 1, HelpName = "N" };
    private readonly Option<double> _lr = new("--lr") { Description = "QAT peak learning rate (AdamW, cosine)", DefaultValueFactory = _ => 2e-4, HelpName = "LR" };
    private readonly Option<int?> _limit = new("--limit-train") { Description = "Use only the first N training images", HelpName = "N" };
    private readonly Option<string?> _sweep = new("--sweep") { Description = "Run the full accuracy table and write it as markdown to this file", HelpName = "FILE" };
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<string> _cudnnBenchmark = CommonOptions.CudnnBenchmark();
    private readonly Option<int> _seed = CommonOptions.Seed();

    public override string Name => "quantize-cnn";
    public override string Description => "Quantize a Fashion-MNIST CNN with PTQ, QAT or EfQAT and report test accuracy";
    public override IReadOnlyList<string> Examples =>
    [
        "matq quantize-cnn --model models/cnn --method efqat --mode cwpl --fraction 0.25",
        "matq quantize-cnn --model models/cnn --sweep docs/results/vision-fashion-mnist.md --device cuda",
    ];

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { _model, _method, _wbits, _abits, _mode, _fraction, _epochs, _lr, _limit, _sweep, _device, _cudnnBenchmark, _seed })
            command.Options.Add(o);
    }

    protected override int Execute(ParseResult result)
    {
        if (result.GetValue(_sweep) is { } sweepPath) Matq.Formats.IO.OutputPaths.CheckFile(sweepPath, "--sweep", result.GetValue(_model));
        var device = TorchDevices.Resolve(result.GetValue(_device));
        CommonOptions.ApplyCudnnBenchmark(result.GetValue(_cudnnBenchmark)!, device);
        string model = result.GetValue(_model)!;
        var train = new CnnTrainOptions
        {
            Epochs = result.GetValue(_epochs), Lr = result.GetValue(_lr), Optimizer = "adamw", WeightDecay = 0, WarmupSteps = 20,
            Augment = true, Seed = result.GetValue(_seed), LimitTrain = result.GetValue(_limit),
        };
        train.Validate();
        var requests = new List<(string Label, VisionQuantRequest Request)>();
        if (result.GetValue(_sweep) is null)
        {
            var q = new QuantSettings(result.GetValue(_wbits), result.GetValue(_abits));
            string m = result.GetValue(_method)!;
            var ef = m == "efqat" ? new EfQatConfig(EfQatConfig.ParseMode(result.GetValue(_mode)!), result.GetValue(_fraction), q.WeightBits, q.ActBits) : null;
            requests.Add((Label(m, q, ef), new VisionQuantRequest(m, q, m == "ptq" ? null : train, ef)));
        }
        else requests.AddRange(SweepPlan(train));

        var fm = _data().FashionMnist();
        var floatNet = VisionNetIO.Load(model);
        floatNet.to(device);
        double floatAcc = CnnTrainer.Accuracy(floatNet, fm.Test, device);
        floatNet.Dispose();
        Console.MarkupLine($"float model {Markup.Escape(model)}: test accuracy {floatAcc:P2}");
        var table = new Table().Border(TableBorder.Rounded).AddColumns("method", "W/A bits", "weights trained", "PTQ acc", "final acc", "train s");
        var md = new StringBuilder();
        md.AppendLine("| method | W/A bits | weights trained (last selection) | PTQ (start) acc | final test acc | train s |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var (label, req) in requests)
        {
            torch.manual_seed(result.GetValue(_seed));
            using var net = VisionNetIO.Load(model);
            net.to(device);
            var o = VisionQuantization.Run(net, fm.Train, fm.Test, req, device);
            string trained = req.Method == "ptq" ? "-" : $"{o.SelectedWeightFraction:P1}";
            table.AddRow(Markup.Escape(label), $"W{req.Quant.WeightBits}A{req.Quant.ActBits}", trained, $"{o.PtqAccuracy:P2}", $"{o.Accuracy:P2}", $"{o.TrainSeconds:F1}");
            md.AppendLine($"| {label} | W{req.Quant.WeightBits}A{req.Quant.ActBits} | {trained} | {o.PtqAccuracy:P2} | {o.Accuracy:P2} | {o.TrainSeconds:F1} |");
            Console.MarkupLine($"[grey]{Markup.Escape(label)} W{req.Quant.WeightBits}A{req.Quant.ActBits}: {o.PtqAccuracy:P2} → {o.Accuracy:P2}[/]");
            foreach (var c in o.Codes) { c.Codes.Dispose(); c.Step.Dispose(); }
        }
        Console.Write(table);
        if (result.GetValue(_sweep) is { } path)
        {
            Matq.Formats.IO.AtomicFile.WriteAllText(path, $"Float model test accuracy: {floatAcc:P2}; QAT: {train.Epochs} epoch(s), AdamW lr {train.Lr}, batch {train.Batch}, device {device}\n\n{md}");
            Console.MarkupLine($"wrote {Markup.Escape(path)}");
        }
        return 0;
    }

    private static string Label(string method, QuantSettings q, EfQatConfig? ef) =>
        ef is null ? (method == "ptq" ? "PTQ (RTN, MSE clip)" : "full QAT") : $"EfQAT {EfQatConfig.ShortName(ef.Mode)} {ef.Fraction:P0}";

    private static IEnumerable<(string, VisionQuantRequest)> SweepPlan(CnnTrainOptions train)
    {
        foreach (int wb in new[] { 8, 4, 2 })
        {
            var q = new QuantSettings(wb, 8);
            yield return (Label("ptq", q, null), new VisionQuantRequest("ptq", q));
        }
        foreach (int wb in new[] { 4, 2 })
        {
            var q = new QuantSettings(wb, 8);
            foreach (var mode in new[] { EfQatMode.ChannelPerLayer, EfQatMode.ChannelPerNetwork, EfQatMode.LayerPerNetwork })
                foreach (double f in mode == EfQatMode.ChannelPerLayer ? new[] { 0.0, 0.05, 0.25 } : new[] { 0.05, 0.25 })
                {
                    var ef = new EfQatConfig(mode, f, wb, 8);
                    yield return (Label("efqat", q, ef), new VisionQuantRequest("efqat", q, train, ef));
                }
            yield return (Label("qat", q, null), new VisionQuantRequest("qat", q, train));
        }
    }
}
