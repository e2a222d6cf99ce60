// Contract: validated EfQAT settings (Ashkboos et al. 2024): which weights QAT may update (mode + fraction), how often
// importance is recomputed, and the bit-widths of the fake-quantized network. Invalid values throw MatqException.
namespace Matq.Algorithms.EfQat;

/// <summary>Granularity of the selection of weights that are trained.</summary>
public enum EfQatMode
{
    /// <summary>CWPL: the top fraction of output channels of every layer.</summary>
    ChannelPerLayer,
    /// <summary>CWPN: the top fraction of all output channels of the network, ranked together.</summary>
    ChannelPerNetwork,
    /// <summary>LWPN: the top fraction of layers (by mean |W|), all channels of a selected layer; other layers frozen.</summary>
    LayerPerNetwork,
}

public sealed record EfQatConfig
{
    public EfQatConfig(EfQatMode mode, double fraction, int weightBits = 4, int actBits = 8, int refreshEvery = 100, bool learnScales = true)
    {
        if (!Enum.IsDefined(mode)) throw new MatqException($"mode = {(int)mode} is not an EfQAT mode: allowed {string.Join(", ", Enum.GetNames<EfQatMode>())}");
        if (!(fraction >= 0 && fraction <= 1)) throw new MatqException($"fraction = {fraction} is out of range: allowed 0..1 (e.g. 0.25 for 25%)");
        if (weightBits < 2 || weightBits > 8) throw new MatqException($"weight bits = {weightBits} is out of range: allowed 2..8");
        if (actBits < 2 || actBits > 8) throw new MatqException($"activation bits = {actBits} is out of range: allowed 2..8");
        if (refreshEvery < 1) throw new MatqException($"refresh every = {refreshEvery} is out of range: allowed ≥ 1 steps");
        Mode = mode; Fraction = fraction; WeightBits = weightBits; ActBits = actBits; RefreshEvery = refreshEvery; LearnScales = learnScales;
    }

    public EfQatMode Mode { get; }
    /// <summary>Fraction of channels (or layers) whose weights are trained: 0 = scales/biases/norms only, 1 = full QAT.</summary>
    public double Fraction { get; }
    public int WeightBits { get; }
    public int ActBits { get; }
    /// <summary>Importance (mean |W| per output channel) is recomputed every this many optimizer steps.</summary>
    public int RefreshEvery { get; }
    public bool LearnScales { get; }

    /// <summary>Parses cwpl|cwpn|lwpn (or the enum names).</summary>
    public static EfQatMode ParseMode(string text) => text.Trim().ToLowerInvariant() switch
    {
        "cwpl" or "channelperlayer" or "channel-layer" => EfQatMode.ChannelPerLayer,
        "cwpn" or "channelpernetwork" or "channel-network" => EfQatMode.ChannelPerNetwork,
        "lwpn" or "layerpernetwork" or "layer-network" => EfQatMode.LayerPerNetwork,
        _ => throw new MatqException($"EfQAT mode '{text}' is not supported: allowed cwpl (channel-wise per layer), cwpn (channel-wise per network), lwpn (layer-wise per network)"),
    };

    public static string ShortName(EfQatMode mode) => mode switch
    {
        EfQatMode.ChannelPerLayer => "CWPL",
        EfQatMode.ChannelPerNetwork => "CWPN",
        _ => "LWPN",
    };
}
