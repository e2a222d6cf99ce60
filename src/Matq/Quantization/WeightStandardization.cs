// Contract: weight standardization per output channel: ŵ = (w − mean)/sqrt(var + eps) over each output channel's
// weights (dim 0 is the output channel; all other dims are flattened), var the population (biased) variance.
// Differentiable through plain tensor ops; used by MaQD before quantizing.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>Per-output-channel weight standardization.</summary>
public static class WeightStandardization
{
    public const double DefaultEps = 1e-5;

    /// <summary>w [out, ...] → standardized w, same shape; each channel gets mean 0 and std sqrt(var/(var + eps)) ≈ 1.</summary>
    public static Tensor Apply(Tensor w, double eps = DefaultEps)
    {
        if (!(eps >= 0) || double.IsInfinity(eps))
            throw new MatqException($"eps = {eps} is invalid for weight standardization: allowed a finite value ≥ 0 (e.g. 1e-5).");
        if (w.dim() < 1 || w.shape[0] < 1) throw new ArgumentException("weight must have an output-channel dimension");
        using var scope = NewDisposeScope();
        Tensor flat = w.reshape(w.shape[0], -1);                                    // [out, fan_in]
        // layer_norm without affine over the fan-in is exactly (w − mean)/sqrt(var + eps), biased var, in one fused kernel
        Tensor standardized = nn.functional.layer_norm(flat, new[] { flat.shape[1] }, eps: eps);
        return standardized.reshape(w.shape).MoveToOuterDisposeScope();
    }
}
