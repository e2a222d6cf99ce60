// Contract: GPTQ's error-feedback pass (Frantar et al. 2022, Algorithm 1 with lazy batch updates) over the columns
// of W [rows, n] in the given order: each column is rounded by a ColumnQuantizer and its scaled residual pushed onto the
// columns not yet quantized. Returns float codes [rows, n] in processing order; W is consumed (updated in place).
// The one copy of the loop: Athena/GPTQ pass AffineColumnQuantizer, MatQuant-Athena its nested-width quantizer.
// A quantizer that fits a group's grid on the fly is offered the group's columns two ways (PassColumns): as they were
// when the current block started (upstream gptq.py's fasterquant: find_params reads the outer W, which receives the
// block's updates only after the block) or with the feedback so far included.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

internal static class GptqColumnPass
{
    /// <summary>
    /// w [rows, n] fp32 working weights (columns in processing order), u [n, n] upper factor of H_d⁻¹ in the same order.
    /// For blocks [i1, i2) of B columns (lazy batch: W1 = W[:, i1:i2] is updated eagerly, the rest once per block):
    ///   for j in block:  q_j, r_j = quantizer(w_j)                           [rows] codes, residual (w_j − ŵ_j)
    ///                    e_j = r_j / U_jj                                      [rows]
    ///                    W1[:, j+1:] −= e_j ⊗ U[j, j+1:i2]                    rank-1 update inside the block
    ///   W[:, i2:] −= E · U[i1:i2, i2:]                                        E = [e_i1 .. e_i2−1]  [rows, B]
    /// </summary>
    /// <remarks>Unless <paramref name="eager"/>, an affine rule whose grids do not depend on the block's own feedback
    /// runs a block at a time (AffineBlockPass: the same result, one kernel call per block), and so does a rule with its
    /// own block kernel (<see cref="IBlockRule"/>: MatQuant-Athena's nested rounding).</remarks>
    public static Tensor Run(Tensor w, Tensor u, ColumnQuantizer quantizer, int blockSize, bool eager = false)
    {
        ArgumentNullException.ThrowIfNull(quantizer);
        if (!eager && quantizer is AffineColumnQuantizer affine && affine.FixedWithinBlock
            && AffineBlockPass.TryRun(w, u, affine, blockSize, out Tensor blockCodes))
            return blockCodes;
        if (!eager && quantizer is IBlockRule rule && rule.TryRunBlocks(w, u, blockSize, out blockCodes))
            return blockCodes;
        using var noGrad = no_grad();
        long rows = w.shape[0];
        int n = checked((int)w.shape[1]);
        var codes = zeros(rows, n, dtype: ScalarType.Float32, device: w.device);  // [rows, n]
        Tensor d = u.diagonal();                                                  // [n] U_jj
        for (int i1 = 0; i1 < n; i1 += blockSize)
        {
            using var scope = NewDisposeScope();
            int i2 = Math.Min(i1 + blockSize, n), count = i2 - i1;
            Tensor w1 = w.narrow(1, i1, count);                                   // [rows, B] view: updates land in w
            Tensor err = zeros(rows, count, dtype: ScalarType.Float32, device: w.device);
            Tensor u1 = u.narrow(0, i1, count).narrow(1, i1, count);              // [B, B]
            Tensor start = w1.clone();                                            // [rows, B] the block as it started
            for (int j = 0; j < count; j++)
            {
                int c = i1 + j;
                quantizer.BeginColumn(c, new PassColumns(w, u, err, start, i1, j));
                Tensor e = quantizer.Quantize(c, w1.select(1, j), codes.select(1, c)).div_(d.select(0, c));   // [rows] r/U_jj
                err.select(1, j).copy_(e);
                if (j + 1 < count)
                    w1.narrow(1, j + 1, count - j - 1).addr_(e, u1.select(0, j).narrow(0, j + 1, count - j - 1), alpha: -1);
            }
            if (i2 < n)
                w.narrow(1, i2, n - i2).addmm_(err, u.narrow(0, i1, count).narrow(1, i2, n - i2), alpha: -1);
        }
        return codes;
    }

