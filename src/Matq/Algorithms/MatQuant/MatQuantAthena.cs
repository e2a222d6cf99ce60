// Contract: MatQuant's Athena base for one linear W [out, in] with calibration Hessian H [in, in]: int8 (c-bit) master
// codes chosen to minimize the λ-weighted Hessian error of their nested slices, with GPTQ error feedback; never worse
// on that objective than Athena's own c-bit codes sliced, and identical to Athena when R = {c}.
//
// Objective (ŵ_r(q) = α(S(q, r)·2^(c−r) − z), S the nested slice, ΔW_r = W − Ŵ_r):
//   E(Q) = Σ_{r∈R} λ_r · tr(ΔW_r H ΔW_rᵀ)
// Procedure:
//   0. R = {c}: E is Athena's own objective, so AthenaSolver's result is returned unchanged.
//   1. Grid: AthenaSolver at c bits (GPTQ pass + Hessian-weighted refits of α, z) → α, z [out, nGroups], codes Q_a.
//      Reusing its grid keeps every bit of Athena's scale search; the nested step only re-chooses the codes. The pass
//      fits group grids by the config's GroupGrid rule (upstream GPTQ's block-start by default); step 2's grids are fixed.
//   2. Nested error-feedback pass over columns j: GptqColumnPass (natural order, lazy blocks of B) with the rounding
//      rule of NestedColumnQuantizer (below), U the upper Cholesky factor of (H + λI)⁻¹ (HessianFactorizer, same
//      dampening) and d_j = U_jj:
//        q_j  = argmin over q ∈ {round(w_j/α) + z + δ : |δ| ≤ 2^(c − min R)} ∩ [0, 2^c − 1] of
//               Σ_r λ_r (w_j − ŵ_r(q))²                  (per row; d_j is common to all candidates, so it drops out)
//        e_j  = Σ_r λ_r (w_j − ŵ_r(q_j)) / Σ_r λ_r / d_j   the λ-weighted error, fed back as in GPTQ:
//        W[:, j+1:] −= e_j ⊗ U[j, j+1:]
//      The window ±2^(c − min R) spans one whole bucket of the coarsest slice on each side, so every combination of
//      slice values reachable near w is searched (a wider window only adds codes farther from w at every width).
//   1b. A second, nested-friendly grid (NestedGrid): sliced c-bit min-max codes clamp the coarsest slice a bucket short
//      of the group's max (S(q, 2)·64 ≤ 192 of 255), so per (row, group) α is stretched by γ ∈ [1, γ_max] (z rescaled)
//      where that lowers the diag(H)-weighted nested round-to-nearest error.
//   3. Step 2 runs on both grids; keep whichever of Q_a (Athena's codes, its grid) and the two nested results has the
//      lowest E (so the result never loses to Athena's codes sliced).
using Matq.Runtime;
using Matq.Algorithms.Athena;
using Matq.Kernels.Gptq;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.MatQuant;

/// <summary>One layer's MatQuant-Athena result: codes uint8 [out, in], α, z [out, nGroups]; E of the kept codes and of
/// Athena's codes sliced (equal when Athena's were kept or R = {c}); the per-width Hessian errors of the kept codes.</summary>
public sealed record NestedLayerResult(Tensor Codes, Tensor Scales, Tensor Zeros, int GroupSize, double NestedError, double AthenaSlicedError,
    IReadOnlyList<double> PerWidthError, bool NestedKept, double Seconds) : IDisposable
{
    public void Dispose()
    {
        Codes.Dispose(); Scales.Dispose(); Zeros.Dispose();
    }
}

