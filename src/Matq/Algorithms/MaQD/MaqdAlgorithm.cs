// Contract: MaQD fully quantized training of a VisionNet (Sawada et al. 2024), top to bottom:
//   weights      ŵ = WeightStandardization(W) per output channel (mean 0, std 1 over the channel's fan-in),
//                codes q = RoundClip(s_w·ŵ, −k, k) (N = 2k + 1 states), W_eff = q·Δ with Δ = 1/(s_w·sqrt(fan_in))
//                (one constant per layer, so outputs stay O(1) where no norm follows, e.g. the classifier)
//   activations  replace ReLU: a(x) = RoundClip(s_a·x, 0, M − 1)/s_a (M states, a quantized ReLU)
//   gradients    both round-clips pass the configured surrogate (SurrogateRoundClip: ste or smooth)
//   scales       s_w = k/c_w and s_a = (M − 1)/c_a with c the clip that minimizes the expected squared error for a
//                unit Gaussian input (weights: of ŵ itself; activations: of ReLU(x), x ~ N(0, 1) after the norm),
//                found by numerical integration; e.g. ternary gives c_w ≈ 1.224 (levels ±1.224σ, thresholds ±0.612σ).
//   layers       every conv/linear layer; the two end layers (first conv on the pixels, classifier) take
//                config.EndWeightStates when set (e.g. 255), every other layer N. The pixels entering the first layer
//                are 8-bit data already (p/255); every activation after a norm is quantized to M states.
// Prepare installs the quantizers (replacing a net's own float weight standardization, which this includes); after
// training, VisionNet.FoldNorms moves the (LBN/BN) norms into each layer's per-channel output scale and bias, and
// Convert reads the integer codes with their per-channel scales.
using System.Collections.Concurrent;
using Matq.Models.Vision;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.MaQD;

/// <summary>One layer's deployable form: int8 codes [out, ...] in −k..k, per-channel scale [out] (Δ times any folded
/// norm scale) and bias [out] (null when the layer has none): y = (x ⊛ codes)·scale_c + bias_c.</summary>
public sealed record MaqdLayerCodes(string Name, Tensor Codes, Tensor Scale, Tensor? Bias) : IDisposable
{
    public void Dispose() { Codes.Dispose(); Scale.Dispose(); Bias?.Dispose(); }
}

public sealed class MaqdAlgorithm
{
    private static readonly ConcurrentDictionary<(int States, bool Signed), double> Clips = new();
    private readonly Dictionary<QuantLayer, int> _states = new(ReferenceEqualityComparer.Instance);

