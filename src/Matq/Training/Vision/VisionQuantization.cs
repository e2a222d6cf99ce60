// Contract: the CNN quantization entry: a validated request names an algorithm from a static table (ptq, qat, efqat);
// Prepare = PTQ steps from a calibration batch (RTN with an MSE-chosen clip) on every conv/linear layer; the algorithm
// then trains (QAT: all weights; EfQAT: selected channels) and Convert reports test accuracy and int codes per layer.
using Matq.Algorithms.EfQat;
using Matq.Models.Vision;

namespace Matq.Training.Vision;

/// <summary>Method ∈ {ptq, qat, efqat}; EfQat required for efqat; Train required for qat/efqat.</summary>
public sealed record VisionQuantRequest
{
    public VisionQuantRequest(string method, QuantSettings quant, CnnTrainOptions? train = null, EfQatConfig? efqat = null)
    {
        if (!VisionQuantization.Methods.Contains(method))
            throw new MatqException($"method '{method}' is not supported: allowed {string.Join(", ", VisionQuantization.Methods)}");
        if (method == "efqat" && efqat is null) throw new MatqException("method efqat needs an EfQAT config (mode and fraction)");
        if (method != "ptq" && train is null) throw new MatqException($"method {method} needs training options");
        Method = method; Quant = quant ?? throw new ArgumentNullException(nameof(quant)); Train = train; EfQat = efqat;
    }

    public string Method { get; }
    public QuantSettings Quant { get; }
    public CnnTrainOptions? Train { get; }
    public EfQatConfig? EfQat { get; }
}

public sealed record VisionQuantOutcome(double PtqAccuracy, double Accuracy, double TrainSeconds, double SelectedWeightFraction,
    IReadOnlyList<(string Layer, Tensor Codes, Tensor Step)> Codes);

public static class VisionQuantization
{
    private delegate TrainHooks? Attach(VisionNet net, VisionQuantRequest request, Action<EfQatAlgorithm> keep);

    // The registry: adding a method adds a row here; the entry point below never changes.
    private static readonly IReadOnlyDictionary<string, Attach?> Table = new Dictionary<string, Attach?>
    {
        ["ptq"] = null,
        ["qat"] = (_, _, _) => new TrainHooks(),
        ["efqat"] = (net, r, keep) =>
        {
            var alg = new EfQatAlgorithm(r.EfQat!, net.QuantLayers().Select(l => l.Layer).ToList());
            keep(alg);
            return new TrainHooks(alg.BeforeStep, _ => alg.AfterStep());
        },
    };

    public static IReadOnlyCollection<string> Methods => Table.Keys.ToList();

    /// <summary>PTQ: captures each layer's float input on <paramref name="calib"/> and turns fake quantization on.</summary>
    public static void Prepare(VisionNet net, Tensor calib, QuantSettings quant)
    {
        var layers = net.QuantLayers();
        var inputs = new Tensor?[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            int k = i;
            layers[i].Layer.InputObserver = x => { inputs[k]?.Dispose(); inputs[k] = x.detach().clone().DetachFromDisposeScope(); };
        }
        net.eval();
        using (no_grad())
        using (var scope = NewDisposeScope())
            net.forward(calib);
        for (int i = 0; i < layers.Count; i++)
        {
            layers[i].Layer.InputObserver = null;
            layers[i].Layer.EnableQuant(quant, inputs[i]!);
            inputs[i]!.Dispose();
        }
        net.train();
    }

    /// <summary>Runs the request on a float net (on <paramref name="device"/>): Prepare, train when the method trains, Convert.</summary>
    public static VisionQuantOutcome Run(VisionNet net, ImageSet train, ImageSet test, VisionQuantRequest r, Device device,
        Action<int, int, double>? stepProgress = null, int calibImages = 512)
    {
        // No dispose scope around Prepare: the step Parameters it creates must outlive it.
        var idx = Enumerable.Range(0, Math.Min(calibImages, train.Count)).ToArray();
        (Tensor calib, Tensor labels) = CnnTrainer.Batch(train, idx, null, device);
        Prepare(net, calib, r.Quant);
        calib.Dispose(); labels.Dispose();
        double ptq = CnnTrainer.Accuracy(net, test, device);
        double acc = ptq, seconds = 0, selected = 0;
        EfQatAlgorithm? alg = null;
        if (Table[r.Method] is { } attach)
        {
            var hooks = attach(net, r, a => alg = a);
            var result = CnnTrainer.Train(net, train, test, r.Train!, device, hooks: hooks, stepProgress: stepProgress);
            acc = result.TestAccuracy; seconds = result.Seconds;
            selected = alg?.SelectedWeightFraction() ?? 1.0;
            alg?.Detach();
        }
        return new VisionQuantOutcome(ptq, acc, seconds, selected, Convert(net));
    }

    /// <summary>Integer codes (uint8, signed values + 2^(b−1)) and steps of every layer's weights.</summary>
    public static IReadOnlyList<(string Layer, Tensor Codes, Tensor Step)> Convert(VisionNet net) =>
        net.QuantLayers().Where(l => l.Layer.Quant is not null)
            .Select(l => (l.Name, LsqFakeQuant.Codes(l.Layer.FloatWeight(), l.Layer.WeightStep!, l.Layer.Quant!.WeightBits), l.Layer.WeightStep!.detach().clone()))
            .ToList();
}
