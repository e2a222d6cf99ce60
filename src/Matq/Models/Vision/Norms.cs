// Contract: the per-channel normalizations that follow a conv/linear layer in the vision nets: BatchNorm (statistics
// per channel over the mini-batch) and Layer-Batch Normalization (LBN, MaQD: statistics per sample over all units of
// the layer). Both hold γ, β [C] and running estimates; in eval mode both are a per-channel affine map
// y = scale_c·x + shift_c (InferenceAffine), which folding moves into the preceding layer, leaving the norm an identity.
//
// LBN (Sawada et al. 2024, "Magic for the Age of Quantized DNNs"; only the abstract could be consulted here, so the
// formula below is this project's reading of the issue text, stated in full):
//   training, x [N, C, ...]:  μ_n = mean over all C·H·W units of sample n,  σ²_n = population variance over them,
//                             y = γ_c·(x − μ_n)/sqrt(σ²_n + ε) + β_c                 (no statistic crosses samples;
//                             computed as GroupNorm with one group, a fused kernel)
//   running estimates:        μ̄ ← (1−m)·μ̄ + m·mean_n μ_n,  σ̄² ← (1−m)·σ̄² + m·mean_n σ²_n   (scalars [1], no grad);
//                             m = null gives the cumulative average (used to recalibrate after training)
//   frozen (training):        the inference formula with fixed μ̄, σ̄² (no update): the last part of training can adapt the
//                             weights to the map that folding keeps (per-sample statistics at training time and fixed
//                             estimates at inference otherwise disagree, by up to ~20 points for ternary MaQD in short runs)
//   inference:                y = γ_c·(x − μ̄)/sqrt(σ̄² + ε) + β_c  = scale_c·x + shift_c, scale_c = γ_c/sqrt(σ̄² + ε),
//                             shift_c = β_c − scale_c·μ̄
// So a sample's training output does not depend on its batch companions nor on the batch size, and inference costs
// nothing once folded. (Another reading of "layer-batch" pools the statistics over the batch and the layer; that one
// couples the samples of a batch, which the issue's independence test rules out.)
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models.Vision;

/// <summary>γ, β [C] plus running statistics; <see cref="Folded"/> turns the module into an identity (after its
/// affine map has been moved into the preceding layer).</summary>
public abstract class ChannelNorm : nn.Module<Tensor, Tensor>
{
    public const double Eps = 1e-5;

    protected ChannelNorm(string name, long channels) : base(name)
    {
        Channels = channels;
        weight = new Parameter(ones(channels));
        bias = new Parameter(zeros(channels));
        register_parameter("weight", weight);
        register_parameter("bias", bias);
    }

#pragma warning disable IDE1006 // names must match the registered parameter names (Module.to rebinds same-named fields)
    private Parameter weight;
    private Parameter bias;
#pragma warning restore IDE1006

    public long Channels { get; }
    /// <summary>γ [C].</summary>
    public Parameter Gamma => weight;
    /// <summary>β [C].</summary>
    public Parameter Beta => bias;
    /// <summary>True once folded into the preceding layer: forward returns its input unchanged.</summary>
    public bool Folded { get; set; }

    /// <summary>"bn" or "lbn".</summary>
    public abstract string Kind { get; }

    /// <summary>The eval-mode map as y = scale_c·x + shift_c: (scale [C], shift [C]), detached.</summary>
    public abstract (Tensor Scale, Tensor Shift) InferenceAffine();

    public override Tensor forward(Tensor x) => Folded ? x : Normalize(x);

    protected abstract Tensor Normalize(Tensor x);

    /// <summary>Reshapes a [C] tensor to broadcast over x [N, C, ...].</summary>
    protected static Tensor PerChannel(Tensor v, Tensor x)
    {
        var shape = new long[x.dim()];
        Array.Fill(shape, 1L);
        shape[1] = v.shape[0];
        return v.reshape(shape);
    }

    /// <summary>"bn" → BatchNorm, "lbn" → LayerBatchNorm.</summary>
    public static ChannelNorm Create(string kind, long channels) => kind switch
    {
        "bn" => new BatchNorm(channels),
        "lbn" => new LayerBatchNorm(channels),
        _ => throw new MatqException($"norm '{kind}' is not a channel normalization: allowed bn, lbn"),
    };
}

