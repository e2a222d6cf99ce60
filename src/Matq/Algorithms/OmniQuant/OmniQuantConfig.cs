// Contract: the validated, immutable training budget of OmniQuant's block-wise learnable weight clipping (epochs, Adam
// learning rate, windows per step, logit init, calibration windows used); every invalid value throws one MatqException
// naming the option and its allowed range. Shared by `omniquant` and `matquant` with base=omniquant.
using Matq.Quantization.Pipeline;

namespace Matq.Algorithms.OmniQuant;

public sealed record OmniQuantConfig
{
    /// <summary>Passes over the calibration windows per block.</summary>
    public int Epochs { get; }
    /// <summary>Adam learning rate of the clip logits (no weight decay).</summary>
    public double Lr { get; }
    /// <summary>Calibration windows per Adam step (and per forward batch).</summary>
    public int Batch { get; }
    /// <summary>Initial logit a = b of every group: γ = β = σ(init).</summary>
    public double Init { get; }
    /// <summary>Calibration windows used (the first N); 0 = all.</summary>
    public int Samples { get; }
    /// <summary>Upper bound m of γ and β: γ = m·σ(a) (1 = OmniQuant; m > 1 lets the range stretch past the group's
    /// min/max, which the coarse nested slices need: the int2 slice of min-max int8 codes stops at 192/255 of the range,
    /// so its top level reaches a symmetric group's max only at γ ≈ 1.66). Null = auto: <see cref="MaxFor"/>.</summary>
    public double? Max { get; }
    /// <summary>Train OmniQuant's learnable equivalent transformation (LetBlock: per-channel scales, folded into the
    /// preceding norm or linear at the end) together with the clipping.</summary>
    public bool Let { get; }
    /// <summary>Adam learning rate of LET's log-scales.</summary>
    public double LetLr { get; }
    /// <summary>On CUDA, the training steps' matmuls (the block's forward and backward under the fake-quantized weights) use
    /// TF32 tensor cores; the float targets, the propagated activations and the exported codes stay fp32. Upstream OmniQuant
    /// trains under fp16 autocast; TF32 keeps fp32's range and 10 mantissa bits. No effect on the CPU.</summary>
    public bool Tf32 { get; }

    public OmniQuantConfig(int epochs = 10, double lr = 1e-2, int batch = 1, double init = 4.0, int samples = 0, double? max = null,
        bool let = false, double letLr = 5e-3, bool tf32 = true)
    {
        if (epochs < 0 || epochs > 10_000) throw new MatqException($"omniquant {EpochsKey} = {epochs} is out of range: allowed 0..10000 (0 = no training)");
        if (!(lr > 0 && lr < 1)) throw new MatqException($"omniquant {LrKey} = {lr} is out of range: must be in (0, 1)");
        if (batch < 1 || batch > 4096) throw new MatqException($"omniquant {BatchKey} = {batch} is out of range: allowed 1..4096 windows per step");
        if (!(init >= -20 && init <= 20)) throw new MatqException($"omniquant {InitKey} = {init} is out of range: allowed -20..20 (σ(4) = 0.982 clips 1.8%, σ(20) = 1 is min-max)");
        if (max is double m && !(m >= 1 && m <= 4)) throw new MatqException($"omniquant {MaxKey} = {max} is out of range: allowed 1..4 (upper bound of γ, β; 1 = OmniQuant)");
        if (samples < 0) throw new MatqException($"omniquant {SamplesKey} = {samples} is out of range: 0 (all calibration windows) or more");
        if (!(letLr > 0 && letLr < 1)) throw new MatqException($"omniquant {LetLrKey} = {letLr} is out of range: must be in (0, 1)");
        Epochs = epochs; Lr = lr; Batch = batch; Init = init; Samples = samples; Max = max; Let = let; LetLr = letLr; Tf32 = tf32;
    }

    /// <summary>Option keys as typed after --option (distinct from MatQuant's QAT keys, so one registry row holds both).</summary>
    public const string EpochsKey = "epochs", LrKey = "lwc-lr", BatchKey = "lwc-batch", InitKey = "lwc-init", SamplesKey = "samples", MaxKey = "lwc-max",
        LetKey = "let", LetLrKey = "let-lr", Tf32Key = "tf32";

    public static IReadOnlyList<AlgorithmOption> Options { get; } =
    [
        new(EpochsKey, "omniquant: passes over the calibration windows per block (0 = no training: clip at σ(lwc-init))", "10"),
        new(LrKey, "omniquant: Adam learning rate of the clip logits", "0.01"),
        new(BatchKey, "omniquant: calibration windows per Adam step", "1"),
        new(InitKey, "omniquant: initial clip γ = β = σ(lwc-init) (4 → 0.982 of the min-max range)", "4"),
        new(MaxKey, "omniquant: upper bound of γ, β (γ = lwc-max·σ(a); 1 = OmniQuant; auto = 1 at one width, 2 when slices are trained)", "auto"),
        new(SamplesKey, "omniquant: calibration windows used per block (0 = all of --calib-n)", "0"),
        new(LetKey, "omniquant: true also trains LET, per-channel scales norm→q/k/v, norm→gate/up, v→o, q↔k, folded into the model at the end", "false"),
        new(LetLrKey, "omniquant: Adam learning rate of LET's log-scales", "0.005"),
        new(Tf32Key, "omniquant: CUDA only: the training steps' matmuls in TF32 (upstream trains in fp16 autocast); false keeps them fp32; targets, propagation and codes are fp32 either way", "true"),
    ];

    /// <summary>Reads the keys above (defaults where absent; lwc-max=auto → null).</summary>
    public static OmniQuantConfig Parse(OptionReader options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new OmniQuantConfig(options.Int(EpochsKey), options.Double(LrKey), options.Int(BatchKey), options.Double(InitKey),
            options.Int(SamplesKey), options.DoubleOr(MaxKey, "auto"), options.Flag(LetKey), options.Double(LetLrKey), options.Flag(Tf32Key));
    }

    /// <summary>The bound used for nested widths <paramref name="bits"/> of <paramref name="masterBits"/>-bit codes: Max when
    /// set, else 1 when nothing is sliced (R = {c}, plain OmniQuant) and 2 when a slice r &lt; c is trained.</summary>
    public double MaxFor(IReadOnlyList<int> bits, int masterBits) => Max ?? (bits.All(b => b == masterBits) ? 1.0 : 2.0);
}
