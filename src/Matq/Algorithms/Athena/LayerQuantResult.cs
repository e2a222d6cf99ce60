// Contract: what the second-order solver returns for one linear: the quantized weights in TensorAffineQuantizer's
// convention (uint8 codes [out, in], fp32 scales/zeros [out, nGroups], ŵ = α(q − z)) and a report of how it went.
using Matq.Quantization;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

/// <summary>Numbers of one layer's solve. Errors are Hessian-weighted, tr(ΔW H ΔWᵀ) with the undamped H,
/// i.e. (up to the factor 2/n) the squared output error ‖(W − Ŵ)X‖² on the calibration inputs.</summary>
public sealed record LayerQuantReport(
    string Layer,
    AthenaMode Mode,
    bool ActOrder,
    double RtnError,  // Round-to-nearest with min-max parameters (TensorAffineQuantizer) on the same spec: the "before".
    double GptqError,  // After the GPTQ pass (equals FinalError in GPTQ-exact mode).
    double FinalError,  // After Athena's accepted sweeps: never above GptqError.
    double WeightMse,  // mean((W − Ŵ)²) over all weights.
    double Seconds,
    double PercDampUsed,  // Dampening fraction used: percDamp · 10^DampRetries.
    double Lambda,  // Absolute λ added to diag H.
    int DampRetries,
    int DeadInputs,
    int SweepsAccepted)  // Athena sweeps that lowered the error and were kept (0 in GPTQ-exact mode).
{
    /// <summary>Hessian-weighted error relative to RTN's (below 1 is better than RTN).</summary>
    public double RatioVsRtn => RtnError > 0 ? FinalError / RtnError : (FinalError > 0 ? double.PositiveInfinity : 1.0);
}

/// <summary>The quantized weights of one layer plus its report; owns the tensors.</summary>
public sealed class LayerQuantResult : IDisposable
{
    public LayerQuantResult(QuantizedTensor weights, LayerQuantReport report)
    {
        Weights = weights;
        Report = report;
    }

    /// <summary>Codes uint8 [out, in], scales/zeros fp32 [out, nGroups] in the original column order (act-order uses
    /// static groups, so no permutation is needed to dequantize).</summary>
    public QuantizedTensor Weights { get; }

    public LayerQuantReport Report { get; }

    /// <summary>ŵ = α(q − z), fp32 [out, in].</summary>
    public Tensor Dequantize() => Weights.Dequantize();

    /// <summary>Writes <see cref="Dequantize"/>'s values into <paramref name="target"/> (fp32 [out, in]) in row chunks,
    /// so no second full-size tensor exists (a 128256-row head's is 2.1 GB); returns it.</summary>
    public Tensor DequantizeInto(Tensor target) =>
        TensorAffineQuantizer.DequantizeInto(target, Weights.Codes, Weights.Scales, Weights.Zeros, Weights.GroupSize);

    public void Dispose() => Weights.Dispose();
}
