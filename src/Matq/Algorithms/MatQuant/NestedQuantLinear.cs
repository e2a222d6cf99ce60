// Contract: a linear whose weight is trained for Matryoshka slicing: learnable latent W [out, in], log α and z
// [out, nGroups]; its forward uses ŵ_r (r = Bits) with straight-through gradients to W, α and z, bit-identical to what
// serving the exported codes at r bits produces. Bits = 0 runs the frozen float weight (the distillation teacher).
//
// Math (c master bits, k = c − r, g columns per group, α = exp(log α), z̄ = round(z) with a pass-through gradient):
//   u   = clamp(W/α + z̄, −½, h_r)                            [out, in] continuous code (α, z̄ expanded per group)
//   h_r = (2^r − ½)·2^k − ½                                    the slice's range: codes ≥ h_r + ½ are clamped by the slice
//         (h_r = 2^c − ½ at r = c or with extra precision, where only round() clips)
//   q   = clamp(round(W/α) + z̄, 0, 2^c − 1)                   master code, as TensorAffineQuantizer computes it
//   q_r = min(⌊q/2^k + ½⌋, 2^r − 1)·2^k                        slice (no min with extra precision: bucket 2^r kept)
//   ŵ_r = α·(STE(q_r) − z̄),  STE(q_r) = q_r forward, ∂/∂u = 1 (the clamp masks the codes round() or the slice clips)
// so ∂ŵ/∂W = 1 inside the slice's range (0 outside), ∂ŵ/∂α = q_r − u inside and q_r − z̄ outside (LSQ's step gradient,
// Esser et al. 2020, through the slice; the clipped value's own gradient), ∂ŵ/∂z = −α outside, 0 inside. Clamping u only
// to the master range instead would give the codes the r-bit slice clips (e.g. q ≥ 224 at r = 2) ∂ŵ/∂W = 1 and
// ∂ŵ/∂α = q_r − u < 0, pulling α the wrong way (the same slice-range STE as OmniQuant's LwcLinear).
// Grid = MinMax (frozen min-max): α, z are not parameters but the asymmetric (or the spec's symmetric) min-max of the
// current W, recomputed at every forward without gradient, exactly as TensorAffineQuantizer.ComputeParams; only W trains.
using Matq.Algorithms.EfQat;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.MatQuant;

public sealed class NestedQuantLinear : nn.Module<Tensor, Tensor>, IEfQatLayer
{
    private readonly Parameter weight;       // [out, in] fp32 latent weight
    private readonly Parameter log_scale;    // [out, nGroups] log α
    private readonly Parameter zero;         // [out, nGroups] z (continuous; rounded in the forward)
    private readonly Tensor _float;          // [out, in] the original float weight, frozen
    private readonly QuantSpec _spec;        // master bits, group layout and scheme of the min-max grid

    /// <summary>Starts from float weight <paramref name="w"/> [out, in] with min-max parameters at <paramref name="spec"/>'s bits.</summary>
    public NestedQuantLinear(string name, Tensor w, QuantSpec spec) : base(name)
    {
        ArgumentNullException.ThrowIfNull(spec);
        using var scope = NewDisposeScope();
        var w32 = w.detach().to(ScalarType.Float32).clone();
        var (a, z) = TensorAffineQuantizer.ComputeParams(w32, spec);
        GroupSize = spec.EffectiveGroupSize(checked((int)w32.shape[1]));
        _spec = spec;
        MasterBits = spec.Bits;
        Bits = spec.Bits;
        weight = new Parameter(w32.clone().MoveToOuterDisposeScope());
        log_scale = new Parameter(a.log().MoveToOuterDisposeScope());
        zero = new Parameter(z.clone().MoveToOuterDisposeScope());
        _float = w32.MoveToOuterDisposeScope();
        RegisterComponents();
    }

    /// <summary>Starts from quantized parameters (e.g. Athena's): latent W = α(q − z) [out, in], so the master codes
    /// at the start are exactly <paramref name="codes"/>; α, z [out, nGroups] (z integer-valued), contiguous groups.</summary>
    public NestedQuantLinear(string name, Tensor codes, Tensor alpha, Tensor zeroPoints, int groupSize, int masterBits, Tensor floatWeight) : base(name)
    {
        using var scope = NewDisposeScope();
        var a = alpha.detach().to(ScalarType.Float32);
        var z = zeroPoints.detach().to(ScalarType.Float32);
        var latent = TensorAffineQuantizer.Dequantize(codes, a, z, groupSize);
        GroupSize = groupSize;
        _spec = groupSize > 0 ? QuantSpec.Grouped(masterBits, groupSize) : QuantSpec.PerChannel(masterBits);
        MasterBits = masterBits;
        Bits = masterBits;
        weight = new Parameter(latent.contiguous().MoveToOuterDisposeScope());
        log_scale = new Parameter(a.log().contiguous().MoveToOuterDisposeScope());
        zero = new Parameter(z.clone().MoveToOuterDisposeScope());
        _float = floatWeight.detach().to(ScalarType.Float32).clone().MoveToOuterDisposeScope();
        RegisterComponents();
    }

