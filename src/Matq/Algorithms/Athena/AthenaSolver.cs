// Contract: quantizes one linear W [out, in] given its calibration Hessian H = 2XXᵀ/n [in, in] (fp32, on W's device)
// with GPTQ-exact or Athena; returns codes/scales/zeros in TensorAffineQuantizer's convention and a report.
//
// GPTQ-exact (Frantar et al. 2022): dead inputs (H_ii = 0 → H_ii = 1, W[:, i] = 0); λ = percDamp·mean(diag H) on the
// diagonal (×10 retries if not positive definite); U = upper Cholesky factor of H_d⁻¹; one error-feedback pass over
// the columns in blocks of B with lazy batch updates (GptqColumnPass with AffineColumnQuantizer); group (α, z) are
// min-max parameters of the group's weights as they were when the current block started (upstream gptq.py; config
// GroupGrid.Updated: with the error feedback so far instead), computed when its first column is reached.
// Act-order processes columns by descending diag H with "static groups": all group parameters are computed up front
// from the unpermuted weights, so codes/scales/zeros keep the natural layout and no permutation is stored.
//
// Athena (after the paper's description: block-wise second-order quantization that groups parameters by columns or
// rows and iteratively updates the remaining parameters and the Hessian), as implemented here:
//   1. Column grouping + updates: exactly the GPTQ pass above. Quantizing column j and pushing e_j·U[j, j+1:] onto
//      the unquantized columns is the OBS update of the remaining parameters; reading U's rows in order is the same
//      as deleting column j from the inverse Hessian after each step (the Hessian update), without recomputing it.
//   2. Row grouping: rows are independent under tr(ΔW H ΔWᵀ) = Σ_r ΔW_r H ΔW_rᵀ, so W is solved in row blocks of
//      RowBlockSize (shared U); this bounds memory and leaves the result unchanged.
//   3. Refinement sweeps (Sweeps, default 2), each from the best solution so far (codes Q, params P, error f):
//      a. refit P with Q fixed: exact block coordinate descent over the groups on the full Hessian-weighted error
//         (AthenaRefiner; a closed-form weighted least-squares (α, β) per row and group, β = −αz with z rounded to an
//         integer, kept only where the row's error drops) → P_a, f_a;
//      b. re-quantize: rerun the error-feedback pass from the original W with P_a fixed → Q_b, f_b;
//      the better of (a, b) is accepted only if it lowers f; otherwise the sweeps stop. Hence Athena's error is never
//      above GPTQ-exact's on the same layer. Per-tensor granularity has one shared pair, so it gets no sweeps.
using Matq.Runtime;
using System.Diagnostics;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

