// Contract: GPTQ's error-feedback pass (Frantar et al. 2022, Algorithm 1 with lazy batch updates) over the columns
// of W [rows, n] in the given order: each column is rounded to its group's grid and its scaled error pushed onto the
// columns not yet quantized. Returns float codes [rows, n] in processing order; W is consumed (updated in place).
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

/// <summary>Per-group grid of a pass: scales/zeros [rows, nGroups] fp32 and the group k of each processed column.
/// Dynamic: group k's (α, z) are computed (and written into Scales/Zeros) from the current, error-updated weights
/// when its first column is reached; this needs natural column order (GroupOf[p] = p / g). Otherwise they are fixed.</summary>
internal sealed record PassGrid(Tensor Scales, Tensor Zeros, int[] GroupOf, int GroupSize, bool Dynamic);

internal static class GptqColumnPass
{
    /// <summary>
    /// w [rows, n] fp32 working weights (columns in processing order), u [n, n] upper factor of H_d⁻¹ in the same order.
    /// For blocks [i1, i2) of B columns (lazy batch: W1 = W[:, i1:i2] is updated eagerly, the rest once per block):
    ///   for j in block:  q_j = clamp(round(w_j/α) + z, 0, 2^c−1)            [rows]
    ///                    e_j = (w_j − α(q_j − z)) / U_jj                      [rows]
    ///                    W1[:, j+1:] −= e_j ⊗ U[j, j+1:i2]                    rank-1 update inside the block
    ///   W[:, i2:] −= E · U[i1:i2, i2:]                                        E = [e_i1 .. e_i2−1]  [rows, B]
    /// </summary>
    public static Tensor Run(Tensor w, Tensor u, PassGrid grid, QuantSpec spec, int blockSize)
    {
        using var noGrad = no_grad();
        long rows = w.shape[0];
        int n = checked((int)w.shape[1]);
        int qmax = spec.QMax;
        var codes = zeros(rows, n, dtype: ScalarType.Float32, device: w.device);  // [rows, n]
        Tensor d = u.diagonal();                                                  // [n] U_jj
        var channelSpec = QuantSpec.PerChannel(spec.Bits, spec.Scheme);
        for (int i1 = 0; i1 < n; i1 += blockSize)
        {
            using var scope = NewDisposeScope();
            int i2 = Math.Min(i1 + blockSize, n), count = i2 - i1;
            Tensor w1 = w.narrow(1, i1, count);                                   // [rows, B] view: updates land in w
            Tensor err = zeros(rows, count, dtype: ScalarType.Float32, device: w.device);
            Tensor u1 = u.narrow(0, i1, count).narrow(1, i1, count);              // [B, B]
            for (int j = 0; j < count; j++)
            {
                int c = i1 + j, k = grid.GroupOf[c];
                if (grid.Dynamic && c % grid.GroupSize == 0)
                    FillGroup(grid, channelSpec, k, CurrentColumns(w, u, err, i1, j, c, Math.Min(grid.GroupSize, n - c)));
                Tensor alpha = grid.Scales.select(1, k), zero = grid.Zeros.select(1, k);   // [rows]
                Tensor wj = w1.select(1, j);                                               // [rows]
                Tensor q = wj.div(alpha).round_().add_(zero).clamp_(0, qmax);              // same ops as TensorAffineQuantizer
                codes.select(1, c).copy_(q);
                Tensor e = wj.sub(q.sub_(zero).mul_(alpha)).div_(d.select(0, c));          // (w − ŵ)/U_jj
                err.select(1, j).copy_(e);
                if (j + 1 < count)
                    w1.narrow(1, j + 1, count - j - 1).addr_(e, u1.select(0, j).narrow(0, j + 1, count - j - 1), alpha: -1);
            }
            if (i2 < n)
                w.narrow(1, i2, n - i2).addmm_(err, u.narrow(0, i1, count).narrow(1, i2, n - i2), alpha: -1);
        }
        return codes;
    }

    /// <summary>Current values of columns c..c+len−1 ([rows, len]): those inside the block already carry this block's
    /// updates; those past i2 still lack them, so E[:, :j] · U[i1:i1+j, i2:] is subtracted here.</summary>
    private static Tensor CurrentColumns(Tensor w, Tensor u, Tensor err, int i1, int j, int c, int len)
    {
        int i2 = i1 + checked((int)err.shape[1]);
        if (c + len <= i2 || j == 0) return w.narrow(1, c, len);
        int inside = i2 - c, outside = len - inside;
        Tensor tail = w.narrow(1, i2, outside) - err.narrow(1, 0, j).matmul(u.narrow(0, i1, j).narrow(1, i2, outside));
        return cat(new[] { w.narrow(1, c, inside), tail }, 1);
    }

    private static void FillGroup(PassGrid grid, QuantSpec channelSpec, int k, Tensor columns)
    {
        var (alpha, zero) = TensorAffineQuantizer.ComputeParams(columns, channelSpec);   // [rows, 1] each
        grid.Scales.narrow(1, k, 1).copy_(alpha);
        grid.Zeros.narrow(1, k, 1).copy_(zero);
        alpha.Dispose();
        zero.Dispose();
    }
}
