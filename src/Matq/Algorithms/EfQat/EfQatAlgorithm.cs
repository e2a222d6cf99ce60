// Contract: EfQAT on any set of IEfQatLayer (a VisionNet's QuantLayers, an LM's NestedQuantLinears): Prepare = PTQ (RTN steps from a calibration batch) + partial-gradient layers;
// during training the selection (ChannelSelector) is refreshed every RefreshEvery steps, and after each optimizer
// step the frozen rows are restored, so optimizer momentum or weight decay can never move a weight that was not
// selected. Steps, biases and norm parameters train normally (a frozen channel's weight step gets no gradient:
// that would need the very weight gradient EfQAT skips).
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.EfQat;

/// <summary>A layer whose weight rows (output channels) EfQAT selects: the forward must route <see cref="SelectedRows"/>
/// and <see cref="FrozenRows"/> to <see cref="PartialWeightGrad"/> so only selected rows get a weight gradient.</summary>
public interface IEfQatLayer
{
    /// <summary>[out, ...] the trained weight (latent weight for fake-quantized layers).</summary>
    Parameter Weight { get; }
    long OutChannels { get; }
    /// <summary>Rows whose weights get gradients (int64 [S]); null = all (plain training).</summary>
    Tensor? SelectedRows { get; set; }
    /// <summary>The other rows (sorted int64), set together with SelectedRows.</summary>
    Tensor? FrozenRows { get; set; }
    /// <summary>How the forward computes the selected rows' weight gradient (PartialWeightGrad's method; all exact).</summary>
    ConvWeightGradMethod GradMethod { get; set; }
}

public sealed class EfQatAlgorithm
{
    private readonly IReadOnlyList<IEfQatLayer> _layers;
    private Tensor?[] _snapshot;
    private readonly bool[] _partial;   // layer l has frozen rows under the current selection

    public EfQatAlgorithm(EfQatConfig config, IReadOnlyList<IEfQatLayer> layers)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        _layers = layers;
        _snapshot = new Tensor?[layers.Count];
        _partial = new bool[layers.Count];
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

    /// <summary>Recomputes importance and sets each layer's SelectedRows and FrozenRows.</summary>
    public void Refresh()
    {
        // Everything kept across steps leaves the caller's per-step dispose scope.
        Selection = ChannelSelector.Select(_layers.Select(l => ChannelSelector.Importance(l.Weight)).ToList(), Config.Mode, Config.Fraction);
        for (int l = 0; l < _layers.Count; l++)
        {
            var layer = _layers[l];
            layer.SelectedRows?.Dispose();
            var device = layer.Weight.device;
            layer.FrozenRows?.Dispose();
            layer.SelectedRows = tensor(Selection[l].Select(i => (long)i).ToArray(), ScalarType.Int64).to(device).DetachFromDisposeScope();
            var selected = new HashSet<int>(Selection[l]);
            layer.FrozenRows = tensor(Enumerable.Range(0, (int)layer.OutChannels).Where(i => !selected.Contains(i)).Select(i => (long)i).ToArray(),
                ScalarType.Int64).to(device).DetachFromDisposeScope();
            _partial[l] = Selection[l].Length < layer.OutChannels;
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
            // only the frozen rows: they are what AfterStep puts back
            _snapshot[l] = !_partial[l] ? null : _layers[l].Weight.detach().index_select(0, _layers[l].FrozenRows!).DetachFromDisposeScope();
        }
    }

    /// <summary>After the optimizer step: frozen rows get their snapshot back.</summary>
    public void AfterStep()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        for (int l = 0; l < _layers.Count; l++)
            if (_partial[l] && _snapshot[l] is { } old)
                _layers[l].Weight.index_copy_(0, _layers[l].FrozenRows!, old);
    }

    /// <summary>Back to plain (native-autograd) layers.</summary>
    public void Detach()
    {
        for (int l = 0; l < _layers.Count; l++)
        {
            _layers[l].SelectedRows?.Dispose();
            _layers[l].SelectedRows = null;
            _layers[l].FrozenRows?.Dispose();
            _layers[l].FrozenRows = null;
            _snapshot[l]?.Dispose(); _snapshot[l] = null;
            _partial[l] = false;
        }
    }
}
