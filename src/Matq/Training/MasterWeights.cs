// Mixed precision without autocast (TorchSharp 0.107 has none): the model holds its weights in the compute dtype
// (bf16 on GPU) and runs forward/backward there; the optimizer owns fp32 master copies. After backward the bf16
// grads are widened into the masters, the optimizer steps in fp32, and the masters are rounded back into the model.
// With an fp32 compute dtype the masters ARE the model's parameters and every transfer is a no-op.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Training;

public sealed class MasterWeights : IDisposable
{
    private readonly List<(string Name, Parameter Model, Parameter Master)> _pairs = new();

    /// <summary>Casts <paramref name="model"/> to <paramref name="computeDtype"/> (floating parameters only) and builds fp32 masters.</summary>
    public MasterWeights(nn.Module model, ScalarType computeDtype)
    {
        ComputeDtype = computeDtype;
        Separate = computeDtype != ScalarType.Float32;
        var masters = new Dictionary<string, Parameter>();
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.dtype != ScalarType.Float32)
                throw new ArgumentException($"parameter {name} is {p.dtype}; training starts from an fp32 model");
            // The master is cloned from the fp32 weights before the model is narrowed, so nothing is lost.
            masters[name] = Separate ? new Parameter(p.detach().clone(), requires_grad: true) : p;
        }
        // Module.to(dtype) swaps in new Parameter objects, so the model side is paired by name afterwards.
        if (Separate) model.to(computeDtype);
        foreach (var (name, p) in model.named_parameters()) _pairs.Add((name, p, masters[name]));
    }

    public ScalarType ComputeDtype { get; }

    /// <summary>True when the model runs in a narrower dtype than the fp32 masters.</summary>
    public bool Separate { get; }

    /// <summary>The fp32 tensors the optimizer updates, in named_parameters order.</summary>
    public IReadOnlyList<(string Name, Parameter Master)> Masters => _pairs.Select(p => (p.Name, p.Master)).ToList();

    /// <summary>master.grad ← fp32(model.grad); the model's grads are dropped so the next backward starts clean.</summary>
    public void GradsToMasters()
    {
        if (!Separate) return;
        foreach (var (_, model, master) in _pairs)
        {
            var g = model.grad;
            if (g is null) continue;
            var wide = g.to_type(ScalarType.Float32);
            var old = master.grad;
            master.grad = wide;
            old?.Dispose();
            model.grad = null;
        }
    }

    /// <summary>model ← round(master) after each optimizer step (and after loading a checkpoint).</summary>
    public void MastersToModel()
    {
        if (!Separate) return;
        using var scope = NewDisposeScope();
        using (no_grad())
            foreach (var (_, model, master) in _pairs) model.copy_(master);
    }

    public void Dispose()
    {
        if (!Separate) return;
        foreach (var (_, _, master) in _pairs) master.Dispose();
    }
}
