// Contract: MSE-optimal clipping for affine quantization. For weights [out, in] and a per-channel or grouped spec,
// returns α, z [out, nGroups] such that every group's ‖w − ŵ‖² is ≤ its min-max value (min-max is the start point
// and a candidate replaces it only when strictly better). Vectorized over all groups; C# loops only over the grid.
using Matq.Runtime;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Rtn;

public static class MseClipSearch
{
    /// <summary>
    /// For each factor f of <paramref name="grid"/> (f &lt; 1), candidate range [f·lo, f·hi] of every group (lo ≤ 0 ≤ hi,
    /// the zero-inclusive min/max; symmetric: f·max|w|); keeps per group the α, z with the least squared error.
    /// </summary>
    public static (Tensor Scales, Tensor Zeros) Params(Tensor w, QuantSpec spec, IReadOnlyList<double> grid)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(grid);
        if (spec.Granularity == Granularity.PerTensor)
            throw new ArgumentException("the MSE clip search works per channel or per group, not per tensor", nameof(spec));
        GroupLayout.CheckMatrix(w, nameof(w));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (bestA, bestZ) = TensorAffineQuantizer.ComputeParams(w, spec);   // also rejects NaN weights
        Tensor grouped = Grouped(w.detach().to(ScalarType.Float32), spec);   // [out, G, g], zero-padded
        Tensor bestErr = GroupError(grouped, bestA, bestZ, spec.QMax);       // [out, G]
        Tensor lo = grouped.amin(new long[] { 2 }).clamp_max(0);
        Tensor hi = grouped.amax(new long[] { 2 }).clamp_min(0);

        foreach (double f in grid)
        {
            if (f >= 1.0) continue;   // f = 1 is the min-max start point
            using var step = NewDisposeScope();
            var (a, z) = Candidate(lo.mul(f), hi.mul(f), spec);
            Tensor err = GroupError(grouped, a, z, spec.QMax);
            Tensor better = err.lt(bestErr);
            bestA = where(better, a, bestA).MoveToOuterDisposeScope();
            bestZ = where(better, z, bestZ).MoveToOuterDisposeScope();
            bestErr = where(better, err, bestErr).MoveToOuterDisposeScope();
        }
        return (bestA.contiguous().MoveToOuterDisposeScope(), bestZ.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>Per-group squared error Σ(w − α(q − z))² [out, G] of weights [out, in] under α, z [out, G].</summary>
    public static Tensor GroupErrors(Tensor w, Tensor scales, Tensor zeros, QuantSpec spec)
    {
        using var scope = NewDisposeScope();
        return GroupError(Grouped(w.detach().to(ScalarType.Float32), spec), scales, zeros, spec.QMax).MoveToOuterDisposeScope();
    }

    // [out, in] → [out, G, g]; the zero padding of a short last group adds no error (0 quantizes to z, back to 0).
    private static Tensor Grouped(Tensor x, QuantSpec spec)
    {
        long rows = x.shape[0], cols = x.shape[1];
        int g = spec.EffectiveGroupSize(checked((int)cols));
        long groups = (cols + g - 1) / g, pad = groups * g - cols;
        Tensor padded = pad == 0 ? x : nn.functional.pad(x, new long[] { 0, pad });
        return padded.reshape(rows, groups, g);
    }

    // Same float32 ops as TensorAffineQuantizer.QuantizeFloat/Dequantize, broadcast over the group axis.
    private static Tensor GroupError(Tensor grouped, Tensor a, Tensor z, int qmax)
    {
        Tensor a3 = a.unsqueeze(2), z3 = z.unsqueeze(2);
        Tensor q = grouped.div(a3).round().add(z3).clamp(0, qmax);
        Tensor deq = (q - z3).mul(a3);
        return (grouped - deq).Squared().sum(dim: 2L);
    }

    // The min-max formulas of ARCHITECTURE.md on an already zero-inclusive, shrunk range.
    private static (Tensor A, Tensor Z) Candidate(Tensor lo, Tensor hi, QuantSpec spec)
    {
        if (spec.Scheme == QuantScheme.Symmetric)
        {
            Tensor absMax = maximum(lo.neg(), hi);
            Tensor a = absMax.div(full_like(absMax, (1 << (spec.Bits - 1)) - 1)).clamp_min(AffineQuantizer.MinScale);
            return (a, full_like(a, 1 << (spec.Bits - 1)));
        }
        Tensor range = hi - lo;
        Tensor alpha = range.div(full_like(range, spec.QMax)).clamp_min(AffineQuantizer.MinScale);
        Tensor zero = lo.neg().div(alpha).round().clamp(0, spec.QMax);
        return (alpha, zero);
    }
}