    public int GroupSize { get; }
    public long OutChannels => weight.shape[0];
    /// <summary>EfQAT: rows whose latent weights (and α, z) get gradients; null = all.</summary>
    /// <summary>EfQAT: Inject, or else the gather-GEMM function (PartialWeightGrad.LinearRows), for the selected rows' gradients.</summary>
    public ConvWeightGradMethod GradMethod { get; set; } = PartialWeightGrad.DefaultLinearMethod;
    public Tensor? SelectedRows { get; set; }
    /// <summary>EfQAT: the other rows (their weights, α and z stay as they are).</summary>
    public Tensor? FrozenRows { get; set; }
    public int MasterBits { get; }
    /// <summary>The slice the forward uses: 1..MasterBits, or 0 for the frozen float weight.</summary>
    public int Bits { get; set; }
    public bool ExtraPrecision { get; set; }
    /// <summary>Learned (log α, z train) or MinMax (min-max of the current W at every forward; set before training).</summary>
    public QatGrid Grid { get; set; }

    public Parameter Weight => weight;
    public Parameter LogScale => log_scale;
    public Parameter Zero => zero;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        if (Bits != 0 && SelectedRows is { } rows && rows.numel() < OutChannels)
        {
            // EfQAT: ŵ of every row for the values, but only the selected rows' ŵ (from their W, α, z) is differentiable,
            // so the backward forms weight-side gradients of S rows only (see PartialWeightGrad.LinearRows).
            Tensor full;
            using (no_grad()) full = SlicedWeight(Bits).to(x.dtype);
            if (rows.numel() == 0) return F.linear(x, full).MoveToOuterDisposeScope();
            Tensor sel;
            if (Grid == QatGrid.MinMax)
            {
                var (a, z) = MinMaxGrid();
                sel = Nested(weight.index_select(0, rows), a.index_select(0, rows), z.index_select(0, rows),
                    GroupSize, MasterBits, Bits, ExtraPrecision, sliceRange: true).to(x.dtype);
            }
            else sel = Nested(weight.index_select(0, rows), log_scale.index_select(0, rows).exp(), zero.index_select(0, rows),
                GroupSize, MasterBits, Bits, ExtraPrecision, sliceRange: true).to(x.dtype);
            return (GradMethod == ConvWeightGradMethod.Inject ? PartialWeightGrad.InjectLinearRows(x, full, sel, rows)
                : PartialWeightGrad.LinearRows(x, full, sel, rows)).MoveToOuterDisposeScope();
        }
        var w = Bits == 0 ? _float : SlicedWeight(Bits);
        return F.linear(x, w.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>ŵ_r [out, in] fp32 with the straight-through gradients of the header.</summary>
    public Tensor SlicedWeight(int r)
    {
        if (Grid == QatGrid.Learned) return Nested(weight, log_scale.exp(), zero, GroupSize, MasterBits, r, ExtraPrecision, sliceRange: true);
        using var scope = NewDisposeScope();
        var (a, z) = MinMaxGrid();
        return Nested(weight, a, z, GroupSize, MasterBits, r, ExtraPrecision, sliceRange: true).MoveToOuterDisposeScope();
    }

    /// <summary>α and integer z [out, nGroups] of the current grid, no gradient: exp(log α) and round(z) clamped (Learned),
    /// or the min-max of the current latent W (MinMax).</summary>
    public (Tensor Scales, Tensor Zeros) CurrentGrid()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (a, z) = Grid == QatGrid.MinMax ? MinMaxGrid() : (log_scale.detach().exp(), zero.detach().round().clamp(0, (1 << MasterBits) - 1));
        return (a.contiguous().MoveToOuterDisposeScope(), z.contiguous().MoveToOuterDisposeScope());
    }

    // α, z [out, nGroups] = min-max of the current W at the master bits (no gradient).
    private (Tensor Scales, Tensor Zeros) MinMaxGrid() => TensorAffineQuantizer.ComputeParams(weight.detach(), _spec);

