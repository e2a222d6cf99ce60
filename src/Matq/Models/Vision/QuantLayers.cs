// Contract: conv2d and linear layers with optional fake quantization for QAT: weights signed per output channel
// (step [out, 1, ...]), input activations unsigned per tensor (step [1]), 2..8 bits, LSQ gradients for the steps
// (learnable) or fixed steps (STE with clip mask); an EfQAT row selection restricts the weight gradient (see PartialWeightGrad);
// or any other weight quantizer (MaQD's standardize + round-clip) through WeightQuantizer. FoldAffine takes in the
// eval-mode affine map of a following norm as a per-channel output scale and a bias: y = op(x, W_eff)·scale_c + b_c.
using Matq.Runtime;
using Matq.Algorithms.EfQat;
using Matq.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models.Vision;

/// <summary>Fake-quantization settings of one layer; bits in 2..8 (weights are signed: 2 bits = {−2, −1, 0, 1}·s).</summary>
public sealed record QuantSettings
{
    public QuantSettings(int weightBits, int actBits, bool learnScales = true)
    {
        if (weightBits < 2 || weightBits > 8) throw new MatqException($"weight bits = {weightBits} is out of range: allowed 2..8");
        if (actBits < 2 || actBits > 8) throw new MatqException($"activation bits = {actBits} is out of range: allowed 2..8");
        WeightBits = weightBits; ActBits = actBits; LearnScales = learnScales;
    }

    public int WeightBits { get; }
    public int ActBits { get; }
    /// <summary>True: LSQ learns both steps; false: steps stay at their PTQ values and only the STE passes gradients.</summary>
    public bool LearnScales { get; }
}

/// <summary>Base of <see cref="QConv2d"/> and <see cref="QLinear"/>: weight [out, ...], optional bias [out].</summary>
public abstract class QuantLayer : torch.nn.Module<Tensor, Tensor>, IEfQatLayer
{
    protected QuantLayer(string name, Tensor weight, bool bias) : base(name)
    {
        this.weight = new Parameter(weight);
        register_parameter("weight", this.weight);
        if (bias)
        {
            this.bias = new Parameter(zeros(this.weight.shape[0]));
            register_parameter("bias", this.bias);
        }
    }

    // Fields carry exactly the registered names: Module.to(device/dtype) replaces registered tensors and rebinds
    // same-named fields, so these stay valid after moving to CUDA (a differently named cache would go stale).
#pragma warning disable IDE1006 // names must match the registered parameter names
    private Parameter weight;
    private Parameter? bias;
    private Parameter? weight_step;
    private Parameter? act_step;
    private Tensor? channel_scale;
#pragma warning restore IDE1006

    public Parameter Weight => weight;
    public Parameter? Bias => bias;
    public QuantSettings? Quant { get; private set; }
    /// <summary>[out, 1, ...] signed LSQ step of each output channel (null while float).</summary>
    public Parameter? WeightStep => weight_step;
    /// <summary>[1] unsigned LSQ step of the input activation (null while float).</summary>
    public Parameter? ActStep => act_step;
    /// <summary>EfQAT: output channels whose weights get gradients (int64 [S]); null = all (plain training/QAT).</summary>
    public Tensor? SelectedRows { get; set; }
    /// <summary>EfQAT: the other output channels (sorted int64), kept with <see cref="SelectedRows"/>.</summary>
    public Tensor? FrozenRows { get; set; }
    public long OutChannels => Weight.shape[0];
    /// <summary>Called with each forward's (float) input; calibration uses it to capture activations.</summary>
    public Action<Tensor>? InputObserver { get; set; }
    /// <summary>Float weight = WS(W)/sqrt(fan_in) (per-output-channel standardization) instead of W.</summary>
    public bool Standardize { get; set; }
    /// <summary>Maps the latent weight to the weight forward uses (MaQD); takes precedence over LSQ fake quantization.</summary>
    public Func<Tensor, Tensor>? WeightQuantizer { get; set; }
    /// <summary>[out] per-channel output scale from folded norms (null until <see cref="FoldAffine"/>).</summary>
    public Tensor? ChannelScale => channel_scale;

