// `matq bench efqat`: backward-pass and whole-step time of EfQAT (partial weight gradients) vs full QAT on the same
// W4A8 fake-quantized ResNet or MLP (or, with --model, an LM whose linears are W4 NestedQuantLinears) and the same batch, in
// one run; ratios = full QAT time / EfQAT time (> 1 = faster). Each selection mode runs at each fraction, on a random
// init or (--init) a trained net, and each row states the share of full QAT's weight-gradient multiply-adds it computes.
using System.Diagnostics;
using Matq.Algorithms.EfQat;
using Matq.Models.Vision;
using Matq.Training;
using Matq.Training.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

/// <summary>The "efqat" sub-verb of "bench" (wire as: bench → efqat).</summary>
public sealed class BenchEfQatVerb(IAnsiConsole console) : Verb<BenchEfQatSettings>(console, "efqat",
    "Time EfQAT's partial-gradient backward vs full QAT on one batch (ratios from one run)",
    "matq bench efqat --device cpu --batch 64 --iters 5",
    "matq bench efqat --device cuda --widths 64,128,256",
    "matq bench efqat --arch mlp --widths 2048,2048,2048")
{
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _batch = new("--batch") { Description = "Images per step", DefaultValueFactory = _ => 256, HelpName = "B" };
    private readonly Option<int> _iters = new("--iters") { Description = "Timed steps per configuration (after 5 warm-up steps)", DefaultValueFactory = _ => 30, HelpName = "N" };
    private readonly Option<string> _fractions = new("--fractions") { Description = "EfQAT fractions, run for every mode (0 and 1 select the same weights in every mode and run once)", DefaultValueFactory = _ => "1,0.25,0.05,0", HelpName = "F[,F...]" };
    private readonly Option<string> _modes = new("--modes") { Description = "EfQAT selection modes: cwpl (channels per layer), cwpn (channels per network), lwpn (layers per network)", DefaultValueFactory = _ => "cwpl", HelpName = "M[,M...]" };
    private readonly Option<string> _arch = new("--arch") { Description = "Vision model: resnet (widths = stage channels, 2 blocks each) or mlp (widths = hidden sizes)", DefaultValueFactory = _ => "resnet", HelpName = "resnet|mlp" };
    private readonly Option<string> _width = new("--widths") { Description = "ResNet stage widths or MLP hidden sizes", DefaultValueFactory = _ => "16,32,64", HelpName = "W,W,W" };
    private readonly Option<string?> _init = new("--init") { Description = "Time a trained vision model (a `matq train cnn` folder: its architecture and weights, so the per-network modes select what they would in training) instead of a random init", HelpName = "DIR" };
    private readonly Option<string?> _lm = new("--model") { Description = "Time a language model (HF folder) instead of the CNN: its linears at W4 (group 64), batch × --context tokens", HelpName = "DIR" };
    private readonly Option<int> _context = new("--context") { Description = "LM tokens per sequence", DefaultValueFactory = _ => 128, HelpName = "T" };
    private readonly Option<string?> _methods = new("--methods") { Description = "Partial-gradient methods to time: CNN inject,split,regrad,unfold,conv; LM inject,gather (default: all)", HelpName = "M[,M...]" };
    private readonly Option<string> _tf32 = new("--tf32") { Description = "CUDA: let cuDNN convolutions and cuBLAS matmuls use TF32 (on) or keep full fp32 (off); libtorch's defaults are conv on, matmul off", DefaultValueFactory = _ => "default", HelpName = "on|off|default" };
    private readonly Option<string> _cudnnBenchmark = CommonOptions.CudnnBenchmark();
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options =>
    [
        _device, _batch, _iters, _fractions, _modes, _arch, _width, _init, _lm, _context, _methods, _tf32, _cudnnBenchmark, _seed,
    ];

    protected override BenchEfQatSettings Read(ParseResult r) => new(r.GetValue(_device)!, r.GetValue(_batch), r.GetValue(_iters), r.GetValue(_fractions)!,
        r.GetValue(_modes)!, r.GetValue(_arch)!, r.GetValue(_width)!, r.GetValue(_init), r.GetValue(_lm), r.GetValue(_context), r.GetValue(_methods),
        r.GetValue(_tf32)!, r.GetValue(_cudnnBenchmark)!, r.GetValue(_seed),
        ArchGiven: r.GetResult(_arch) is { Implicit: false } || r.GetResult(_width) is { Implicit: false });

    protected override int Run(BenchEfQatSettings o)
    {
        var runtime = TorchRuntime.Configure(o.Device, cudnnBenchmark: o.CudnnBenchmark);
        var device = runtime.Device;
        int batch = o.Batch, iters = o.Iters;
        double[] fractions = o.FractionList;
        int[] widths = o.WidthList;
        string arch = o.Arch;
        manual_seed(o.Seed);
        string? lmPath = o.LanguageModel;
        var methods = o.MethodList;
        EfQatMode[] modes = o.ModeList;
        string tf32 = ApplyTf32(o.Tf32, device);
        string cudnnBenchmark = runtime.CudnnBenchmark;
        IReadOnlyList<IEfQatLayer> layers;
        double[] positions;   // per layer: output positions per step (N·Ho·Wo for a conv, tokens or rows for a linear)
        Func<Tensor> lossOf;
        optim.Optimizer opt;
        string workload;
        IDisposable owner;
        if (lmPath is null)
        {
            string? init = o.Init;
            var net = init is null ? VisionNet.Create(new VisionNetConfig(arch, widths, 2)) : VisionNetIO.Load(init);
            arch = net.Config.Arch;
            widths = net.Config.Widths;
            net.to(device);
            Tensor x = rand(batch, 1, 28, 28, device: device), y = randint(0, 10, new long[] { batch }, device: device);
            VisionQuantization.Prepare(net, x, new QuantSettings(4, 8));
            var quantLayers = net.QuantLayers().Select(l => l.Layer).ToList();
            layers = quantLayers;
            positions = OutputPositions(net, quantLayers, x);
            opt = optim.SGD(net.parameters(), 1e-4, momentum: 0.9);
            lossOf = () => nn.functional.cross_entropy(net.forward(x), y);
            workload = $"{(arch == "mlp" ? "MLP 784/" : "ResNet widths ")}{string.Join("/", widths)}{(arch == "mlp" ? "/10" : "")} ({net.ParameterCount():N0} params, {(init is null ? "random init" : "weights of " + init)}), W4A8 LSQ fake quant, batch {batch}";
            owner = net;
        }
        else
        {
            // The LM: every decoder linear becomes a W4 (group 64) NestedQuantLinear, trained on random tokens.
            var source = Matq.Loading.ModelSource.Open(lmPath, device: device);
            var model = source.Model;
            var qc = new Matq.Quantization.Pipeline.QuantizationConfig("efqat", 4, 64);
            var selected = Matq.Quantization.Pipeline.LinearSelection.Select(model, qc);
            foreach (var p in model.parameters()) p.requires_grad = false;
            var modules = selected.Select(sl => (sl.Name, Module: new Matq.Algorithms.MatQuant.NestedQuantLinear(sl.Name, sl.Weight, qc.Spec))).ToList();
            foreach (var (name, m) in modules) { m.to(device); model.ReplaceLinear(name, m); }
            layers = modules.Select(m => m.Module).ToList();
            positions = Enumerable.Repeat((double)batch * o.Context, layers.Count).ToArray();
            // as `quantize --method efqat` trains them: the RMSNorm weights too (so 0 % still has a backward pass)
            var norms = model.named_parameters().Where(p => p.name.EndsWith("norm.weight", StringComparison.Ordinal)).Select(p => p.parameter).ToList();
            foreach (var p in norms) p.requires_grad = true;
            var trainable = modules.SelectMany(m => new[] { m.Module.Weight, m.Module.LogScale, m.Module.Zero }).Concat(norms).ToList();
            opt = optim.SGD(trainable, 1e-4, momentum: 0.9);
            int context = o.Context;
            Tensor ids = randint(0, model.Config.VocabSize, new long[] { batch, context + 1 }, device: device);
            Tensor xi = ids.narrow(1, 0, context), yi = ids.narrow(1, 1, context).flatten();
            model.train();
            lossOf = () => nn.functional.cross_entropy(model.call(xi).flatten(0, 1), yi);
            workload = $"LM {lmPath} ({modules.Count} linears at W4 g64, {layers.Sum(l => l.Weight.numel()):N0} quantized weights), batch {batch}×{context} tokens";
            owner = model;
        }

        // Configurations are interleaved step by step (round robin), so drift in machine load hits all of them alike.
        var (defaultConv, defaultLinear) = (PartialWeightGrad.DefaultConvMethod, PartialWeightGrad.DefaultLinearMethod);
        var configs = new List<(string Name, ConvWeightGradMethod Method, EfQatAlgorithm? Alg)> { ("full QAT (native autograd)", ConvWeightGradMethod.Split, null) };
        // CNN: the three conv methods; LM: the linear's gather-GEMM custom function ("Unfold" slot) and Split.
        foreach (var method in methods)
            foreach (var (mode, m) in modes.Select((mode, m) => (mode, m)))
                foreach (double f in fractions.Where(f => m == 0 || (f > 0 && f < 1)))
                    configs.Add(($"EfQAT {(f is 0 or 1 ? "" : EfQatConfig.ShortName(mode) + " ")}{f:P0} ({((lmPath is not null || arch == "mlp") && method == ConvWeightGradMethod.Unfold ? "Gather" : method.ToString())}{(method == (lmPath is null ? defaultConv : defaultLinear) ? ", default" : "")})",
                        method, new EfQatAlgorithm(new EfQatConfig(mode, f, refreshEvery: 1000), layers)));
        // per-step times; the table reports medians (one stalled step must not decide a ratio)
        var fwd = configs.Select(_ => new List<double>()).ToArray();
        var bwd = configs.Select(_ => new List<double>()).ToArray();
        var stepMs = configs.Select(_ => new List<double>()).ToArray();
        Console.Status().Start("timing", ctx =>
        {
            for (int i = 0; i < 5 + iters; i++)
                for (int c = 0; c < configs.Count; c++)
                {
                    ctx.Status($"round {i + 1}/{5 + iters}: {Markup.Escape(configs[c].Name)}");
                    foreach (var cfg in configs) cfg.Alg?.Detach();
                    // conv layers take the method as is; linears know Split, Inject and the gather-GEMM function (the Unfold slot)
                    foreach (var layer in layers)
                        layer.GradMethod = layer is QConv2d || configs[c].Method is ConvWeightGradMethod.Split or ConvWeightGradMethod.Inject ? configs[c].Method : ConvWeightGradMethod.Unfold;
                    configs[c].Alg?.Refresh();
                    var (f, b, st) = Step(configs[c].Alg, i);
                    if (i < 5) continue;
                    fwd[c].Add(f); bwd[c].Add(b); stepMs[c].Add(st);
                }
        });
        foreach (var cfg in configs) cfg.Alg?.Detach();
        var rows = configs.Select((cfg, c) => (cfg.Name, Work: WeightGradWork(cfg.Alg), Fwd: BenchStats.Median(fwd[c]), Bwd: BenchStats.Median(bwd[c]), Step: BenchStats.Median(stepMs[c]))).ToList();
        var full = rows[0];
        var table = new Table().Border(TableBorder.Rounded).AddColumns("configuration", "weight-grad work", "forward ms", "backward ms", "step ms", "backward speed-up", "step speed-up");
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Name), $"{r.Work:P0}", $"{r.Fwd:F2}", $"{r.Bwd:F2}", $"{r.Step:F2}", $"{full.Bwd / r.Bwd:F2}x", $"{full.Step / r.Step:F2}x");
        Console.Write(table);
        Console.MarkupLine(Markup.Escape($"{device}, {workload}, median of {iters} timed steps each (interleaved), TF32 {tf32}, cudnn.benchmark {cudnnBenchmark}; step = clear gradients + forward + backward + SGD step (+ EfQAT hooks); weight-grad work = the selected rows' share of full QAT's weight-gradient multiply-adds"));
        return 0;

        // One training step (the EfQAT hooks included; refresh is not due inside the timed rounds); returns ms.
        (double, double, double) Step(EfQatAlgorithm? alg, int i)
        {
            using var scope = NewDisposeScope();
            Sync();
            var t0 = Stopwatch.GetTimestamp();
            alg?.BeforeStep(i + 1);
            opt.ClearGradients();
            Tensor loss = lossOf();
            Sync();
            var t1 = Stopwatch.GetTimestamp();
            loss.backward();
            Sync();
            var t2 = Stopwatch.GetTimestamp();
            opt.step();
            alg?.AfterStep();
            Sync();
            var t3 = Stopwatch.GetTimestamp();
            return (Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds, Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds,
                Stopwatch.GetElapsedTime(t0, t3).TotalMilliseconds);
        }

        void Sync() { if (device.type == DeviceType.CUDA) torch.cuda.synchronize(); }

        // Σ selected rows · fan-in · positions over Σ all rows · fan-in · positions: the multiply-adds of the weight
        // gradients this configuration computes, as a share of full QAT's (the per-network modes favour some layers).
        double WeightGradWork(EfQatAlgorithm? alg)
        {
            double sel = 0, all = 0;
            for (int l = 0; l < layers.Count; l++)
            {
                double perRow = (double)layers[l].Weight.numel() / layers[l].OutChannels * positions[l];
                all += layers[l].OutChannels * perRow;
                sel += (alg is null ? layers[l].OutChannels : alg.Selection[l].Length) * perRow;
            }
            return all == 0 ? 0 : sel / all;
        }
    }

    // One forward pass with input observers: a conv's output positions per step are N·Ho·Wo, a linear's the rows of its input.
    private static double[] OutputPositions(VisionNet net, IReadOnlyList<QuantLayer> layers, Tensor x)
    {
        var positions = new double[layers.Count];
        for (int l = 0; l < layers.Count; l++)
        {
            int k = l;
            layers[k].InputObserver = t => positions[k] = layers[k] is QConv2d c
                ? t.shape[0] * ((t.shape[2] + 2 * c.Padding - c.Kernel) / c.Stride + 1) * ((t.shape[3] + 2 * c.Padding - c.Kernel) / c.Stride + 1)
                : t.numel() / t.shape[^1];
        }
        using (no_grad())
        using (NewDisposeScope()) net.forward(x);
        foreach (var layer in layers) layer.InputObserver = null;
        return positions;
    }

    // "gather" is the LM's name for the custom gather-GEMM function (the Unfold slot of the enum); the LM's linears
    // (NestedQuantLinear) implement inject and gather only.
    internal static ConvWeightGradMethod[] ParseMethods(string? text, bool lm)
    {
        var all = lm ? new[] { ("inject", ConvWeightGradMethod.Inject), ("gather", ConvWeightGradMethod.Unfold) }
            : [("inject", ConvWeightGradMethod.Inject), ("regrad", ConvWeightGradMethod.Regrad), ("split", ConvWeightGradMethod.Split), ("unfold", ConvWeightGradMethod.Unfold), ("conv", ConvWeightGradMethod.Conv)];
        if (string.IsNullOrWhiteSpace(text)) return all.Select(a => a.Item2).ToArray();
        return text.Split(',').Select(m => m.Trim().ToLowerInvariant()).Select(m => all.FirstOrDefault(a => a.Item1 == m) is { Item1: not null } a ? a.Item2
            : throw new MatqException($"--methods '{m}' is not known for the {(lm ? "LM" : "CNN")}: use {string.Join(", ", all.Select(a => a.Item1))}")).Distinct().ToArray();
    }

    internal static void CheckTf32(string text, DeviceRequest device)
    {
        string v = text.Trim().ToLowerInvariant();
        if (v is not ("on" or "off" or "default")) throw new MatqException($"--tf32 '{text}' is invalid: use on, off or default");
        if (v != "default" && device == DeviceRequest.Cpu) throw new MatqException("--tf32 applies to --device cuda only");
    }

    private static string ApplyTf32(string text, Device device)
    {
        CheckTf32(text, TorchDevices.Parse(device.type == DeviceType.CUDA ? "cuda" : "cpu"));
        string v = text.Trim().ToLowerInvariant();
        if (device.type != DeviceType.CUDA) return v == "default" ? "n/a (cpu)" : throw new MatqException("--tf32 applies to --device cuda only");
        if (v != "default")
        {
            torch.backends.cudnn.allow_tf32 = v == "on";
            torch.backends.cuda.matmul.allow_tf32 = v == "on";
        }
        return $"conv {(torch.backends.cudnn.allow_tf32 ? "on" : "off")}, matmul {(torch.backends.cuda.matmul.allow_tf32 ? "on" : "off")}";
    }
}