    /// <summary>The exported parameters: uint8 codes q [out, in], α and integer z [out, nGroups] (no gradient).</summary>
    public (Tensor Codes, Tensor Scales, Tensor Zeros) Export()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (a, z) = CurrentGrid();
        var codes = TensorAffineQuantizer.Quantize(weight.detach(), a, z, GroupSize, MasterBits);
        return (codes.MoveToOuterDisposeScope(), a.contiguous().MoveToOuterDisposeScope(), z.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>The header's ŵ_r for latent w [out, in], α, z [out, nGroups] (z is rounded and clamped to 0..2^c − 1 here).
    /// With <paramref name="sliceRange"/> the continuous code u is clamped to the slice's own range instead of the master's,
    /// u ∈ [−½, (2^r − ½)·2^(c−r) − ½] (the codes whose slice is not clamped at 2^r − 1), so weights the slice clips get
    /// LSQ's gradient ∂ŵ/∂α = q_r − z̄ rather than q_r − u (which points the other way there); learnable-clipping bases
    /// need it (OmniQuant's LWC, where the slice's clamp is what the range parameters trade against) and so does the QAT base
    /// (<see cref="SlicedWeight"/>). Forward values are unchanged.</summary>
    public static Tensor Nested(Tensor w, Tensor alpha, Tensor zero, int groupSize, int masterBits, int sliceBits, bool extraPrecision,
        bool sliceRange = false)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        using var scope = NewDisposeScope();
        return Slice(Master(w, alpha, zero, groupSize, masterBits), sliceBits, extraPrecision, sliceRange).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The part of <see cref="Nested"/> every width shares: α and z̄ expanded to [out, in], W/α + z̄ before the slice's
    /// clamp (with its gradients), and the master codes q (no gradient). Training several widths on the same weights in one
    /// step (MatQuant's objective) computes it once and <see cref="Slice"/>s it per width: the same values and the same
    /// gradients up to the order their sums are added in. The tensors belong to the caller's dispose scope.
    /// </summary>
    public static NestedMaster Master(Tensor w, Tensor alpha, Tensor zero, int groupSize, int masterBits)
    {
        int qmax = (1 << masterBits) - 1;
        long rows = w.shape[0], cols = w.shape[1];
        Tensor zr = StraightThrough.Apply(zero, t => t.round().clamp(0, qmax));                 // [out, nGroups]
        Tensor wv, a, z;
        if (cols % groupSize == 0 && alpha.shape[1] == cols / groupSize)
        {
            // whole groups: W viewed [out, nGroups, g] and α, z̄ broadcast from [out, nGroups, 1] (no [out, in] copies; the
            // same values per element as expanding them)
            long groups = cols / groupSize;
            wv = w.reshape(rows, groups, groupSize);
            a = alpha.unsqueeze(2);
            z = zr.unsqueeze(2);
        }
        else
        {
            wv = w;
            a = GroupLayout.Expand(alpha, groupSize, cols);                                    // [out, in]
            z = GroupLayout.Expand(zr, groupSize, cols);                                       // [out, in]
        }
        Tensor u = wv.div(a).add(z);                                                           // clamped per slice
        Tensor q;
        using (no_grad())   // same float ops as TensorAffineQuantizer.QuantizeFloat, so export/serving match exactly
            q = wv.detach().div(a.detach()).round().add(z.detach()).clamp(0, qmax);
        return new NestedMaster(a, z, u, q, masterBits, rows, cols);
    }

    /// <summary>ŵ_r from a shared <see cref="Master"/>: the header's slice and straight-through estimator.</summary>
    public static Tensor Slice(NestedMaster m, int sliceBits, bool extraPrecision, bool sliceRange)
    {
        QuantSpec.ValidateSliceBits(m.MasterBits, sliceBits);
        using var scope = NewDisposeScope();
        int qmax = (1 << m.MasterBits) - 1, k = m.MasterBits - sliceBits, top = (1 << sliceBits) - 1;
        double high = sliceRange && k > 0 && !extraPrecision ? (top + 0.5) * (1 << k) - 0.5 : qmax + 0.5;
        Tensor u = m.Unclamped.clamp(-0.5, high);                                              // gradient 0 where round() or the slice clips
        Tensor qr;
        using (no_grad())
        {
            // same float ops as TensorNestedSlice, so export/serving match exactly
            Tensor q = m.Codes;
            if (k > 0)
            {
                Tensor s = q.div(1 << k).add(0.5).floor();
                if (!extraPrecision) s = s.clamp_max(top);
                q = s.mul(1 << k);
            }
            qr = q;
        }
        Tensor ste = StraightThrough.Apply(u, _ => qr.clone());
        return ste.sub(m.Zero).mul(m.Alpha).reshape(m.Rows, m.Cols).MoveToOuterDisposeScope();
    }
}

/// <summary>What the widths of <see cref="NestedQuantLinear.Nested"/> share (see <see cref="NestedQuantLinear.Master"/>):
/// α and z̄ (broadcast [out, nGroups, 1] against W/α + z̄ and q [out, nGroups, g] when the groups are whole, else all
/// expanded [out, in]), W/α + z̄ (differentiable, not yet clamped), the master codes q (no gradient); ŵ is [Rows, Cols].</summary>
public readonly record struct NestedMaster(Tensor Alpha, Tensor Zero, Tensor Unclamped, Tensor Codes, int MasterBits, long Rows, long Cols);