    /// <summary>Makes this layer's output scale_c·y + shift_c (the eval-mode map of the norm that follows it), as a
    /// per-channel output scale and a bias; composes with earlier folds. scale, shift [out].</summary>
    public void FoldAffine(Tensor scale, Tensor shift)
    {
        if (scale.shape.Length != 1 || scale.shape[0] != OutChannels || !shift.shape.SequenceEqual(scale.shape))
            throw new ArgumentException($"fold needs scale and shift of shape [{OutChannels}]");
        using var noGrad = no_grad();
        var s = scale.to(Weight.dtype, Weight.device);
        var b = shift.to(Weight.dtype, Weight.device);
        if (channel_scale is null)
        {
            channel_scale = s.clone();
            register_buffer("channel_scale", channel_scale);
        }
        else channel_scale.mul_(s);
        if (bias is null)
        {
            bias = new Parameter(b.clone());
            register_parameter("bias", bias);
        }
        else bias.mul_(s).add_(b);
    }

    /// <summary>Applies the folded per-channel scale (if any) and the bias to y [N, out, ...] or [N, out].</summary>
    protected Tensor ScaleAndBias(Tensor y)
    {
        if (channel_scale is not null) y = y.mul(PerChannel(channel_scale, y));
        return bias is null ? y : y.add(PerChannel(bias, y));
    }

    private static Tensor PerChannel(Tensor v, Tensor y)
    {
        var shape = new long[y.dim()];
        Array.Fill(shape, 1L);
        shape[1] = v.shape[0];
        return v.reshape(shape);
    }

    /// <summary>Turns fake quantization on with PTQ (RTN) steps: per channel and per tensor, each the clip ratio in
    /// {1, 0.95, ..., 0.3}·max that minimizes the squared error (weights: of the channel; activations: of <paramref name="sampleInput"/>).</summary>
    public void EnableQuant(QuantSettings settings, Tensor sampleInput)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Tensor ws, aS;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            (_, int wqp) = LsqFakeQuant.Bounds(settings.WeightBits, signed: true);
            (_, int aqp) = LsqFakeQuant.Bounds(settings.ActBits, signed: false);
            Tensor w2 = FloatWeight().detach().reshape(OutChannels, -1);                                       // [out, fan_in]
            var shape = new long[Weight.dim()];
            Array.Fill(shape, 1L);
            shape[0] = OutChannels;
            ws = MseStep(w2, w2.abs().amax(new long[] { 1 }, keepdim: true), settings.WeightBits, true, wqp)   // [out, 1]
                .reshape(shape).clamp_min(1e-8).contiguous().MoveToOuterDisposeScope();
            Tensor xa = sampleInput.detach().reshape(1, -1);
            aS = MseStep(xa, xa.amax(new long[] { 1 }, keepdim: true), settings.ActBits, false, aqp)
                .reshape(1).clamp_min(1e-8).contiguous().MoveToOuterDisposeScope();
        }
        // Parameters are made outside the scope: a Parameter created inside one would be disposed with it.
        weight_step = new Parameter(ws, settings.LearnScales);
        act_step = new Parameter(aS, settings.LearnScales);
        register_parameter("weight_step", weight_step);
        register_parameter("act_step", act_step);
        Quant = settings;
    }

    private static Tensor MseStep(Tensor v, Tensor maxAbs, int bits, bool signed, int qp)
    {
        Tensor best = maxAbs.div(qp), bestErr = full_like(maxAbs, double.PositiveInfinity);
        for (double r = 1.0; r > 0.29; r -= 0.05)
        {
            Tensor step = maxAbs.mul(r / qp).clamp_min(1e-8);
            Tensor err = LsqFakeQuant.Apply(v, step, bits, signed).sub(v).Squared().sum(1, keepdim: true);
            Tensor better = err.lt(bestErr);
            best = where(better, step, best);
            bestErr = where(better, err, bestErr);
        }
        return best;
    }

    /// <summary>The weight as used by forward: fake-quantized when quantization is on.</summary>
    public Tensor EffectiveWeight() =>
        WeightQuantizer is not null ? WeightQuantizer(Weight)
        : Quant is null ? FloatWeight() : LsqFakeQuant.Apply(FloatWeight(), WeightStep!, Quant.WeightBits, signed: true);

    /// <summary>The float weight the quantizers see: W, or WS(W)/sqrt(fan_in) when <see cref="Standardize"/>.</summary>
    public Tensor FloatWeight() => FloatWeightOf(Weight);

    // Standardization is per output channel, so FloatWeightOf(W[rows]) = FloatWeight()[rows].
    private Tensor FloatWeightOf(Tensor w)
    {
        if (!Standardize) return w;
        using var scope = NewDisposeScope();
        return WeightStandardization.Apply(w).div(Math.Sqrt(Weight.numel() / OutChannels)).MoveToOuterDisposeScope();
    }

    /// <summary>EfQAT with LSQ weights and the Inject method: the forward values come from the whole fake-quantized
    /// weight computed without autograd, and the weight gradient reaches only the selected rows'
    /// LSQ(W[rows], step[rows]) (same gradient scale as the whole-tensor call, since the step is per row). So the LSQ
    /// backward and the scatter into the weight's gradient touch S rows, not all of them. Null when this layer has no
    /// LSQ weight (float, or MaQD's WeightQuantizer) or another method is in use: the caller takes the general path.</summary>
    protected (Tensor Full, Tensor Selected)? InjectWeights(Tensor rows, ConvWeightGradMethod method)
    {
        if (method != ConvWeightGradMethod.Inject || WeightQuantizer is not null || Quant is null || rows.numel() == OutChannels) return null;
        Tensor full;
        using (no_grad()) full = EffectiveWeight();
        if (rows.numel() == 0) return (full, full);
        using var scope = NewDisposeScope();
        Tensor sel = LsqFakeQuant.Apply(FloatWeightOf(Weight.index_select(0, rows)), WeightStep!.index_select(0, rows), Quant.WeightBits, signed: true);
        return (full, sel.MoveToOuterDisposeScope());
    }

    /// <summary>The input as used by forward: fake-quantized (unsigned, clipped at Qp·s) when quantization is on.</summary>
    public Tensor EffectiveInput(Tensor x) => Quant is null ? x : LsqFakeQuant.Apply(x, ActStep!, Quant.ActBits, signed: false);

    /// <summary>Uses the partial-gradient autograd path (EfQAT) instead of the native op.</summary>
    public bool UsePartialGrad => SelectedRows is not null;

    /// <summary>EfQAT: how the selected rows' weight gradient is computed (conv: any method; linear: Split, Inject, or else
    /// the gather-GEMM function).</summary>
    public ConvWeightGradMethod GradMethod { get; set; } = PartialWeightGrad.DefaultConvMethod;
}

