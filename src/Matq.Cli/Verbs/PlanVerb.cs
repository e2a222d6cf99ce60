// `matq plan`: writes a Mix'n'Match plan (per-layer bits) for one .matq artifact — uniform, pyramid or sensitivity-
// driven budget search — and prints its parameter-weighted average bits and the served weights' memory.
using System.Globalization;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class PlanVerb(IAnsiConsole console, Func<DataStore>? data = null) : Verb<PlanSettings>(console, "plan",
    "Write a Mix'n'Match plan (per-layer bit-widths served from one .matq artifact)",
    "matq plan --model out/tiny-mq.matq --strategy pyramid --avg-bits 3.5 --out out/tiny-pyramid.json",
    "matq plan --model out/tiny-mq.matq --strategy budget --avg-bits 3.2 --out out/tiny-budget.json",
    "matq plan --model out/tiny-mq.matq --strategy uniform --bits 4 --out out/tiny-int4.json")
{
    private readonly Func<DataStore> _data = data ?? (() => new DataStore());
    private readonly Option<string> _model = new("--model") { Description = "The .matq artifact the plan is for", Required = true, HelpName = "X.matq" };
    private readonly Option<string> _strategy = new("--strategy") { Description = "uniform (every layer at --bits), pyramid (more bits in the middle blocks) or budget (greedy by measured sensitivity)", DefaultValueFactory = _ => "pyramid", HelpName = "uniform|pyramid|budget" };
    private readonly Option<int?> _bits = new("--bits") { Description = "uniform: the bits of every layer (1..master)", HelpName = "R" };
    private readonly Option<double?> _avg = new("--avg-bits") { Description = "pyramid/budget: parameter-weighted average bits not to exceed", HelpName = "B" };
    private readonly Option<string?> _levels = new("--levels") { Description = "Bit-widths a layer may take (default: the artifact's trained bits, or 2,4,8 up to master)", HelpName = "B[,B...]" };
    private readonly Option<string> _calib = CommonOptions.Data("sotu-validation");
    private readonly Option<string> _out = CommonOptions.Out();
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _seed = CommonOptions.Seed();

    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();

    protected override IEnumerable<Option> Options => [_model, _strategy, _bits, _avg, _levels, _calib, _out, _device, _seed, _tokenizer];

    protected override PlanSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_strategy)!.Trim().ToLowerInvariant(), r.GetValue(_bits), r.GetValue(_avg),
        r.GetValue(_levels), r.GetValue(_calib)!, r.GetValue(_out)!, r.GetValue(_device)!, r.GetValue(_seed), r.GetValue(_tokenizer));

    protected override int Run(PlanSettings s)
    {
        var (strategy, path, outPath) = (s.Strategy, s.Model, s.Out);
        var artifact = MatqArtifact.Open(path);
        int c = artifact.Metadata.MasterBits;
        var layers = PlanLayer.From(artifact);
        var levels = s.Levels is { } text ? CommonOptions.ParseBits(text)
            : artifact.Metadata.TrainedBits.Count >= 2 ? artifact.Metadata.TrainedBits.ToArray() : new[] { 2, 4, 8 }.Where(b => b <= c).ToArray();
        if (levels.Any(b => b > c)) throw new MatqException($"--levels {string.Join(",", levels)}: the artifact has {c} master bits");
        Dictionary<string, int> bits;
        if (strategy == "uniform")
        {
            int r = s.Bits!.Value;
            if (r < 1 || r > c) throw new MatqException($"--bits {r} is out of range: 1..{c}");
            bits = PlanStrategies.Uniform(layers, r);
        }
        else
        {
            double avg = s.AvgBits!.Value;
            // Checked before the (minutes-long) sensitivity pass: a plan averages between the lowest level and the master bits.
            if (!double.IsFinite(avg) || avg < levels.Min() || avg > c)
                throw new MatqException($"--avg-bits {avg.ToString(CultureInfo.InvariantCulture)} is out of range: give a value in {levels.Min()}..{c} (the lowest of --levels {string.Join(",", levels)} up to the artifact's {c} master bits)");
            if (strategy == "pyramid") bits = PlanStrategies.Pyramid(layers, avg, levels);
            else
            {
                var device = TorchRuntime.Configure(s.Device).Device;
                var (folder, problem) = s.Tokenizer is { } tok ? (tok, null) : ArtifactSource.ArtifactTokenizer(path, artifact.Metadata);
                if (folder is null) throw new MatqException($"budget search needs the artifact's tokenizer: {problem}");
                var ids = TextTokenizer.Load(folder).Encode(EvalTexts.Resolve(s.Calib, _data).Text);
                var windows = CalibrationTokens.Sample(ids, 8, Math.Min(128, ids.Length / 9), s.Seed);
                using var batch = tensor(windows.Windows.SelectMany(w => w.Select(t => (long)t)).ToArray(), new long[] { windows.Count, windows.Length });
                var sens = LayerSensitivity.Measure(artifact, batch, levels, device: device);
                bits = PlanStrategies.Budget(layers, avg, levels, (l, b) => sens[(l, b)]);
            }
        }
        var plan = new BitPlan(BitPlan.ModelHashOf(artifact), c, levels.Max(), bits, strategy);
        plan.Save(outPath);
        var table = new Table().AddColumns("layer", "params", "bits");
        foreach (var l in layers) table.AddRow(Markup.Escape(l.Name), l.Parameters.ToString("N0", CultureInfo.InvariantCulture), plan.BitsOf(l.Name).ToString());
        Console.Write(table);
        Console.MarkupLine(Markup.Escape($"{strategy}: average {plan.AverageBits(artifact):F3} bits/weight, weights + scales {Format.Bytes(plan.WeightBytes(artifact))} ({plan.WeightBytes(artifact):N0} bytes); wrote {outPath}"));
        return 0;
    }
}

/// <summary>What `plan` was asked: the option values as typed (--strategy trimmed, lower-cased); <see cref="Validate"/> checks the
/// strategy and the option it needs, --levels, --model, --out and --device (one line per mistake) before the artifact is read.
/// The checks against the artifact (its master bits) follow in the run.</summary>
public sealed record PlanSettings(string Model, string Strategy, int? Bits, double? AvgBits, string? Levels, string Calib, string Out, string Device,
    int Seed, string? Tokenizer) : IVerbSettings
{
    public void Validate()
    {
        if (!PlanStrategies.Names.Contains(Strategy)) throw new MatqException($"--strategy '{Strategy}' is not one of {string.Join(", ", PlanStrategies.Names)}");
        if (!File.Exists(Model)) throw new MatqException($"--model {Model} does not exist (give a .matq artifact)");
        OutputPaths.CheckFile(Out, "--out", Model, ArtifactExport.TokenizerFolderFor(Model));
        if (Levels is not null) CommonOptions.ParseBits(Levels);
        if (Strategy == "uniform" && Bits is null) throw new MatqException("--strategy uniform needs --bits R");
        if (Strategy != "uniform" && AvgBits is null) throw new MatqException($"--strategy {Strategy} needs --avg-bits B");
        TorchRuntime.Check(Device);
    }
}