public static class MatQuantAthena
{
    /// <summary>Quantizes W [out, in] (fp32) given H [in, in]; <paramref name="athena"/>'s spec must have c = config.MasterBits.</summary>
    public static NestedLayerResult Quantize(string layer, Tensor weight, Tensor hessian, AthenaConfig athena, MatQuantConfig config)
    {
        ArgumentNullException.ThrowIfNull(athena);
        ArgumentNullException.ThrowIfNull(config);
        if (athena.Spec.Bits != config.MasterBits)
            throw new ArgumentException($"Athena spec has {athena.Spec.Bits} bits, MatQuant master bits are {config.MasterBits}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var solved = AthenaSolver.Quantize(layer, weight, hessian, athena);
        var w0 = weight.detach().to(ScalarType.Float32);
        var h = hessian.detach().to(ScalarType.Float32, w0.device);
        int g = solved.Weights.GroupSize, c = config.MasterBits;
        Tensor scales = solved.Weights.Scales, zeros = solved.Weights.Zeros;
        Tensor codesA = solved.Weights.Codes;
        var errA = PerWidthErrors(w0, h, codesA, scales, zeros, g, c, config.Bits, config.ExtraPrecision);
        double eA = Weighted(errA, config.Lambda);
        Tensor kept = codesA;
        var keptErr = errA;
        double eKept = eA;
        bool nestedKept = false;
        if (!(config.Bits.Count == 1 && config.Bits[0] == c))
        {
            Tensor hFixed = h.clone(), w = w0.clone();
            int dead = HessianFactorizer.FixDeadInputs(hFixed, w);
            var factor = HessianFactorizer.Factor(layer, hFixed, athena.PercDamp, athena.MaxDampRetries, dead);
            var (sg, zg) = NestedGrid(w0, h.diagonal(), scales, zeros, g, config);
            foreach (var (s, z) in new[] { (scales, zeros), (sg, zg) })
            {
                var nested = new NestedColumnQuantizer(s, z, g, config);
                Tensor codesN = GptqColumnPass.Run(w.clone(), factor.U, nested, athena.BlockSize).to(ScalarType.Byte);
                var errN = PerWidthErrors(w0, h, codesN, s, z, g, c, config.Bits, config.ExtraPrecision);
                double eN = Weighted(errN, config.Lambda);
                if (eN < eKept) { kept = codesN; keptErr = errN; eKept = eN; nestedKept = true; (scales, zeros) = (s, z); }
            }
        }
        return new NestedLayerResult(kept.clone().MoveToOuterDisposeScope(), scales.clone().MoveToOuterDisposeScope(), zeros.clone().MoveToOuterDisposeScope(),
            g, eKept, eA, keptErr, nestedKept, sw.Elapsed.TotalSeconds);
    }

    /// <summary>tr(ΔW_r H ΔW_rᵀ) for each r in <paramref name="bits"/>, ΔW_r = W − ŵ_r(codes).</summary>
    public static double[] PerWidthErrors(Tensor w, Tensor h, Tensor codes, Tensor scales, Tensor zeros, int groupSize, int masterBits,
        IReadOnlyList<int> bits, bool extraPrecision = false)
    {
        using var scope = NewDisposeScope();
        var result = new double[bits.Count];
        for (int i = 0; i < bits.Count; i++)
        {
            var sliced = extraPrecision ? TensorNestedSlice.SliceExtra(codes, masterBits, bits[i]).Codes : TensorNestedSlice.Slice(codes, masterBits, bits[i]);
            var wr = TensorNestedSlice.Dequantize(sliced, scales, zeros, groupSize, masterBits, bits[i]);
            result[i] = AthenaSolver.HessianError(w - wr, h);
        }
        return result;
    }

    public static double Weighted(IReadOnlyList<double> errors, IReadOnlyList<double> lambda) => errors.Select((e, i) => e * lambda[i]).Sum();

    /// <summary>Step 1b: per (row, group), α' = γ·α and z' = clamp(round(z/γ)) for γ on a grid from 1 to
    /// γ_max = (2^c − 1)/((2^m − 1)·2^(c−m)), m = min R — the stretch at which the coarsest slice's top code reaches the
    /// group's max instead of being clamped a bucket short — keeping the γ with the least diag(H)-weighted nested RTN error.</summary>
    private static (Tensor Scales, Tensor Zeros) NestedGrid(Tensor w, Tensor hdiag, Tensor scales, Tensor zeros, int groupSize, MatQuantConfig config)
    {
        int c = config.MasterBits, m = config.Bits.Min(), qmax = (1 << c) - 1;
        double gammaMax = (double)qmax / (((1 << m) - 1) * (double)(1 << (c - m)));
        long rows = w.shape[0], cols = w.shape[1], groups = scales.shape[1];
        var bestS = scales.clone();
        var bestZ = zeros.clone();
        Tensor bestE = full(rows, groups, double.PositiveInfinity, dtype: ScalarType.Float32, device: w.device);
        const int steps = 8;
        for (int i = 0; i <= steps; i++)
        {
            using var scope = NewDisposeScope();
            double gamma = 1 + (gammaMax - 1) * i / steps;
            Tensor s = scales.mul(gamma), z = zeros.div(gamma).round().clamp(0, qmax);
            Tensor a = GroupLayout.Expand(s, groupSize, cols), zz = GroupLayout.Expand(z, groupSize, cols);
            Tensor q = w.div(a).round().add(zz).clamp(0, qmax);
            Tensor cost = torch.zeros_like(w);
            for (int b = 0; b < config.Bits.Count; b++)
                cost.add_((w - SliceValue(q, a, zz, c, config.Bits[b], config.ExtraPrecision)).Squared().mul(config.Lambda[b]));
            cost.mul_(hdiag.unsqueeze(0));
            long pad = groups * groupSize - cols;
            Tensor perGroup = (pad == 0 ? cost : nn.functional.pad(cost, new long[] { 0, pad })).reshape(rows, groups, groupSize).sum(dim: 2L);
            Tensor better = perGroup.lt(bestE);
            bestE.copy_(where(better, perGroup, bestE));
            bestS.copy_(where(better, s, bestS));
            bestZ.copy_(where(better, z, bestZ));
        }
        return (bestS, bestZ);
    }

    // ŵ_r(q) = α(S(q, r)·2^(c−r) − z) on float codes, the same ops as TensorNestedSlice (exact for integers ≤ 255)
    internal static Tensor SliceValue(Tensor q, Tensor alpha, Tensor zero, int c, int r, bool extra)
    {
        int k = c - r;
        Tensor s = q;
        if (k > 0)
        {
            s = q.add(1 << (k - 1)).div(1 << k).floor();
            if (!extra) s = s.clamp_max((1 << r) - 1);
            s = s.mul(1 << k);
        }
        return s.sub(zero).mul(alpha);
    }
}

/// <summary>
/// Step 2's rounding rule for GptqColumnPass on a fixed grid α, z [rows, nGroups] (natural column order, group c / g):
/// per row, the c-bit code near round(w/α) + z whose nested slices have the least λ-weighted squared error, and the
/// λ-weighted mean residual as the error GPTQ feeds back (the pass divides it by U_jj):
///   cand = clamp(round(w_j/α) + z + δ, 0, 2^c−1), δ ∈ [−2^(c−min R), 2^(c−min R)]                 [rows, K]
///   q_j  = argmin_cand Σ_r λ_r (w_j − ŵ_r(cand))²,   r_j = Σ_r λ_r (w_j − ŵ_r(q_j)) / Σ_r λ_r           [rows]
/// </summary>
internal sealed class NestedColumnQuantizer : ColumnQuantizer, IBlockRule
{
    private readonly Tensor _scales, _zeros, _offsets;
    private readonly int _groupSize, _masterBits, _qmax;
    private readonly MatQuantConfig _config;

