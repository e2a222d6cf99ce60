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
    // Separate masters live in two flat fp32 buffers, matrices (weight-decayed) and vectors (not), so AdamW and the
    // clip run a handful of kernels per step instead of ~12 per tensor: TorchSharp's AdamW loops over tensors one by
    // one (PyTorch's "foreach" fusion is not exposed), which on an H100 cost ~25% of a small model's step.
    private readonly List<(string Name, Parameter Model, Tensor Master, Tensor GradSlice)> _pairs = new();
    private readonly List<Parameter> _flat = new();
    private readonly List<Tensor> _flatGrads = new();

    /// <summary>Casts <paramref name="model"/> to <paramref name="computeDtype"/> (floating parameters only) and builds fp32 masters.</summary>
    public MasterWeights(nn.Module model, ScalarType computeDtype)
    {
        ComputeDtype = computeDtype;
        Separate = computeDtype != ScalarType.Float32;
        var named = model.named_parameters().ToList();
        foreach (var (name, p) in named)
            if (p.dtype != ScalarType.Float32)
                throw new ArgumentException($"parameter {name} is {p.dtype}; training starts from an fp32 model");
        if (!Separate)
        {
            foreach (var (name, p) in named) _pairs.Add((name, p, p, p));
            Decayed = named.Where(n => n.parameter.dim() >= 2).Select(n => n.parameter).ToList();
            Undecayed = named.Where(n => n.parameter.dim() < 2).Select(n => n.parameter).ToList();
            return;
        }

        // Layout: each group's tensors back to back in named_parameters order; views give each its own shape.
        var masters = new Dictionary<string, (Tensor Master, Tensor Grad)>();
        var groups = new List<Parameter>[2] { new(), new() };
        foreach (bool decay in new[] { true, false })
        {
            var members = named.Where(n => (n.parameter.dim() >= 2) == decay).ToList();
            if (members.Count == 0) continue;
            long total = members.Sum(m => m.parameter.numel());
            var device = members[0].parameter.device;
            // The masters are copied from the fp32 weights before the model is narrowed, so nothing is lost.
            var flat = new Parameter(zeros(total, dtype: ScalarType.Float32, device: device), requires_grad: true);
            var grad = zeros(total, dtype: ScalarType.Float32, device: device);
            long offset = 0;
            foreach (var (name, p) in members)
            {
                long n = p.numel();
                var view = flat.detach().narrow(0, offset, n).view(p.shape);
                using (no_grad()) view.copy_(p);
                masters[name] = (view.DetachFromDisposeScope(), grad.narrow(0, offset, n).DetachFromDisposeScope());
                offset += n;
            }
            _flat.Add(flat);
            _flatGrads.Add(grad.DetachFromDisposeScope());
            groups[decay ? 0 : 1].Add(flat);
        }
        Decayed = groups[0];
        Undecayed = groups[1];
        // Module.to(dtype) swaps in new Parameter objects, so the model side is paired by name afterwards.
        model.to(computeDtype);
        foreach (var (name, p) in model.named_parameters()) _pairs.Add((name, p, masters[name].Master, masters[name].Grad));
    }

    public ScalarType ComputeDtype { get; }

    /// <summary>True when the model runs in a narrower dtype than the fp32 masters.</summary>
    public bool Separate { get; }

    /// <summary>What AdamW updates with weight decay (matrices) and without (norm gains, biases).</summary>
    public IReadOnlyList<Parameter> Decayed { get; }
    public IReadOnlyList<Parameter> Undecayed { get; }
    /// <summary>Every tensor the optimizer updates (named_parameters order when they are the model's own).</summary>
    public IEnumerable<Parameter> OptimizerParameters => Separate ? Decayed.Concat(Undecayed) : _pairs.Select(p => p.Model);

    /// <summary>Each model parameter's fp32 master (a view into the flat buffers when separate), by name: what checkpoints store.</summary>
    public IReadOnlyList<(string Name, Tensor Master)> Masters => _pairs.Select(p => (p.Name, p.Master)).ToList();

    /// <summary>flat grad ← fp32(model grads); the model's grads are dropped so the next backward starts clean.</summary>
    public void GradsToMasters()
    {
        if (!Separate) return;
        using var scope = NewDisposeScope();
        using (no_grad())
            foreach (var (_, model, _, slice) in _pairs)
            {
                var g = model.grad;
                if (g is null) slice.zero_();
                else slice.copy_(g.view(-1));   // bf16 → fp32 widening copy
                model.grad = null;
            }
        for (int i = 0; i < _flat.Count; i++) _flat[i].grad = _flatGrads[i];
    }

    /// <summary>Data-parallel step: after <see cref="GradsToMasters"/>, every rank's optimizer gradients become their mean
    /// over ranks (the flat buffers as they are; the model's own grads, in fp32, bucketed).</summary>
    public void AverageGrads(Matq.Distributed.ProcessGroup group)
    {
        if (group.WorldSize == 1) return;
        if (Separate) Matq.Distributed.GradientBuckets.AllReduceMean(group, _flatGrads);
        else Matq.Distributed.GradientBuckets.AllReduceMean(group, _pairs.Select(p => p.Model.grad).OfType<Tensor>().ToList());
    }

    /// <summary>Every rank's masters (and model) become rank 0's: the same start point for data-parallel ranks.</summary>
    public void BroadcastMasters(Matq.Distributed.ProcessGroup group)
    {
        if (group.WorldSize == 1) return;
        using (no_grad())
            if (Separate) foreach (var f in _flat) group.Broadcast(f.detach());
            else foreach (var (_, model, _, _) in _pairs) group.Broadcast(model.detach());
        MastersToModel();
    }

    /// <summary>model ← round(master) after each optimizer step (and after loading a checkpoint).</summary>
    public void MastersToModel()
    {
        if (!Separate) return;
        using var scope = NewDisposeScope();
        using (no_grad())
            foreach (var (_, model, master, _) in _pairs) model.copy_(master);
    }

    public void Dispose()
    {
        if (!Separate) return;
        foreach (var (_, _, master, slice) in _pairs) { master.Dispose(); slice.Dispose(); }
        foreach (var t in _flatGrads) t.Dispose();
        foreach (var p in _flat) p.Dispose();
    }
}
