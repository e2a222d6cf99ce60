// Contract: OmniQuant's learnable weight clipping (LWC, Shao et al. 2024) on one linear: the float weight W [out, in] is
// frozen; per group two logits a, b [out, nGroups] set the clipped range, and the forward uses W fake-quantized at the
// c master bits and sliced to r (Bits) with straight-through gradients to a and b, bit-identical to serving the
// exported codes at r bits. Bits = 0 runs the float weight (the block's target).
//
// Math (lo = min(min W_g, 0), hi = max(max W_g, 0) per group g, as every matq quantizer; γ = m·σ(a), β = m·σ(b) ∈ (0, m),
// m = 1 in OmniQuant; m > 1 (an option) lets the range stretch beyond the group's min/max):
//   asymmetric: α = max((γ·hi − β·lo)/(2^c − 1), MinScale),  z = −β·lo/α   (rounded with a pass-through gradient)
//   symmetric:  α = max(γ·max(−lo, hi)/(2^(c−1) − 1), MinScale), z = 2^(c−1)   (b is unused)
//   ŵ_r = NestedQuantLinear.Nested(W, α, z, r): q = clamp(round(W/α) + round(z), 0, 2^c − 1), sliced to r bits,
//         α·(S(q, r)·2^(c−r) − round(z)); STE through round and slice, with the continuous code clamped to the slice's
//         range (sliceRange), so weights the slice clips pull α the LSQ way (∂ŵ/∂α = q_r − z there).
// At γ = β = 1 (m = 1, a, b → ∞; in float32 σ(a) = 1 exactly for a ≥ 17) α and z equal min-max RTN's and so do the
// codes. The logits start where γ = β = σ(init) (a = init when m = 1); init 4 (σ = 0.982) starts 1.8% inside the
// min-max range, where σ still has slope.
// With LET (LetBlock) the quantized weight is W' = diag(1/so)·W·diag(si), its group range taken from W' (differentiable
// in the scales), and the forward is so ⊙ (ŵ'_r (x / si)) + b: the float function is unchanged, the rounding is W''s.
// The bias b (Qwen2's q/k/v, attention_bias / mlp_bias models) is frozen, kept in float and added in every mode, so the
// block's float targets and its quantized forward are those of the real linear.
using Matq.Algorithms.MatQuant;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.OmniQuant;