/// <summary>Second-order per-layer quantization (GPTQ-exact and Athena).</summary>
public static class AthenaSolver
{
    /// <summary>Quantizes <paramref name="weight"/> [out, in]; <paramref name="hessian"/> [in, in] is 2XXᵀ/n of the layer's
    /// inputs. Works on the weight's device in fp32. Throws MatqException naming <paramref name="layer"/> for non-finite
    /// weights or Hessians and for Hessians that stay indefinite after the dampening retries.</summary>
    public static LayerQuantResult Quantize(string layer, Tensor weight, Tensor hessian, AthenaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        GroupLayout.CheckMatrix(weight, nameof(weight));
        var sw = Stopwatch.StartNew();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        QuantSpec spec = config.Spec;
        // [out, in], read in place when it is fp32: the solve never writes to it (a copy of a 128256-row head is 2.1 GB)
        Tensor w0 = weight.dtype == ScalarType.Float32 ? weight.detach() : weight.detach().to(ScalarType.Float32);
        foreach (var (r0, len) in RowChunks(w0))   // finite, a chunk at a time (a whole-tensor mask is 1 byte a weight)
        {
            using var chunk = NewDisposeScope();
            if (!w0.narrow(0, r0, len).isfinite().all().item<bool>())
                throw new MatqException($"layer {layer}: the weights contain NaN or Inf; quantization needs finite weights (check the checkpoint).");
        }
        long rows = w0.shape[0];
        int n = checked((int)w0.shape[1]);
        HessianFactorizer.Check(layer, hessian, n);
        Tensor h0 = hessian.detach().to(ScalarType.Float32, w0.device);               // [in, in] undamped, for errors
        int g = spec.EffectiveGroupSize(n);
        int groups = (n + g - 1) / g;

        double rtnError;
        using (var rtnScope = NewDisposeScope())
        {
            var (rtnScales, rtnZeros) = TensorAffineQuantizer.ComputeParams(w0, spec);   // RTN baseline
            rtnError = 0;
            foreach (var (r0, len) in RowChunks(w0))
            {
                using var chunk = NewDisposeScope();
                Tensor rtnCodes = TensorAffineQuantizer.Quantize(w0.narrow(0, r0, len), rtnScales.narrow(0, r0, len), rtnZeros.narrow(0, r0, len), g, spec.Bits);
                rtnError += CodesError(w0.narrow(0, r0, len), rtnCodes, rtnScales.narrow(0, r0, len), rtnZeros.narrow(0, r0, len), g, h0);
            }
        }

        // Dead inputs, then the processing order (act-order: descending diag H; ties keep column order). H is copied
        // only when it has dead inputs to fix, and every [n, n] copy is freed once factorised: beside the caller's H
        // the solve then holds U and, while factorising, at most two more [n, n] buffers (HessianFactorizer.Factor).
        bool anyDead;
        using (var diagZero = h0.diagonal().eq(0))
        using (var any = diagZero.any())
            anyDead = any.item<bool>();
        // W with its dead columns zeroed: a copy only when there are any (the solve never writes to w0 otherwise; a
        // 128256-row head's copy is 2.1 GB)
        Tensor w = anyDead ? w0.clone() : w0;
        Tensor hFixed = anyDead ? h0.clone() : h0;                                     // FixDeadInputs changes nothing else
        int dead = anyDead ? HessianFactorizer.FixDeadInputs(hFixed, w) : 0;
        int[] order = config.ActOrder ? DescendingOrder(hFixed.diagonal()) : Enumerable.Range(0, n).ToArray();
        Tensor perm = tensor(order.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64, device: w0.device);
        Tensor hp = hFixed;
        if (config.ActOrder)
            using (var rowsPermuted = hFixed.index_select(0, perm))
                hp = rowsPermuted.index_select(1, perm);
        Tensor wp = config.ActOrder ? w.index_select(1, perm) : w;                     // [out, in] in processing order
        HessianFactor factor = HessianFactorizer.Factor(layer, hp, config.PercDamp, config.MaxDampRetries, dead);
        if (!ReferenceEquals(hp, h0)) hp.Dispose();
        if (!ReferenceEquals(hFixed, h0) && !ReferenceEquals(hFixed, hp)) hFixed.Dispose();

        // Static grid (act-order, per-tensor): min-max parameters of the unpermuted weights; else filled during the pass.
        bool dynamic = !config.ActOrder && spec.Granularity != Granularity.PerTensor;
        Tensor scales, zeros;
        if (dynamic)
        {
            scales = torch.zeros(rows, groups, dtype: ScalarType.Float32, device: w0.device);
            zeros = torch.zeros(rows, groups, dtype: ScalarType.Float32, device: w0.device);
        }
        else (scales, zeros) = TensorAffineQuantizer.ComputeParams(w, spec);
        int[] groupOf = order.Select(c => spec.Granularity == Granularity.PerTensor ? 0 : c / g).ToArray();
        Tensor inverse = argsort(perm);

        // One pass: codes in natural column order for the given grid.
        Tensor Pass(Tensor s, Tensor z, bool dyn)
        {
            var codesP = RunRowBlocks(wp, factor.U, s, z, groupOf, g, dyn, spec, config);
            return config.ActOrder ? codesP.index_select(1, inverse) : codesP;
        }

        Tensor codes = Pass(scales, zeros, dynamic);
        double gptqError = CodesError(w0, codes, scales, zeros, g, h0);
        double error = gptqError;
        int accepted = 0;
        if (config.Mode == AthenaMode.Athena && spec.Granularity != Granularity.PerTensor)
        {
            for (int s = 0; s < config.Sweeps; s++)
            {
                var (sa, za) = AthenaRefiner.RefitGroups(w, h0, codes, scales, zeros, g, spec);
                double fa = CodesError(w0, codes, sa, za, g, h0);
                Tensor codesB = Pass(sa, za, false);
                double fb = CodesError(w0, codesB, sa, za, g, h0);
                double best = Math.Min(fa, fb);
                if (!(best < error)) break;
                if (fb <= fa) codes = codesB;
                (scales, zeros, error) = (sa, za, best);
                accepted++;
            }
        }

        double sse = 0;
        foreach (var (r0, len) in RowChunks(w0))
        {
            using var chunk = NewDisposeScope();
            Tensor wHat = TensorAffineQuantizer.Dequantize(codes.narrow(0, r0, len), scales.narrow(0, r0, len), zeros.narrow(0, r0, len), g);
            sse += (w0.narrow(0, r0, len) - wHat).Squared().sum(ScalarType.Float64).item<double>();
        }
        double mse = sse / ((double)rows * n);
        if (w0.device.type == DeviceType.CUDA) cuda.synchronize();
        var report = new LayerQuantReport(layer, config.Mode, config.ActOrder, rtnError, gptqError, error, mse,
            sw.Elapsed.TotalSeconds, factor.PercDampUsed, factor.Lambda, factor.Retries, dead, accepted);
        var quantized = new QuantizedTensor(codes.to(ScalarType.Byte).MoveToOuterDisposeScope(),
            scales.contiguous().MoveToOuterDisposeScope(), zeros.contiguous().MoveToOuterDisposeScope(), spec, g);
        return new LayerQuantResult(quantized, report);
    }

