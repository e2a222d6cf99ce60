// Contract: EfQAT on a VisionNet: Prepare = PTQ (RTN steps from a calibration batch) + partial-gradient layers;
// during training the selection (ChannelSelector) is refreshed every RefreshEvery steps, and after each optimizer
// step the frozen rows are restored, so optimizer momentum or weight decay can never move a weight that was not
// selected. Steps, biases and norm parameters train normally (a frozen channel's weight step gets no gradient:
// that would need the very weight gradient EfQAT skips).
using Matq.Models.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.EfQat;

public sealed class EfQatAlgorithm
{
    private readonly IReadOnlyList<QuantLayer> _layers;
    private Tensor?[] _snapshot;
    private Tensor?[] _keepMask;

    public EfQatAlgorithm(EfQatConfig config, IReadOnlyList<QuantLayer> layers)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        _layers = layers;
        _snapshot = new Tensor?[layers.Count];
        _keepMask = new Tensor?[layers.Count];
        Selection = new int[layers.Count][];
    }

    public EfQatConfig Config { get; }
    /// <summary>The current selection per layer (sorted channel indices).</summary>
    public int[][] Selection { get; private set; }

    /// <summary>Trained weights / all weights under the current selection.</summary>
    public double SelectedWeightFraction()
    {
        long sel = 0, all = 0;
        for (int l = 0; l < _layers.Count; l++)
        {
            long per = _layers[l].Weight.numel() / _layers[l].OutChannels;
            sel += Selection[l].Length * per;
            all += _layers[l].Weight.numel();
        }
        return all == 0 ? 0 : (double)sel / all;
    }

    /// <summary>Recomputes importance and sets each layer's SelectedRows and the frozen-row masks.</summary>
    public void Refresh()
    {
        // Everything kept across steps leaves the caller's per-step dispose scope.
        Selection = ChannelSelector.Select(_layers.Select(l => ChannelSelector.Importance(l.Weight)).ToList(), Config.Mode, Config.Fraction);
        for (int l = 0; l < _layers.Count; l++)
        {
            var layer = _layers[l];
            layer.SelectedRows?.Dispose();
            _keepMask[l]?.Dispose();
            var device = layer.Weight.device;
            layer.SelectedRows = tensor(Selection[l].Select(i => (long)i).ToArray(), ScalarType.Int64).to(device).DetachFromDisposeScope();
            if (Selection[l].Length == layer.OutChannels) { _keepMask[l] = null; continue; }
            var shape = new long[layer.Weight.dim()];
            Array.Fill(shape, 1L);
            shape[0] = layer.OutChannels;
            var mask = new bool[layer.OutChannels];
            foreach (int c in Selection[l]) mask[c] = true;
            _keepMask[l] = tensor(mask).reshape(shape).to(device).DetachFromDisposeScope();   // [out, 1, ...]: true = trained
        }
    }

    /// <summary>Before the optimizer step of 0-based <paramref name="step"/>: refresh when due, snapshot frozen rows.</summary>
    public void BeforeStep(int step)
    {
        if (step % Config.RefreshEvery == 0) Refresh();
        using var noGrad = no_grad();
        for (int l = 0; l < _layers.Count; l++)
        {
            _snapshot[l]?.Dispose();
            _snapshot[l] = _keepMask[l] is null ? null : _layers[l].Weight.detach().clone().DetachFromDisposeScope();
        }
    }

    /// <summary>After the optimizer step: frozen rows get their snapshot back.</summary>
    public void AfterStep()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        for (int l = 0; l < _layers.Count; l++)
            if (_keepMask[l] is { } keep && _snapshot[l] is { } old)
                _layers[l].Weight.copy_(where(keep, _layers[l].Weight, old));
    }

    /// <summary>Back to plain (native-autograd) layers.</summary>
    public void Detach()
    {
        for (int l = 0; l < _layers.Count; l++)
        {
            _layers[l].SelectedRows?.Dispose();
            _layers[l].SelectedRows = null;
            _snapshot[l]?.Dispose(); _snapshot[l] = null;
            _keepMask[l]?.Dispose(); _keepMask[l] = null;
        }
    }
}