public sealed class LwcLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter clip_max;     // [out, nGroups] a, γ = σ(a)
    private readonly Parameter clip_min;     // [out, nGroups] b, β = σ(b)
    private readonly Tensor _weight;         // [out, in] frozen float weight, fp32
    private readonly Tensor? _bias;          // [out] frozen float bias, fp32 (null: none)
    private readonly Tensor _lo, _hi;        // [out, nGroups] zero-inclusive group range of W
    private readonly bool _symmetric;

    /// <summary>LWC for float weight <paramref name="w"/> [out, in] at <paramref name="spec"/> (master bits c), γ and β
    /// bounded by <paramref name="max"/> and starting at σ(<paramref name="init"/>); <paramref name="bias"/> [out] is the
    /// linear's bias, added unquantized.</summary>
    public LwcLinear(string name, Tensor w, QuantSpec spec, double init, double max = 1.0, Tensor? bias = null) : base(name)
    {
        if (!(max >= 1)) throw new ArgumentOutOfRangeException(nameof(max), max, "the bound of γ, β must be ≥ 1");
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Granularity == Granularity.PerTensor) throw new ArgumentException("LWC clips per channel or per group, not per tensor", nameof(spec));
        using var scope = NewDisposeScope();
        _weight = w.detach().to(ScalarType.Float32).clone().MoveToOuterDisposeScope();
        if (bias is not null && (bias.ndim != 1 || bias.shape[0] != _weight.shape[0]))
            throw new ArgumentException($"bias [{string.Join(", ", bias.shape)}] does not match the weight's {_weight.shape[0]} outputs", nameof(bias));
        _bias = bias?.detach().to(ScalarType.Float32).clone().MoveToOuterDisposeScope();
        var (lo, hi) = TensorAffineQuantizer.GroupRange(_weight, spec);
        _lo = lo.MoveToOuterDisposeScope();
        _hi = hi.MoveToOuterDisposeScope();
        GroupSize = spec.EffectiveGroupSize(checked((int)_weight.shape[1]));
        MasterBits = spec.Bits;
        Bits = spec.Bits;
        _symmetric = spec.Scheme == QuantScheme.Symmetric;
        Max = max;
        double p = 1 / (1 + Math.Exp(-init)) / max;                                  // σ(a0) = σ(init)/m
        double a0 = max == 1 ? init : Math.Log(p / (1 - p));
        clip_max = new Parameter(full_like(_lo, a0).MoveToOuterDisposeScope());
        clip_min = new Parameter(full_like(_lo, a0).MoveToOuterDisposeScope(), requires_grad: !_symmetric);
        RegisterComponents();
    }

    public int GroupSize { get; }
    public int MasterBits { get; }
    /// <summary>Upper bound m of γ and β.</summary>
    public double Max { get; }
    /// <summary>The slice the forward uses: 1..MasterBits, or 0 for the float weight.</summary>
    public int Bits { get; set; }
    public bool ExtraPrecision { get; set; }

    /// <summary>LET's (si [in], so [out]) of this linear, differentiable in its log-scales (null: no LET; a null scale is 1).</summary>
    public Func<(Tensor? In, Tensor? Out)>? Let { get; set; }

    public Parameter ClipMax => clip_max;
    public Parameter ClipMin => clip_min;
    public Tensor FloatWeight => _weight;
    /// <summary>The frozen float bias [out], or null.</summary>
    public Tensor? FloatBias => _bias;

    /// <summary>The logits Adam trains (a and b; a only when symmetric).</summary>
    public IReadOnlyList<Parameter> Trainable => _symmetric ? [clip_max] : [clip_max, clip_min];

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var b = _bias?.to(x.dtype);
        if (Bits == 0 || Let is null)
            return F.linear(x, (Bits == 0 ? _weight : SlicedWeight(Bits)).to(x.dtype), b).MoveToOuterDisposeScope();
        var (si, so) = Let();
        var y = F.linear(si is null ? x : x / si.to(x.dtype), SlicedWeight(Bits).to(x.dtype));
        if (so is not null) y = y * so.to(x.dtype);
        return (b is null ? y : y + b).MoveToOuterDisposeScope();
    }

    /// <summary>The weight LWC quantizes [out, in] fp32: W, or W' = diag(1/so)·W·diag(si) under LET (differentiable).</summary>
    public Tensor TransformedWeight()
    {
        if (Let is null) return _weight;
        var (si, so) = Let();
        return LetBlock.Transform(_weight, si, so);
    }

    /// <summary>α [out, nGroups] and the continuous zero point z [out, nGroups] of the header, differentiable in a and b.</summary>
    public (Tensor Alpha, Tensor Zero) Params() => Params(Let is null ? null : TransformedWeight());

    // α, z of the group range of w' (null: the stored range of W)
    private (Tensor Alpha, Tensor Zero) Params(Tensor? transformed)
    {
        using var scope = NewDisposeScope();
        var (groupLo, groupHi) = transformed is null ? (_lo, _hi) : Range(transformed);
        Tensor gamma = Bound(clip_max);
        Tensor alpha, zero;
        if (_symmetric)
        {
            Tensor absMax = maximum(groupLo.neg(), groupHi).mul(gamma);
            alpha = absMax.div(full_like(absMax, (1 << (MasterBits - 1)) - 1)).clamp_min(AffineQuantizer.MinScale);
            zero = full_like(alpha, 1 << (MasterBits - 1));
        }
        else
        {
            Tensor lo = groupLo.mul(Bound(clip_min));
            Tensor range = groupHi.mul(gamma) - lo;
            alpha = range.div(full_like(range, (1 << MasterBits) - 1)).clamp_min(AffineQuantizer.MinScale);
            zero = lo.neg().div(alpha);
        }
        return (alpha.MoveToOuterDisposeScope(), zero.MoveToOuterDisposeScope());
    }

    // zero-inclusive group range [out, nGroups] of w [out, in] with gradients (zero padding cannot move a zero-inclusive range)
    private (Tensor Lo, Tensor Hi) Range(Tensor w)
    {
        long rows = w.shape[0], cols = w.shape[1], groups = (cols + GroupSize - 1) / GroupSize, pad = groups * GroupSize - cols;
        Tensor x = (pad == 0 ? w : F.pad(w, new long[] { 0, pad })).reshape(rows, groups, GroupSize);
        return (x.amin(2).clamp_max(0), x.amax(2).clamp_min(0));
    }

    private Tensor Bound(Tensor logit) => Max == 1 ? logit.sigmoid() : logit.sigmoid().mul(Max);

    /// <summary>ŵ_r [out, in] fp32 with straight-through gradients to the clip logits.</summary>
    public Tensor SlicedWeight(int r)
    {
        using var scope = NewDisposeScope();
        var master = _shared ?? Master();
        return NestedQuantLinear.Slice(master, r, ExtraPrecision, sliceRange: true).MoveToOuterDisposeScope();
    }

    // the width-independent part of ŵ (W' and its grid, the master codes) in the caller's dispose scope
    private NestedMaster Master()
    {
        var w = TransformedWeight();
        var (alpha, zero) = Params(Let is null ? null : w);
        return NestedQuantLinear.Master(w, alpha, zero, GroupSize, MasterBits);
    }

    private NestedMaster? _shared;

    /// <summary>
    /// From now until <see cref="EndShared"/>, every width's forward slices one master quantization of the current logits
    /// (W', α, z̄, W'/α + z̄ and the codes, computed here once, in the caller's dispose scope) instead of computing it per
    /// width: for an objective over several widths in one optimizer step (MatQuant), the same values, and gradients up
    /// to the order of their sums. The logits must not change in between.
    /// </summary>
    public void BeginShared() => _shared = Master();

    /// <summary>Back to computing the master quantization per forward (after the step's backward).</summary>
    public void EndShared() => _shared = null;

    /// <summary>The exported parameters: uint8 codes [out, in], α and integer z [out, nGroups] (no gradient).</summary>
    public (Tensor Codes, Tensor Scales, Tensor Zeros) Export()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var w = TransformedWeight();
        var (alpha, zero) = Params(Let is null ? null : w);
        var z = zero.round().clamp(0, (1 << MasterBits) - 1);
        var codes = TensorAffineQuantizer.Quantize(w, alpha, z, GroupSize, MasterBits);
        return (codes.MoveToOuterDisposeScope(), alpha.contiguous().MoveToOuterDisposeScope(), z.contiguous().MoveToOuterDisposeScope());
    }

    /// <summary>Mean γ and β over the groups (how far the learned clipping moved from the min-max range).</summary>
    public (double Gamma, double Beta) MeanClip()
    {
        using var noGrad = no_grad();
        return (Bound(clip_max).mean().item<float>(), _symmetric ? 1.0 : Bound(clip_min).mean().item<float>());
    }
}