/// <summary>Standard BatchNorm over dim 1 (momentum 0.1, ε 1e-5), state names as torch's BatchNorm2d (weight, bias,
/// running_mean, running_var), so folders written with the former BatchNorm2d modules load unchanged.</summary>
public sealed class BatchNorm : ChannelNorm
{
#pragma warning disable IDE1006
    private Tensor running_mean;
    private Tensor running_var;
#pragma warning restore IDE1006

    public BatchNorm(long channels) : base("bn", channels)
    {
        running_mean = zeros(channels);
        running_var = ones(channels);
        register_buffer("running_mean", running_mean);
        register_buffer("running_var", running_var);
    }

    public override string Kind => "bn";

    protected override Tensor Normalize(Tensor x) =>
        nn.functional.batch_norm(x, running_mean, running_var, Gamma, Beta, training, 0.1, Eps);

    public override (Tensor Scale, Tensor Shift) InferenceAffine()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor scale = Gamma.div(running_var.add(Eps).sqrt());
        Tensor shift = Beta.sub(scale.mul(running_mean));
        return (scale.detach().MoveToOuterDisposeScope(), shift.detach().MoveToOuterDisposeScope());
    }
}

/// <summary>Layer-Batch Normalization (see the file contract): per-sample statistics over all units in training,
/// scalar running estimates [1] at inference.</summary>
public sealed class LayerBatchNorm : ChannelNorm
{
#pragma warning disable IDE1006
    private Tensor running_mean;
    private Tensor running_var;
#pragma warning restore IDE1006
    private long _count;

    public LayerBatchNorm(long channels) : base("lbn", channels)
    {
        running_mean = zeros(1);
        running_var = ones(1);
        register_buffer("running_mean", running_mean);
        register_buffer("running_var", running_var);
    }

    public override string Kind => "lbn";

    /// <summary>Weight of the newest statistics in the running estimates (0.1); null = cumulative average of every
    /// batch since <see cref="ResetRunningStats"/>.</summary>
    public double? Momentum { get; set; } = 0.1;

    /// <summary>Training uses the running estimates (the inference map) instead of per-sample statistics, and leaves them unchanged.</summary>
    public bool Frozen { get; set; }

    /// <summary>Training updates the running estimates (default). The CNN trainer turns this off while it trains, since
    /// it recomputes the estimates itself (<c>CnnTrainer.RecalibrateLbn</c>): ~8 small kernels per norm and step saved.</summary>
    public bool TrackRunningStats { get; set; } = true;

    /// <summary>μ̄ [1] (a view of the buffer).</summary>
    public Tensor RunningMean => running_mean;
    /// <summary>σ̄² [1].</summary>
    public Tensor RunningVar => running_var;

    public void ResetRunningStats()
    {
        using var noGrad = no_grad();
        running_mean.zero_();
        running_var.fill_(1);
        _count = 0;
    }

    protected override Tensor Normalize(Tensor x)
    {
        if (x.dim() < 2 || x.shape[1] != Channels)
            throw new ArgumentException($"LayerBatchNorm({Channels}) expects [N, {Channels}, ...], got [{string.Join(", ", x.shape)}]");
        using var scope = NewDisposeScope();
        if (training && !Frozen)
        {
            // The training formula is GroupNorm with one group (one fused kernel each way); the statistics for the
            // running estimates are taken again without grad.
            if (TrackRunningStats)
            {
                using var noGrad = no_grad();
                (Tensor var, Tensor mean) = x.reshape(x.shape[0], -1).var_mean(1, false, false);   // [N] each, population variance
                _count++;
                double m = Momentum ?? 1.0 / _count;
                running_mean.mul_(1 - m).add_(mean.mean().reshape(1), alpha: m);
                running_var.mul_(1 - m).add_(var.mean().reshape(1), alpha: m);
            }
            return nn.functional.group_norm(x, 1, Gamma, Beta, Eps).MoveToOuterDisposeScope();
        }
        Tensor y = x.sub(running_mean).div(running_var.add(Eps).sqrt());
        return y.mul(PerChannel(Gamma, x)).add(PerChannel(Beta, x)).MoveToOuterDisposeScope();
    }

    public override (Tensor Scale, Tensor Shift) InferenceAffine()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor scale = Gamma.div(running_var.add(Eps).sqrt());                          // [C]
        Tensor shift = Beta.sub(scale.mul(running_mean));                               // [C]
        return (scale.detach().MoveToOuterDisposeScope(), shift.detach().MoveToOuterDisposeScope());
    }
}
