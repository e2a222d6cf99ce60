// Per-layer key/value cache for incremental decoding: keys and values [B, Hkv, T_total, D] grow by concatenation.
// Stored tensors are detached from DisposeScopes and owned here; Dispose frees them.
using static TorchSharp.torch;

namespace Matq.Models;

public sealed class KvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;

    public KvCache(int numLayers)
    {
        _keys = new Tensor?[numLayers];
        _values = new Tensor?[numLayers];
    }

    public int NumLayers => _keys.Length;

    /// <summary>Tokens cached so far (from layer 0).</summary>
    public long Length => _keys[0]?.shape[2] ?? 0;

    /// <summary>Appends k, v [B, Hkv, T, D] for <paramref name="layer"/> and returns the whole cached k, v.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        var oldK = _keys[layer];
        var oldV = _values[layer];
        var newK = oldK is null ? k.detach().clone() : cat(new[] { oldK, k.detach() }, 2);
        var newV = oldV is null ? v.detach().clone() : cat(new[] { oldV, v.detach() }, 2);
        _keys[layer] = newK.DetachFromDisposeScope();
        _values[layer] = newV.DetachFromDisposeScope();
        oldK?.Dispose();
        oldV?.Dispose();
        return (newK, newV);
    }

    public void Dispose()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            _keys[i]?.Dispose();
            _values[i]?.Dispose();
            _keys[i] = _values[i] = null;
        }
    }
}
