// Contract: OmniQuant's block-wise calibration (LWC only; the learnable equivalent transformation, LET, is not
// implemented) with MatQuant's nested objective: block by block, the selected linears become LwcLinear, Adam trains
// their clip logits on the calibration windows, the exported codes are c-bit masters, and the next block's inputs are
// the outputs of the quantized block. Plain OmniQuant at c bits is the objective R = {c}, λ = {1}.
//
// Per block i, with X_fp its input on the float model's path and, for every trained width r ∈ R, X_r its input on the
// path of the model sliced to r bits (blocks 0..i−1 quantized and served at r):
//   Y    = block_float(X_fp)                                               target: the float model's output
//   L    = Σ_{r∈R} λ_r · mse(block_r(X_r), Y)                             nested reconstruction (mse = mean over elements)
//        + w_cd · Σ_{(s→r)} mse(block_r(X_r), block_s(X_s).detach())       co-distillation: slice s is slice r's target
//   Adam(lr, β = 0.9, 0.999, no weight decay) on the clip logits of the block, one step per batch of windows, `epochs`
//   passes in a seeded order; gradients pass round and slice by the straight-through estimator (LwcLinear).
//   Propagate: X_r ← block_r(X_r) with the trained clipping (each width keeps its own path, as OmniQuant feeds the
//   quantized model's outputs forward), X_fp ← Y.
// lm_head (when selected, untied) is a last stage: f(h) = head(norm(h)) in fp32 logits, its target computed per batch.
// The model's own weights are never changed; the LwcLinears are swapped out again after each block (also on failure).
// Resume: each finished block commits its results and clip logits to the checkpoint; a block restored from it gets the
// same LwcLinears with the stored logits (no training) and propagates every path as before, so the next block's inputs
// are bit-identical to an uninterrupted run's (Adam and the batch order are seeded per block).
using System.Diagnostics;
using Matq.Algorithms.MatQuant;
using Matq.Models;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.OmniQuant;

/// <summary>One epoch of one block: mean training loss over its steps and each width's mean mse (R's order).</summary>
public sealed record OmniQuantEpoch(int Block, int BlockCount, int Epoch, int Epochs, double Loss, IReadOnlyList<double> WidthMse);

public static class OmniQuantBlockwise
{
    /// <summary>Quantizes <paramref name="selected"/> (model order) under <paramref name="objective"/> (its Bits, Lambda,
    /// Codistill, CodistillWeight, ExtraPrecision; MasterBits = quant.Bits); returns one result per linear in model order.</summary>
    public static IReadOnlyList<QuantizedLinearResult> Run(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected, QuantizationConfig quant,
        MatQuantConfig objective, OmniQuantConfig omni, CalibrationTokens data, int seed, Action<QuantizationEvent>? report = null,
        Action<OmniQuantEpoch>? epochLog = null, CancellationToken cancel = default, QuantizationCheckpoint? checkpoint = null,
        Func<int, IDisposable>? hold = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(selected);
        ArgumentNullException.ThrowIfNull(quant);
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(omni);
        ArgumentNullException.ThrowIfNull(data);
        if (objective.MasterBits != quant.Bits) throw new ArgumentException($"objective master bits {objective.MasterBits} ≠ run bits {quant.Bits}");
        using var runner = new Runner(model, selected, quant, objective, omni, seed, report, epochLog, cancel, checkpoint,
            hold ?? (_ => Matq.Loading.LlamaBlockStream.NoHold.Instance));
        return runner.Run(data);
    }