    /// <summary>tr(ΔW H ΔWᵀ) = Σ (ΔW H) ⊙ ΔW for ΔW [rows, n], H [n, n]; accumulated in fp64.</summary>
    public static double HessianError(Tensor deltaW, Tensor h)
    {
        using var scope = NewDisposeScope();
        return deltaW.matmul(h).mul_(deltaW).sum(ScalarType.Float64).item<double>();
    }

    /// <summary>tr(ΔW H ΔWᵀ) for ΔW = W − dequant(codes; scales, zeros), in row chunks (<see cref="RowChunks"/>) so that a
    /// large layer (a 128256-row head) never holds more than a chunk's [rows, n] fp32 temporaries.</summary>
    private static double CodesError(Tensor w0, Tensor codes, Tensor scales, Tensor zeros, int g, Tensor h)
    {
        double sum = 0;
        foreach (var (r0, len) in RowChunks(w0))
        {
            using var chunk = NewDisposeScope();
            Tensor wHat = TensorAffineQuantizer.Dequantize(codes.narrow(0, r0, len), scales.narrow(0, r0, len), zeros.narrow(0, r0, len), g);
            sum += HessianError(w0.narrow(0, r0, len) - wHat, h);
        }
        return sum;
    }

    /// <summary>Row ranges of at most 2^26 elements (256 MiB in fp32) of a [rows, n] matrix; one range for most layers.</summary>
    private static IEnumerable<(long R0, long Len)> RowChunks(Tensor w)
    {
        long rows = w.shape[0], step = Math.Max(1, (1L << 26) / Math.Max(1, w.shape[1]));
        for (long r0 = 0; r0 < rows; r0 += step) yield return (r0, Math.Min(step, rows - r0));
    }

    /// <summary>Row grouping: the pass on rows [r0, r0 + R) at a time; each block works on its own copy of W's rows. R = 0
    /// (automatic): rows in blocks of at most 2^28 elements (1 GiB of fp32) on the GPU — all rows for every linear of an
    /// 8B decoder block, a 128256-row head in two — and 2^26 on the host.</summary>
    private static Tensor RunRowBlocks(Tensor wp, Tensor u, Tensor scales, Tensor zeros, int[] groupOf, int g, bool dynamic,
        QuantSpec spec, AthenaConfig config)
    {
        long rows = wp.shape[0];
        // automatic: 2^28 values a block on the GPU (one kernel launch covers more rows), 2^26 on the host, where each
        // block's copy of W and its codes are host memory (a 128256-row head: 2 × 0.25 GB a block instead of 2 × 1 GB)
        long values = wp.device.type == DeviceType.CUDA ? 1L << 28 : 1L << 26;
        long step = config.RowBlockSize == 0 ? Math.Max(1, Math.Min(rows, values / Math.Max(1, wp.shape[1]))) : config.RowBlockSize;
        Tensor Block(long r0, long len)
        {
            var quantizer = new AffineColumnQuantizer(scales.narrow(0, r0, len), zeros.narrow(0, r0, len), groupOf, g, dynamic, spec, config.GroupGrid);
            return GptqColumnPass.Run(wp.narrow(0, r0, len).clone(), u, quantizer, config.BlockSize, config.ColumnPass == ColumnPassEngine.Eager);
        }
        if (step >= rows) return Block(0, rows);
        // each block's codes copied into the result as soon as they exist, as bytes (codes are integers 0..255; every
        // reader converts them): the result and one block, not every block in fp32 and then their concatenation (a
        // head's fp32 codes are 2.1 GB, its bytes 0.5 GB)
        Tensor codes = empty(rows, wp.shape[1], dtype: ScalarType.Byte, device: wp.device);
        for (long r0 = 0; r0 < rows; r0 += step)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(step, rows - r0);
            codes.narrow(0, r0, len).copy_(Block(r0, len));
        }
        return codes;
    }

    /// <summary>Column indices by descending value; equal values keep ascending index (deterministic).</summary>
    private static int[] DescendingOrder(Tensor diag)
    {
        float[] values = diag.cpu().data<float>().ToArray();
        int[] order = Enumerable.Range(0, values.Length).ToArray();
        return order.OrderByDescending(i => values[i]).ThenBy(i => i).ToArray();
    }
}