    public NestedColumnQuantizer(Tensor scales, Tensor zeros, int groupSize, MatQuantConfig config)
    {
        (_scales, _zeros, _groupSize, _config) = (scales, zeros, groupSize, config);
        _masterBits = config.MasterBits;
        _qmax = (1 << _masterBits) - 1;
        Reach = 1 << (_masterBits - config.Bits.Min());
        _offsets = arange(-Reach, Reach + 1, dtype: ScalarType.Float32, device: scales.device).unsqueeze(0);   // [1, K]
    }

    /// <summary>The grid α, z [rows, nGroups], its group size, the candidates' reach 2^(c − min R), the largest code.</summary>
    public Tensor Scales => _scales;
    public Tensor Zeros => _zeros;
    public int GroupSize => _groupSize;
    public int Reach { get; }
    public float QMax => _qmax;
    public float LambdaSum => (float)_config.LambdaSum;

    /// <summary>The trained widths (λ > 0) in R's order, as the block kernel takes them.</summary>
    public NestedWidth[] Widths => _config.Bits.Select((b, i) => (b, i)).Where(x => _config.Lambda[x.i] != 0)
        .Select(x => NestedWidth.Of(_masterBits, x.b, _config.Lambda[x.i], _config.ExtraPrecision)).ToArray();

    /// <summary>The whole pass as one kernel call per block (NestedBlockPass): the eager pass's codes and weights.</summary>
    public bool TryRunBlocks(Tensor w, Tensor u, int blockSize, out Tensor codes) => NestedBlockPass.TryRun(w, u, this, blockSize, out codes);

    public override Tensor Quantize(int c, Tensor wj, Tensor codes)
    {
        int k = c / _groupSize;
        Tensor alpha = _scales.select(1, k).unsqueeze(1), zero = _zeros.select(1, k).unsqueeze(1);    // [rows, 1]
        Tensor center = wj.unsqueeze(1).div(alpha).round().add(zero);                                  // [rows, 1]
        Tensor cand = center.add(_offsets).clamp(0, _qmax);                                            // [rows, K]
        Tensor cost = torch.zeros_like(cand);
        Tensor mean = torch.zeros_like(cand);
        for (int b = 0; b < _config.Bits.Count; b++)
        {
            if (_config.Lambda[b] == 0) continue;
            Tensor wr = MatQuantAthena.SliceValue(cand, alpha, zero, _masterBits, _config.Bits[b], _config.ExtraPrecision);   // [rows, K]
            Tensor diff = wj.unsqueeze(1) - wr;
            cost.add_(diff.Squared().mul(_config.Lambda[b]));
            mean.add_(diff.mul(_config.Lambda[b]));
        }
        Tensor best = cost.argmin(1, keepdim: true);                                                   // [rows, 1]
        codes.copy_(cand.gather(1, best).squeeze(1));
        return mean.gather(1, best).squeeze(1).div(_config.LambdaSum);                                 // [rows]
    }
}