/// <summary>Square-kernel conv2d without dilation or groups: x [N, Cin, H, W] → [N, Cout, Ho, Wo].</summary>
public sealed class QConv2d : QuantLayer
{
    public QConv2d(string name, long inChannels, long outChannels, long kernel, long stride = 1, long padding = 0, bool bias = false)
        : base(name, KaimingConv(inChannels, outChannels, kernel), bias)
    {
        Kernel = kernel; Stride = stride; Padding = padding;
    }

    public long Kernel { get; }
    public long Stride { get; }
    public long Padding { get; }

    private static Tensor KaimingConv(long cin, long cout, long k) =>
        randn(cout, cin, k, k).mul(Math.Sqrt(2.0 / (cin * k * k)));

    public override Tensor forward(Tensor x)
    {
        InputObserver?.Invoke(x);
        Tensor xq = EffectiveInput(x);
        Tensor y;
        if (UsePartialGrad && InjectWeights(SelectedRows!, GradMethod) is (var full, var sel))
            y = PartialWeightGrad.InjectConv2dRows(xq, full, sel, SelectedRows!, Stride, Padding);
        else
        {
            Tensor wq = EffectiveWeight();
            y = UsePartialGrad
                ? PartialWeightGrad.Conv2d(xq, wq, Stride, Padding, SelectedRows!.numel() == OutChannels ? null : SelectedRows, FrozenRows, GradMethod)
                : nn.functional.conv2d(xq, wq, strides: new[] { Stride, Stride }, padding: new[] { Padding, Padding });
        }
        return ScaleAndBias(y);
    }
}

/// <summary>Linear layer: x [N, in] → [N, out] = x·Wᵀ + b.</summary>
public sealed class QLinear : QuantLayer
{
    public QLinear(string name, long inFeatures, long outFeatures, bool bias = true)
        : base(name, rand(outFeatures, inFeatures).mul(2).sub(1).mul(Math.Sqrt(1.0 / inFeatures)), bias) => GradMethod = PartialWeightGrad.DefaultLinearMethod;

    public override Tensor forward(Tensor x)
    {
        InputObserver?.Invoke(x);
        Tensor xq = EffectiveInput(x);
        Tensor y;
        if (UsePartialGrad && InjectWeights(SelectedRows!, GradMethod) is (var full, var sel))
            y = PartialWeightGrad.InjectLinearRows(xq, full, sel, SelectedRows!);
        else
        {
            Tensor wq = EffectiveWeight();
            y = UsePartialGrad
                ? PartialWeightGrad.Linear(xq, wq, SelectedRows!.numel() == OutChannels ? null : SelectedRows, FrozenRows, GradMethod)
                : nn.functional.linear(xq, wq);
        }
        return ScaleAndBias(y);
    }
}
