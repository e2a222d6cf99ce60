// Contract: turns a layer's Hessian H = 2XXᵀ/n [in, in] into the upper Cholesky factor U of (H + λI)⁻¹ that drives
// GPTQ's error feedback, handling dead inputs and retrying with 10× dampening when H + λI is not positive definite.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

/// <summary>U [in, in] upper-triangular with UᵀU = (H_damped)⁻¹, and what it took to get it.</summary>
internal sealed record HessianFactor(Tensor U, double PercDampUsed, double Lambda, int Retries, int DeadInputs);

internal static class HessianFactorizer
{
    /// <summary>Throws MatqException naming <paramref name="layer"/> unless H is a finite square [in, in] matrix.</summary>
    public static void Check(string layer, Tensor h, long inFeatures)
    {
        if (h.dim() != 2 || h.shape[0] != inFeatures || h.shape[1] != inFeatures)
            throw new MatqException($"layer {layer}: the Hessian is [{string.Join(", ", h.shape)}] but the weight has {inFeatures} inputs; it must be [{inFeatures}, {inFeatures}].");
        if (!h.isfinite().all().item<bool>())
            throw new MatqException($"layer {layer}: the Hessian contains NaN or Inf; the calibration activations overflowed (check the model's dtype and inputs).");
    }

    /// <summary>Dead inputs (H_ii == 0) get H_ii = 1 in <paramref name="h"/> ([n, n], in place) and their weight columns
    /// in <paramref name="w"/> ([rows, n], in place) are set to 0: such an input is always 0, so its weight never matters.</summary>
    public static int FixDeadInputs(Tensor h, Tensor w)
    {
        using var scope = NewDisposeScope();
        Tensor diag = h.diagonal();                                 // [n] view into h
        Tensor dead = diag.eq(0);                                   // [n] bool
        int deadCount = (int)dead.sum().item<long>();
        if (deadCount > 0)
        {
            diag.masked_fill_(dead, 1.0);
            w.masked_fill_(dead.unsqueeze(0), 0.0);
        }
        return deadCount;
    }

    /// <summary>
    /// h: fp32 [n, n] with dead inputs fixed. H_d = H + λI with λ = p·mean(diag H), p = percDamp·10^k for the first
    /// k ≤ maxRetries that factorises:
    ///   L = chol(H_d)          lower, H_d = LLᵀ
    ///   H_d⁻¹ = cholesky_inverse(L)
    ///   U = chol(H_d⁻¹)ᵀ       upper, H_d⁻¹ = UᵀU; row j of U holds the propagation coefficients of column j.
    /// Memory: beside h, at most two [n, n] fp32 buffers at a time (each step's input is freed once its output exists;
    /// the 8B shape's down_proj has n = 14336, 822 MB per buffer).
    /// </summary>
    public static HessianFactor Factor(string layer, Tensor h, double percDamp, int maxRetries, int deadCount)
    {
        double meanDiag;
        using (var mean = h.diagonal().mean()) meanDiag = mean.item<float>();
        double p = percDamp;
        for (int attempt = 0; attempt <= maxRetries; attempt++, p *= 10)
        {
            double lambda = p * meanDiag;
            if (TryFactor(h, lambda) is Tensor u)
                return new HessianFactor(u, p, lambda, attempt, deadCount);
        }
        throw new MatqException(
            $"layer {layer}: the Hessian is not positive definite even with dampening {p / 10:G3}·mean(diag H) " +
            $"(tried {percDamp:G3} and {maxRetries} ten-fold increases); the calibration activations are degenerate: use more or different calibration samples, or raise percDamp.");
    }

    /// <summary>U, or null when H + λI or its inverse does not factorise (info ≠ 0) or U is not finite. H_d is built as
    /// (I·λ) + H, bit for bit the H + I·λ of the reference order (fp32 addition commutes), in one buffer.</summary>
    private static Tensor? TryFactor(Tensor h, double lambda)
    {
        if (!(lambda >= 0)) return null;
        long n = h.shape[0];
        Tensor l, info;
        using (var damped = eye(n, dtype: ScalarType.Float32, device: h.device).mul_(lambda).add_(h))   // [n, n] H_d
            (l, info) = linalg.cholesky_ex(damped);
        Tensor inverse;
        using (l)
        using (info)
        {
            if (info.item<int>() != 0) return null;
            inverse = cholesky_inverse(l);                          // [n, n] H_d⁻¹
        }
        Tensor lInv, info2;
        using (inverse)
            (lInv, info2) = linalg.cholesky_ex(inverse);
        using (info2)
        {
            if (info2.item<int>() != 0)
            {
                lInv.Dispose();
                return null;
            }
        }
        Tensor u;
        using (lInv) u = lInv.t().contiguous();                    // H_d⁻¹ = L'L'ᵀ = UᵀU with U = L'ᵀ
        bool finite;
        using (var f = u.isfinite())
        using (var all = f.all())
            finite = all.item<bool>();
        if (finite) return u;
        u.Dispose();
        return null;
    }
}