/// <summary>What `bench efqat` was asked: the option values as typed; <see cref="Validate"/> checks them all (one line per mistake).</summary>
public sealed record BenchEfQatSettings(string Device, int Batch, int Iters, string Fractions, string Modes, string Arch, string Widths, string? Init,
    string? LanguageModel, int Context, string? Methods, string Tf32, string CudnnBenchmark, int Seed, bool ArchGiven) : IVerbSettings
{
    public double[] FractionList => Fractions.Split(',').Select(s => double.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out var f) && f >= 0 && f <= 1
        ? f : throw new MatqException($"--fractions '{s}' is invalid: each must be in 0..1")).ToArray();

    public int[] WidthList => CommonOptions.ParseWidths(Widths);

    public ConvWeightGradMethod[] MethodList => BenchEfQatVerb.ParseMethods(Methods, lm: LanguageModel is not null);

    public EfQatMode[] ModeList => Modes.Split(',').Select(EfQatConfig.ParseMode).Distinct().ToArray();

    public void Validate()
    {
        TorchRuntime.Check(Device, cudnnBenchmark: CudnnBenchmark);
        if (Batch < 1 || Iters < 1) throw new MatqException("--batch and --iters must be ≥ 1");
        _ = FractionList;
        _ = WidthList;
        if (Arch is not ("resnet" or "mlp")) throw new MatqException($"--arch '{Arch}' is not supported: use resnet or mlp");
        _ = MethodList;
        _ = ModeList;
        BenchEfQatVerb.CheckTf32(Tf32, TorchDevices.Parse(Device));
        if (LanguageModel is not null && Init is not null)
            throw new MatqException("--init (a vision model) and --model (a language model) exclude each other: give one");
        if (Init is not null && ArchGiven)
            throw new MatqException("--init takes the architecture and widths from the model folder: leave out --arch and --widths");
        if (LanguageModel is not null && Context < 1) throw new MatqException($"--context {Context} is out of range: at least 1 token");
    }
}