    /// <summary>One kernel call per block [i1, i2) of B columns (rows independent inside a block, GptqBlockKernel's
    /// layout): the block transposed wT [B, rows] and its factor u[i1:i2, i1:i2] go in, the kernel writes the fed-back
    /// block into wT, codes into qT and e_j into eT [B, rows]; then W[:, i1:i2] ← wT, W[:, i2:] −= E · U[i1:i2, i2:]. The
    /// kernel's intermediates belong to the block's dispose scope. Returns float codes [rows, n].</summary>
    internal static Tensor RunBlocks(Tensor w, Tensor u, int blockSize, BlockKernel kernel)
    {
        using var noGrad = no_grad();
        long rows = w.shape[0];
        int n = checked((int)w.shape[1]);
        var codes = zeros(rows, n, dtype: ScalarType.Float32, device: w.device);                        // [rows, n]
        for (int i1 = 0; i1 < n; i1 += blockSize)
        {
            using var scope = NewDisposeScope();
            int i2 = Math.Min(i1 + blockSize, n), count = i2 - i1;
            Tensor w1 = w.narrow(1, i1, count);                                                      // [rows, B] view
            Tensor wT = w1.t().contiguous();                                                         // [B, rows]
            Tensor uBlock = u.narrow(0, i1, count).narrow(1, i1, count).contiguous();                // [B, B]
            Tensor qT = empty(count, rows, dtype: ScalarType.Float32, device: w.device);             // [B, rows] codes
            Tensor eT = empty(count, rows, dtype: ScalarType.Float32, device: w.device);             // [B, rows] e_j
            kernel(i1, count, wT, uBlock, qT, eT);
            w1.copy_(wT.t());                                                                        // W is consumed, as in the eager pass
            codes.narrow(1, i1, count).copy_(qT.t());
            if (i2 < n)
                w.narrow(1, i2, n - i2).addmm_(eT.t(), u.narrow(0, i1, count).narrow(1, i2, n - i2), alpha: -1);
        }
        return codes;
    }

    /// <summary>A block kernel for <see cref="RunBlocks"/>: block [i1, i1 + count) as wT, uBlock in; qT, eT out.</summary>
    internal delegate void BlockKernel(int i1, int count, Tensor wT, Tensor uBlock, Tensor qT, Tensor eT);
}

/// <summary>A ColumnQuantizer whose whole pass can run a block per kernel call (the same result as column by column).</summary>
internal interface IBlockRule
{
    /// <summary>The pass over w (consumed) with factor u; false (nothing done) where its kernel is unavailable.</summary>
    bool TryRunBlocks(Tensor w, Tensor u, int blockSize, out Tensor codes);
}

/// <summary>The pass's view of columns c..c+len−1 ([rows, len]) when it reaches column c = i1 + j of block [i1, i2).</summary>
internal readonly struct PassColumns(Tensor w, Tensor u, Tensor err, Tensor start, int i1, int j)
{
    private int C => i1 + j;
    private int I2 => i1 + checked((int)err.shape[1]);

    /// <summary>The values as they were when the block started (upstream GPTQ's grid rule): the block's own columns from
    /// the snapshot taken then, those past i2 from W, which gets this block's updates only after the block.</summary>
    public Tensor AtBlockStart(int len)
    {
        int inside = Math.Min(len, I2 - C);
        Tensor head = start.narrow(1, j, inside);
        return inside == len ? head : cat(new[] { head, w.narrow(1, I2, len - inside) }, 1);
    }

    /// <summary>The current values, all error feedback so far included: those inside the block already carry this
    /// block's updates; those past i2 still lack them, so E[:, :j] · U[i1:i1+j, i2:] is subtracted here.</summary>
    public Tensor Current(int len)
    {
        int c = C, i2 = I2;
        if (c + len <= i2 || j == 0) return w.narrow(1, c, len);
        int inside = i2 - c, outside = len - inside;
        Tensor tail = w.narrow(1, i2, outside) - err.narrow(1, 0, j).matmul(u.narrow(0, i1, j).narrow(1, i2, outside));
        return cat(new[] { w.narrow(1, c, inside), tail }, 1);
    }
}
