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
    /// </summary>
    public static HessianFactor Factor(string layer, Tensor h, double percDamp, int maxRetries, int deadCount)
    {
        using var scope = NewDisposeScope();
        long n = h.shape[0];
        Tensor diag = h.diagonal();
        double meanDiag = diag.mean().item<float>();
        Tensor eye = torch.eye(n, dtype: ScalarType.Float32, device: h.device);
        double p = percDamp;
        for (int attempt = 0; attempt <= maxRetries; attempt++, p *= 10)
        {
            double lambda = p * meanDiag;
            if (TryFactor(h, eye, lambda) is Tensor u)
                return new HessianFactor(u.MoveToOuterDisposeScope(), p, lambda, attempt, deadCount);
        }
        throw new MatqException(
            $"layer {layer}: the Hessian is not positive definite even with dampening {p / 10:G3}·mean(diag H) " +
            $"(tried {percDamp:G3} and {maxRetries} ten-fold increases); the calibration activations are degenerate: use more or different calibration samples, or raise percDamp.");
    }

    /// <summary>U, or null when H + λI or its inverse does not factorise (info ≠ 0) or U is not finite.</summary>
    private static Tensor? TryFactor(Tensor h, Tensor eye, double lambda)
    {
        using var scope = NewDisposeScope();
        if (!(lambda >= 0)) return null;
        var (l, info) = linalg.cholesky_ex(h + eye * lambda);
        if (info.item<int>() != 0) return null;
        var (lInv, info2) = linalg.cholesky_ex(cholesky_inverse(l));
        if (info2.item<int>() != 0) return null;
        Tensor u = lInv.t().contiguous();                           // H_d⁻¹ = L'L'ᵀ = UᵀU with U = L'ᵀ
        if (!u.isfinite().all().item<bool>()) return null;
        return u.MoveToOuterDisposeScope();
    }
}
