// Contract: Athena's refinement step with the codes held fixed: re-fits every group's (α, z) against the full
// Hessian-weighted error tr((W − Ŵ) H (W − Ŵ)ᵀ) by exact block coordinate descent over the groups (rows in parallel),
// keeping a row's new pair only where it lowers that row's error. Never increases the error (up to fp rounding).
using Matq.Kernels.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

internal static class AthenaRefiner
{
    /// <summary>
    /// w [rows, n] target weights, h [n, n] undamped Hessian, codes [rows, n] float codes, scales/zeros [rows, nG];
    /// returns refitted (scales, zeros). Rows of W are independent (objective Σ_r e_r H e_rᵀ). Per row r:
    ///   E = W − Ŵ, G = E H                                         [rows, n]  (G_k = its group-k columns)
    ///   for each group k (columns C_k, Hkk = H[C_k, C_k]), Ŵ_k ← α q_k + β·1 with (α, β) minimizing the row's total
    ///   error with all other groups fixed; with d = Ŵ_k' − Ŵ_k the change of error is
    ///       Δf = d Hkk dᵀ − 2 d G_kᵀ,
    ///   minimised by the 2×2 normal equations on B = [q_k, 1]:
    ///       [q Hkk qᵀ   q Hkk 1ᵀ] [α]   [v qᵀ]
    ///       [1 Hkk qᵀ   1 Hkk 1ᵀ] [β] = [v 1ᵀ],      v = Ŵ_k Hkk + G_k     (Hkk symmetric)
    ///   then z = clamp(round(−β/α), 0, 2^c−1) (integer zero; symmetric keeps z = 2^(c−1)), and α re-solved for that z:
    ///       p = q_k − z,  α = v pᵀ / (p Hkk pᵀ).
    ///   The pair is kept where α is finite, α ≥ MinScale and Δf &lt; 0; then Ŵ_k += d, G −= d H[C_k, :].
    /// </summary>
    public static (Tensor Scales, Tensor Zeros) RefitGroups(Tensor w, Tensor h, Tensor codes, Tensor scales, Tensor zeros,
        int groupSize, QuantSpec spec)
    {
        using var noGrad = no_grad();
        using var outer = NewDisposeScope();
        long n = w.shape[1];
        int groups = checked((int)scales.shape[1]);
        Tensor newScales = scales.clone(), newZeros = zeros.clone();                     // [rows, nG]
        Tensor wHat = Matq.Quantization.TensorAffineQuantizer.Dequantize(codes, scales, zeros, groupSize); // [rows, n]
        Tensor g = (w - wHat).matmul(h);                                                  // [rows, n]
        bool symmetric = spec.Scheme == QuantScheme.Symmetric;
        for (int k = 0; k < groups; k++)
        {
            using var scope = NewDisposeScope();
            long c0 = (long)k * groupSize, len = Math.Min(groupSize, n - c0);
            Tensor hkk = h.narrow(0, c0, len).narrow(1, c0, len);                         // [len, len]
            Tensor q = codes.narrow(1, c0, len).to(ScalarType.Float32);                    // [rows, len] (bytes for a row-blocked layer)
            Tensor wk = wHat.narrow(1, c0, len);                                           // [rows, len] view into wHat
            Tensor gk = g.narrow(1, c0, len);                                              // [rows, len]
            Tensor v = wk.matmul(hkk).add_(gk);                                            // [rows, len]
            Tensor h1 = hkk.sum(dim: 0L);                                                  // [len] = 1 Hkk
            Tensor z;
            if (symmetric)
                z = zeros.select(1, k);                                                    // [rows] fixed 2^(c−1)
            else
            {
                Tensor a11 = q.matmul(hkk).mul_(q).sum(dim: 1L);                           // [rows]
                Tensor a12 = q.matmul(h1);                                                 // [rows]
                Tensor a22 = hkk.sum();                                                    // scalar
                Tensor b1 = v.mul(q).sum(dim: 1L), b2 = v.sum(dim: 1L);                    // [rows]
                Tensor det = a11 * a22 - a12 * a12;
                Tensor alpha2 = (b1 * a22 - b2 * a12) / det;
                Tensor beta = (a11 * b2 - a12 * b1) / det;
                z = beta.neg().div(alpha2).round().clamp(0, spec.QMax);                   // [rows], NaN where degenerate
            }
            Tensor p = q - z.unsqueeze(1);                                                 // [rows, len]
            Tensor alpha = v.mul(p).sum(dim: 1L).div(p.matmul(hkk).mul_(p).sum(dim: 1L)); // [rows]
            Tensor d = p.mul(alpha.unsqueeze(1)).sub_(wk);                                 // [rows, len] = Ŵ_k' − Ŵ_k
            Tensor df = d.matmul(hkk).mul_(d).sum(dim: 1L) - 2 * d.mul(gk).sum(dim: 1L);  // [rows]
            Tensor keep = alpha.isfinite().logical_and_(z.isfinite()).logical_and_(alpha.ge(AffineQuantizer.MinScale))
                .logical_and_(df.isfinite()).logical_and_(df.lt(0));                       // [rows] bool
            d = where(keep.unsqueeze(1), d, zeros_like(d));
            newScales.select(1, k).copy_(where(keep, alpha, scales.select(1, k)));
            newZeros.select(1, k).copy_(where(keep, z, zeros.select(1, k)));
            wk.add_(d);
            g.sub_(d.matmul(h.narrow(0, c0, len)));                                        // G −= d H[C_k, :]
        }
        return (newScales.MoveToOuterDisposeScope(), newZeros.MoveToOuterDisposeScope());
    }
}
