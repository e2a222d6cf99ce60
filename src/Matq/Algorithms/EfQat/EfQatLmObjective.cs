// Contract: EfQAT on language models as a QAT objective: the single-width nested loss (CE at the run's bits, optional
// distillation), modules that start from the PTQ codes, RMSNorm weights trained along, and an EfQatAlgorithm selector
// that decides before each step which output channels get weight gradients (the rest stay bit-identical).
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.Qat;
using Matq.Kernels.Quantization;
using Matq.Quantization.Pipeline;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.EfQat;

public class EfQatLmObjective(EfQatLmConfig config, IReadOnlyList<Parameter> norms, IReadOnlyDictionary<string, QuantizedLinearResult>? start = null)
    : NestedObjective(config.Objective)
{
    public EfQatLmConfig Settings { get; } = config;

    /// <summary>The row selector, once the modules are attached.</summary>
    public EfQatAlgorithm? Selector { get; private set; }

    /// <summary>After training: the fraction of quantized weights that the last selection trained.</summary>
    public double SelectedWeightFraction { get; private set; } = double.NaN;

    public override string Label => "efqat";

    public override IReadOnlyList<Parameter> AlsoTrain => norms;

    /// <summary>From the PTQ start's codes, scales and zeros when given; else min-max of the float weight.</summary>
    public override NestedQuantLinear Create(SelectedLinear linear, QuantSpec spec)
    {
        if (start is null) return base.Create(linear, spec);
        var r = start[linear.Name];
        using var scope = NewDisposeScope();
        var codes = tensor(r.Codes, new long[] { r.OutFeatures, r.InFeatures }, ScalarType.Byte);
        var scales = tensor(r.Scales, new long[] { r.OutFeatures, r.GroupCount });
        var zeros = tensor(r.Zeros, new long[] { r.OutFeatures, r.GroupCount });
        return new NestedQuantLinear(linear.Name, codes, scales, zeros, r.GroupWidth, spec.Bits, linear.Weight);
    }

    public override void Attached(IReadOnlyList<NestedQuantLinear> modules) => Selector = new EfQatAlgorithm(Settings.Selection, modules);

    public override void BeforeStep(int step) => Selector!.BeforeStep(step);

    public override void AfterStep() => Selector!.AfterStep();

    public override void Finished()
    {
        SelectedWeightFraction = Selector?.SelectedWeightFraction() ?? double.NaN;
        Selector?.Detach();
    }

    public override string RunKey(QatConfig budget, int seed, CalibrationTokens data) =>
        base.RunKey(budget, seed, data) + $";efqat={Settings.Selection.Mode},{Settings.Selection.Fraction:R},{Settings.Selection.RefreshEvery},"
        + $"{Settings.Start.ToString().ToLowerInvariant()},{Settings.TrainNorms}";
}
