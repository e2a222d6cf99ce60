// Contract: the rounding rule of GptqColumnPass, swappable (as the quantizer object of the reference gptq.py): given a
// column's current, error-updated weights it returns the column's codes and the residual that GPTQ feeds back. The pass
// owns the error feedback; a quantizer owns its grid (and may fit a group's grid when the pass reaches its first column).
using Matq.Kernels.Quantization;
using Matq.Quantization;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

internal abstract class ColumnQuantizer
{
    /// <summary>Called before column <paramref name="c"/> (processing order) is quantized. <paramref name="columns"/> gives
    /// columns c..c+len−1 ([rows, len]) at the block's start or with the error feedback so far, for grids fitted on the
    /// fly. Default: a fixed grid, nothing to do.</summary>
    public virtual void BeginColumn(int c, PassColumns columns) { }

    /// <summary>wj [rows]: current values of column <paramref name="c"/>. Writes its float codes into
    /// <paramref name="codes"/> [rows] and returns the residual r [rows] that the pass feeds back as e = r / U_cc
    /// (w_j − ŵ_j for a single grid; a weighted mean of such residuals for nested grids).</summary>
    public abstract Tensor Quantize(int c, Tensor wj, Tensor codes);
}

/// <summary>
/// GPTQ/Athena's affine rule on a grid of α, z [rows, nGroups] fp32; <paramref name="groupOf"/>[c] is the group of
/// processing column c. Dynamic: group k's (α, z) are min-max parameters of its columns, computed (and written into the
/// scales/zeros tensors) when its first column is reached, from the columns as <paramref name="grid"/> says: as they
/// were when the pass's block started (upstream GPTQ) or error-updated so far; this needs natural column order
/// (groupOf[c] = c / g). Otherwise the grid is fixed.
///   q_j = clamp(round(w_j/α) + z, 0, 2^c−1),   r_j = w_j − α(q_j − z)                            [rows]
/// </summary>
internal sealed class AffineColumnQuantizer : ColumnQuantizer
{
    private readonly Tensor _scales, _zeros;
    private readonly int[] _groupOf;
    private readonly int _groupSize, _qmax;
    private readonly bool _dynamic;
    private readonly GroupGrid _grid;
    private readonly QuantSpec _channelSpec;

    public AffineColumnQuantizer(Tensor scales, Tensor zeros, int[] groupOf, int groupSize, bool dynamic, QuantSpec spec,
        GroupGrid grid = GroupGrid.BlockStart)
    {
        (_scales, _zeros, _groupOf, _groupSize, _dynamic, _grid) = (scales, zeros, groupOf, groupSize, dynamic, grid);
        _qmax = spec.QMax;
        _channelSpec = QuantSpec.PerChannel(spec.Bits, spec.Scheme);
    }

    /// <summary>α, z [rows, nGroups] (filled during the pass when the grid is dynamic).</summary>
    public Tensor Scales => _scales;
    public Tensor Zeros => _zeros;

    /// <summary>The group of each processing column.</summary>
    public IReadOnlyList<int> GroupOf => _groupOf;

    public int QMax => _qmax;

    /// <summary>True when no grid depends on this block's error feedback (a fixed grid, or the block-start rule), so
    /// every grid of a block can be fitted before its columns are quantized (AffineBlockPass).</summary>
    public bool FixedWithinBlock => !_dynamic || _grid == GroupGrid.BlockStart;

    public override void BeginColumn(int c, PassColumns columns)
    {
        if (!_dynamic || c % _groupSize != 0) return;
        int k = _groupOf[c], len = Math.Min(_groupSize, _groupOf.Length - c);
        Tensor group = _grid == GroupGrid.BlockStart ? columns.AtBlockStart(len) : columns.Current(len);        // [rows, len]
        var (alpha, zero) = TensorAffineQuantizer.ComputeParams(group, _channelSpec);                           // [rows, 1]
        _scales.narrow(1, k, 1).copy_(alpha);
        _zeros.narrow(1, k, 1).copy_(zero);
        alpha.Dispose();
        zero.Dispose();
    }

    public override Tensor Quantize(int c, Tensor wj, Tensor codes)
    {
        int k = _groupOf[c];
        Tensor alpha = _scales.select(1, k), zero = _zeros.select(1, k);     // [rows]
        Tensor q = wj.div(alpha).round_().add_(zero).clamp_(0, _qmax);       // same ops as TensorAffineQuantizer
        codes.copy_(q);
        return wj.sub(q.sub_(zero).mul_(alpha));                             // w − ŵ
    }
}
