// Helpers that create model parameters: they outlive any caller's DisposeScope and never run a random init when
// weights come from a checkpoint. Random init (N(0, 0.02) like HF's initializer_range) is for tests and training from scratch.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models;

/// <summary>Supplies the initial value of a parameter by its HF name and expected shape, or null for the default init.</summary>
public delegate Tensor? WeightSource(string name, long[] shape);

internal static class ModelInit
{
    /// <summary>Wraps a tensor as a trainable parameter owned by the module (detached from any DisposeScope).</summary>
    public static Parameter Param(Tensor t)
    {
        var p = t is Parameter existing ? existing : new Parameter(t, requires_grad: true);
        p.DetachFromDisposeScope();
        return p;
    }

    public static Tensor Normal(long[] shape, Device? device, ScalarType dtype, double std = 0.02) =>
        (randn(shape, dtype: ScalarType.Float32, device: device) * std).to(dtype);

    /// <summary>[out, in] Linear with HF layout; weight and bias from <paramref name="source"/> when it has them.</summary>
    public static Linear Linear(WeightSource? source, string name, long inFeatures, long outFeatures, bool bias, Device? device, ScalarType dtype)
    {
        var w = source?.Invoke(name + ".weight", new[] { outFeatures, inFeatures }) ?? Normal(new[] { outFeatures, inFeatures }, device, dtype);
        Tensor? b = null;
        if (bias) b = source?.Invoke(name + ".bias", new[] { outFeatures }) ?? zeros(outFeatures, dtype: dtype, device: device);
        return nn.Linear(Param(w), b is null ? null : Param(b));
    }
}