    public MaqdAlgorithm(MaqdConfig config)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        WeightClip = GaussianClip(config.WeightStates, signed: true);
        ActClip = GaussianClip(config.ActStates, signed: false);
    }

    public MaqdConfig Config { get; }
    /// <summary>c_w: the largest weight level, in standard deviations of the standardized weight.</summary>
    public double WeightClip { get; }
    /// <summary>c_a: the largest activation level.</summary>
    public double ActClip { get; }
    /// <summary>s_w = k/c_w (for N states).</summary>
    public double WeightScale => Config.WeightLevels / WeightClip;

    /// <summary>s_w for any odd number of states: ((states − 1)/2)/c_w(states).</summary>
    public static double WeightScaleFor(int states) => (states - 1) / 2 / GaussianClip(states, signed: true);

    /// <summary>The weight states <paramref name="layer"/> was prepared with (N, or the end layers' states); N for a
    /// layer this instance did not prepare (quantized directly through <see cref="QuantizeWeight(Tensor)"/>).</summary>
    public int StatesOf(QuantLayer layer) => _states.TryGetValue(layer, out int s) ? s : Config.WeightStates;
    /// <summary>s_a = (M − 1)/c_a.</summary>
    public double ActScale => (Config.ActStates - 1) / ActClip;

    /// <summary>Installs the weight quantizer on every conv/linear layer and the activation quantizer in place of ReLU.</summary>
    public void Prepare(VisionNet net)
    {
        var layers = net.QuantLayers();
        if (layers.Count == 0) throw new MatqException($"this {net.Config.Arch} has no conv/linear layers for MaQD to quantize");
        if (layers.Any(l => l.Layer.Quant is not null || l.Layer.WeightQuantizer is not null))
            throw new MatqException("the net is already quantized: MaQD trains a fresh float net");
        var (first, last) = net.EndLayers();
        foreach (var (_, layer) in layers)
        {
            int states = Config.EndWeightStates is int e && (ReferenceEquals(layer, first) || ReferenceEquals(layer, last)) ? e : Config.WeightStates;
            _states[layer] = states;
            layer.WeightQuantizer = w => QuantizeWeight(w, states);
        }
        net.Act.Override = QuantizeActivation;
    }

    /// <summary>W [out, ...] → q·Δ at N states, same shape (differentiable through the standardization and the surrogate).</summary>
    public Tensor QuantizeWeight(Tensor w) => QuantizeWeight(w, Config.WeightStates);

    /// <summary>W [out, ...] → q·Δ at <paramref name="states"/> (odd) states.</summary>
    public Tensor QuantizeWeight(Tensor w, int states)
    {
        using var scope = NewDisposeScope();
        Tensor std = WeightStandardization.Apply(w);
        int k = (states - 1) / 2;
        Tensor q = SurrogateRoundClip.Apply(std, WeightScaleFor(states), -k, k, Config.Surrogate, Config.Width);   // codes / s_w
        return q.div(Math.Sqrt(FanIn(w))).MoveToOuterDisposeScope();
    }

    /// <summary>x any shape → RoundClip(s_a·x, 0, M − 1)/s_a.</summary>
    public Tensor QuantizeActivation(Tensor x) =>
        SurrogateRoundClip.Apply(x, ActScale, 0, Config.ActStates - 1, Config.Surrogate, Config.Width);

    /// <summary>Integer codes of W at N states: int8 [out, ...] in −k..k.</summary>
    public Tensor WeightCodes(Tensor w) => WeightCodes(w, Config.WeightStates);

    /// <summary>Integer codes of W at <paramref name="states"/> states: int8 [out, ...] in −k..k, k = (states − 1)/2.</summary>
    public static Tensor WeightCodes(Tensor w, int states)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int k = (states - 1) / 2;
        return WeightStandardization.Apply(w.detach()).mul(WeightScaleFor(states)).round().clamp(-k, k).to(ScalarType.Int8).MoveToOuterDisposeScope();
    }

    /// <summary>Δ of a prepared layer: W_eff = codes·Δ.</summary>
    public double Step(QuantLayer layer) => 1.0 / (WeightScaleFor(StatesOf(layer)) * Math.Sqrt(FanIn(layer.Weight)));

    /// <summary>Every layer's codes, per-channel scale (Δ·folded scale) and bias, on the CPU.</summary>
    public IReadOnlyList<MaqdLayerCodes> Convert(VisionNet net)
    {
        var result = new List<MaqdLayerCodes>();
        foreach (var (name, layer) in net.QuantLayers())
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Tensor codes = WeightCodes(layer.Weight, StatesOf(layer)).cpu();
            Tensor scale = layer.ChannelScale is { } cs ? cs.detach().cpu().mul(Step(layer)) : full(layer.OutChannels, Step(layer));
            Tensor? bias = layer.Bias?.detach().cpu().clone();
            result.Add(new MaqdLayerCodes(name, codes.MoveToOuterDisposeScope(), scale.MoveToOuterDisposeScope(), bias?.MoveToOuterDisposeScope()));
        }
        return result;
    }

    private static long FanIn(Tensor w) => w.numel() / w.shape[0];

    /// <summary>The clip c minimizing E[(Q_c(z) − target(z))²] for z ~ N(0, 1): signed (target z, levels −k..k, k =
    /// (states − 1)/2) or unsigned (target ReLU(z), levels 0..states − 1); Q_c rounds to the grid of step c/levels.</summary>
    public static double GaussianClip(int states, bool signed) => Clips.GetOrAdd((states, signed), key =>
    {
        int levels = key.Signed ? (key.States - 1) / 2 : key.States - 1;
        if (levels < 1) throw new ArgumentOutOfRangeException(nameof(states), $"{states} states give no nonzero level");
        const double dz = 1e-3, zMax = 8;
        int n = (int)(2 * zMax / dz) + 1;
        var z = new double[n];
        var p = new double[n];
        for (int i = 0; i < n; i++) { z[i] = -zMax + i * dz; p[i] = Math.Exp(-0.5 * z[i] * z[i]) / Math.Sqrt(2 * Math.PI) * dz; }
        int lo = key.Signed ? -levels : 0;
        double Mse(double c)
        {
            double step = c / levels, sum = 0;
            for (int i = 0; i < n; i++)
            {
                double target = key.Signed ? z[i] : Math.Max(z[i], 0);
                double q = Math.Clamp(Math.Round(z[i] / step, MidpointRounding.ToEven), lo, levels) * step;
                sum += (q - target) * (q - target) * p[i];
            }
            return sum;
        }
        // coarse grid, then two refinements around the best point
        double best = 0.05, bestErr = double.PositiveInfinity;
        for (double c = 0.05; c <= zMax; c += 0.05) { double e = Mse(c); if (e < bestErr) { bestErr = e; best = c; } }
        foreach (double h in new[] { 0.005, 0.0005 })
        {
            double center = best;
            for (double c = center - 10 * h; c <= center + 10 * h; c += h)
            {
                if (c <= 0) continue;
                double e = Mse(c);
                if (e < bestErr) { bestErr = e; best = c; }
            }
        }
        return best;
    });
}