    private sealed class Runner(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected, QuantizationConfig quant, MatQuantConfig objective,
        OmniQuantConfig omni, int seed, Action<QuantizationEvent>? report, Action<OmniQuantEpoch>? epochLog, CancellationToken cancel,
        QuantizationCheckpoint? checkpoint, Func<int, IDisposable> hold) : IDisposable
    {
        private readonly List<QuantizedLinearResult> _results = new(selected.Count);
        private readonly List<Tensor> _fp = [];                                  // X_fp batches [b, T, hidden]
        private readonly Dictionary<int, List<Tensor>> _paths = [];              // X_r batches per width
        // widths whose path is needed: trained (λ > 0) or in a co-distillation pair
        private readonly (int Bits, double Lambda)[] _widths = objective.Bits.Select((b, i) => (Bits: b, Lambda: objective.Lambda[i]))
            .Where(w => w.Lambda > 0 || objective.Codistill.Any(p => p.Teacher == w.Bits || p.Student == w.Bits)).ToArray();
        private readonly int _blocks = model.Config.NumLayers + (selected.Any(s => s.Name == "lm_head") ? 1 : 0);
        private readonly int _resume = checkpoint?.BlocksDone ?? 0;                // blocks 0.._resume−1 come from the checkpoint

        public IReadOnlyList<QuantizedLinearResult> Run(CalibrationTokens data)
        {
            if (_resume > _blocks)
                throw new MatqException($"the checkpoint {checkpoint!.Folder} holds {_resume} finished blocks, this run has {_blocks}; run without --resume to start over");
            Report(QuantizationEventKind.Started, Math.Min(_resume, _blocks - 1));
            if (_resume > 0)
                Report(QuantizationEventKind.Message, Math.Min(_resume, _blocks - 1),
                    message: $"resuming at block {_resume + 1}/{_blocks}: blocks 1..{_resume} restored from the checkpoint");
            var windows = omni.Samples > 0 ? data.Windows.Take(omni.Samples).ToArray() : data.Windows;
            foreach (var (r, _) in _widths) _paths[r] = [];
            using (no_grad())
            using (hold(-1))
                foreach (var batch in new CalibrationTokens(windows).Batches(omni.Batch, model.Device))
                {
                    using var ids = batch;                                            // [b, T] int64
                    using var scope = NewDisposeScope();
                    var h = model.EmbedTokens(ids);                                   // [b, T, hidden]
                    _fp.Add(h.clone().DetachFromDisposeScope());
                    foreach (var list in _paths.Values) list.Add(h.clone().DetachFromDisposeScope());
                }
            foreach (var layer in model.Layers)
            {
                var local = selected.Where(s => s.Name != "lm_head" && s.Block == layer.Index).ToList();
                using var held = hold(layer.Index);
                Stage(layer.Index, local, name => layer.GetLinear(Local(name)), (name, m) => layer.ReplaceLinear(Local(name), m),
                    h => layer.forward(h), isHead: false);
            }
            var head = selected.Where(s => s.Name == "lm_head").ToList();
            if (head.Count > 0)
                using (hold(model.Config.NumLayers))
                    Stage(_blocks - 1, head, _ => model.LmHead!, (_, m) => model.ReplaceLinear("lm_head", m), model.FinalNormAndHead, isHead: true);
            return _results;
        }

        public void Dispose()
        {
            foreach (var t in _fp.Concat(_paths.Values.SelectMany(l => l))) t.Dispose();
        }

        private void Report(QuantizationEventKind kind, int block, LayerReport? layer = null, string? message = null) =>
            report?.Invoke(new QuantizationEvent(kind, block, _blocks, _results.Count, selected.Count, layer, message));

        // One block (or the head): swap in LWC, targets, train, export, propagate, swap back.
        private void Stage(int block, List<SelectedLinear> linears, Func<string, nn.Module<Tensor, Tensor>> get,
            Action<string, nn.Module<Tensor, Tensor>> replace, Func<Tensor, Tensor> forward, bool isHead)
        {
            cancel.ThrowIfCancellationRequested();
            bool restored = block < _resume;
            if (linears.Count == 0)
            {
                if (!isHead) Propagate(forward, null, _ => { });                   // an unquantized block: every path through the float block
                if (!restored) checkpoint?.Commit(block, [], []);
                return;
            }
            var sw = Stopwatch.StartNew();
            if (!restored) Report(QuantizationEventKind.BlockStarted, block);
            var originals = linears.Select(l => (l.Name, Module: get(l.Name))).ToList();
            var lwc = linears.Select(l => new LwcLinear(l.Name, l.Weight, quant.Spec, omni.Init, omni.MaxFor(objective.Bits, objective.MasterBits)) { ExtraPrecision = objective.ExtraPrecision }).ToList();
            var targets = new List<Tensor>();
            try
            {
                for (int i = 0; i < lwc.Count; i++) replace(linears[i].Name, lwc[i]);
                if (!isHead)
                    using (no_grad())
                    {
                        SetBits(lwc, 0);
                        foreach (var x in _fp) targets.Add(Apply(forward, x).DetachFromDisposeScope());
                    }
                Tensor Target(int j)
                {
                    if (!isHead) return targets[j];
                    using var noGrad = no_grad();                                     // logits [b, T, V] are recomputed, not stored
                    SetBits(lwc, 0);
                    return Apply(forward, _fp[j]);
                }
                if (restored)
                {
                    checkpoint!.Restore(block, name => State(lwc, name));
                    _results.AddRange(checkpoint.Results(block));
                    if (!isHead) Propagate(forward, targets, r => SetBits(lwc, r));
                    return;
                }
                Train(block, lwc, forward, Target);
                double seconds = sw.Elapsed.TotalSeconds / lwc.Count;
                int first = _results.Count;
                foreach (var m in lwc)
                {
                    using var scope = NewDisposeScope();
                    var (codes, scales, zeros) = m.Export();
                    double mse = (m.FloatWeight - TensorAffineQuantizer.Dequantize(codes, scales, zeros, m.GroupSize)).square().mean().item<float>();
                    int cols = checked((int)codes.shape[1]);
                    var r = new LayerReport(m.GetName(), checked((int)codes.shape[0]), cols, quant.Bits, mse, null, null, seconds);
                    _results.Add(QuantizedLinearResult.FromTensors(m.GetName(), codes, scales, zeros, quant.StoredGroupSize(cols), null, r));
                    Report(QuantizationEventKind.LayerDone, block, r);
                }
                if (!isHead) Propagate(forward, targets, r => SetBits(lwc, r));
                if (checkpoint is not null)
                {
                    var committed = _results.GetRange(first, _results.Count - first);
                    checkpoint.Commit(block, committed, lwc.SelectMany(m => new[] { (m.GetName() + ".clip_max", (Tensor)m.ClipMax), (m.GetName() + ".clip_min", m.ClipMin) }));
                    var offloaded = checkpoint.Offload(block, committed);   // codes read back from the block's file when used
                    for (int k = 0; k < offloaded.Count; k++) _results[first + k] = offloaded[k];
                }
                var clips = lwc.Select(m => m.MeanClip()).ToList();
                Report(QuantizationEventKind.BlockDone, block, message:
                    $"mean clip γ {clips.Average(c => c.Gamma):F4}, β {clips.Average(c => c.Beta):F4}, {sw.Elapsed.TotalSeconds:F1} s");
            }
            finally
            {
                foreach (var (name, m) in originals) replace(name, m);
                foreach (var m in lwc) m.Dispose();
                foreach (var t in targets) t.Dispose();                              // empty after a propagation (moved into X_fp)
            }
        }

        // "model.layers.3.mlp.up_proj.clip_max" → that LwcLinear's logits
        private static Tensor State(List<LwcLinear> lwc, string name)
        {
            int dot = name.LastIndexOf('.');
            var m = dot < 0 ? null : lwc.FirstOrDefault(l => l.GetName() == name[..dot]);
            return (m, dot < 0 ? "" : name[(dot + 1)..]) switch
            {
                ({ } l, "clip_max") => l.ClipMax,
                ({ } l, "clip_min") => l.ClipMin,
                _ => throw new MatqException($"the checkpoint names '{name}', which this block has no clip logits for; run without --resume to start over"),
            };
        }

        private void Train(int block, List<LwcLinear> modules, Func<Tensor, Tensor> forward, Func<int, Tensor> target)
        {
            if (omni.Epochs == 0) return;
            var parameters = modules.SelectMany(m => m.Trainable).ToList();
            using var adam = optim.Adam(parameters, omni.Lr, 0.9, 0.999, 1e-8, 0.0);
            var rng = new Random(unchecked(seed * 7919 + block));
            var order = Enumerable.Range(0, _fp.Count).ToArray();
            var students = objective.Codistill.Select(p => p.Student).ToHashSet();
            for (int epoch = 1; epoch <= omni.Epochs; epoch++)
            {
                rng.Shuffle(order);
                double sum = 0;
                var widthSum = new double[_widths.Length];
                foreach (int j in order)
                {
                    cancel.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    Tensor y = target(j).to(ScalarType.Float32);
                    var outs = new Dictionary<int, Tensor>();
                    Tensor total = zeros(Array.Empty<long>(), device: y.device);
                    for (int k = 0; k < _widths.Length; k++)
                    {
                        var (r, lambda) = _widths[k];
                        SetBits(modules, r);
                        bool graph = lambda > 0 || students.Contains(r);           // a pure teacher needs no graph
                        Tensor o;
                        using (graph ? null : no_grad()) o = forward(_paths[r][j]).to(ScalarType.Float32);
                        outs[r] = o;
                        var mse = F.mse_loss(o, y);
                        widthSum[k] += mse.item<float>();
                        if (lambda > 0) total = total + mse * lambda;
                    }
                    foreach (var p in objective.Codistill)
                        total = total + F.mse_loss(outs[p.Student], outs[p.Teacher].detach()) * objective.CodistillWeight;
                    total.backward();
                    adam.step();
                    adam.zero_grad();
                    sum += total.item<float>();
                }
                var e = new OmniQuantEpoch(block, _blocks, epoch, omni.Epochs, sum / order.Length, widthSum.Select(s => s / order.Length).ToArray());
                epochLog?.Invoke(e);
                Report(QuantizationEventKind.Message, block, message: $"epoch {epoch}/{omni.Epochs}, loss {e.Loss:E3} ("
                    + string.Join(", ", _widths.Select((w, k) => $"int{w.Bits} {e.WidthMse[k]:E2}")) + ")");
            }
        }

        // X_r ← f_r(X_r) for every width (setBits(r) selects the slice); X_fp ← Y (moved out of targets), or f(X_fp) when null.
        private void Propagate(Func<Tensor, Tensor> forward, List<Tensor>? targets, Action<int> setBits)
        {
            using var noGrad = no_grad();
            foreach (var (r, list) in _paths)
            {
                setBits(r);
                for (int j = 0; j < list.Count; j++)
                {
                    var next = Apply(forward, list[j]).DetachFromDisposeScope();
                    list[j].Dispose();
                    list[j] = next;
                }
            }
            for (int j = 0; j < _fp.Count; j++)
            {
                var next = targets is not null ? targets[j] : Apply(forward, _fp[j]).DetachFromDisposeScope();
                _fp[j].Dispose();
                _fp[j] = next;
            }
            targets?.Clear();
        }
    }

    private static Tensor Apply(Func<Tensor, Tensor> forward, Tensor x)
    {
        using var scope = NewDisposeScope();
        return forward(x).MoveToOuterDisposeScope();
    }

    private static void SetBits(IEnumerable<LwcLinear> modules, int bits)
    {
        foreach (var m in modules) m.Bits = bits;
    }

    // "model.layers.3.mlp.up_proj" → "mlp.up_proj"
    private static string Local(string name) => name[(name.IndexOf('.', "model.layers.".Length) + 1)..];
}
