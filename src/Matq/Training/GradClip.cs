// Global-norm gradient clipping without a host sync: total = ‖concat(grads)‖₂ in fp32, every grad is scaled by
// min(1, maxNorm / (total + 1e-6)). Returns the pre-clip norm as a 0-d device tensor (read it only when logging).
using Matq.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Training;

public static class GradClip
{
    /// <summary>Clips the grads of <paramref name="parameters"/> in place; parameters without a grad are skipped.</summary>
    public static Tensor ClipGlobalNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "max norm must be positive");
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return zeros(Array.Empty<long>());
        using var scope = NewDisposeScope();
        // Σ‖g‖² summed in fp32 even for bf16 grads: the squares of many small values underflow bf16's mantissa.
        Tensor sumSq = grads[0].to_type(ScalarType.Float32).Squared().sum();
        for (int i = 1; i < grads.Count; i++) sumSq = sumSq + grads[i].to_type(ScalarType.Float32).Squared().sum();
        var total = sumSq.sqrt();
        var coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
        using (no_grad())
            foreach (var g in grads) g.mul_(coef.to_type(g.dtype));
        return total.MoveToOuterDisposeScope();
    }
}
