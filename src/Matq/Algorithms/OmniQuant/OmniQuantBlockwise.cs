// Contract: OmniQuant's block-wise calibration (LWC, and with omni.Let the learnable equivalent transformation, LET)
// with MatQuant's nested objective: block by block, the selected linears become LwcLinear, Adam trains
// their clip logits on the calibration windows, the exported codes are c-bit masters, and the next block's inputs are
// the outputs of the quantized block. Plain OmniQuant at c bits is the objective R = {c}, λ = {1}.
//
// Per block i, with X_fp its input on the float model's path and, for every trained width r ∈ R, X_r its input on the
// path of the model sliced to r bits (blocks 0..i−1 quantized and served at r):
//   Y    = block_float(X_fp)                                               target: the float model's output
//   L    = Σ_{r∈R} λ_r · mse(block_r(X_r), Y)                             nested reconstruction (mse = mean over elements)
//        + w_cd · Σ_{(s→r)} mse(block_r(X_r), block_s(X_s).detach())       co-distillation: slice s is slice r's target
//   Adam(lr, β = 0.9, 0.999, no weight decay) on the clip logits of the block, one step per batch of windows, `epochs`
//   passes in a seeded order; gradients pass round and slice by the straight-through estimator (LwcLinear). On CUDA the
//   steps' matmuls run in TF32 unless omni.Tf32 is off (upstream trains under fp16 autocast); Y, the propagated paths and
//   the exported codes are computed in fp32 outside the steps.
//   Propagate: X_r ← block_r(X_r) with the trained clipping (each width keeps its own path, as OmniQuant feeds the
//   quantized model's outputs forward), X_fp ← Y.
// lm_head (when selected, untied) is a last stage: f(h) = head(norm(h)) in fp32 logits, its target computed per batch.
// The LwcLinears are swapped out again after each block (also on failure). The model's own weights are never changed,
// except by LET: once a block is done its scales are folded into the block's norms and linears (LetBlock.Fold), an
// exact equivalence, so the model stays the same float function and the exported codes are those of the folded weights.
// LET trains in the same Adam steps (its own learning rate), its scales starting at 1 and applied as transforms inside
// the LwcLinears; the lm_head stage has no LET.
// Streaming: each stage holds its block (context.Hold); LET's pairs lie inside the block, so the fold happens while it is
// held, and on a block-streamed model the folded tensors are kept by LlamaBlockStream.Override (later holds and the
// artifact's float tensors read them, not the checkpoint's originals).
// Resume: each finished block commits its results and clip logits to the checkpoint; a block restored from it gets the
// same LwcLinears with the stored logits (no training) and propagates every path as before, so the next block's inputs
// are bit-identical to an uninterrupted run's (Adam and the batch order are seeded per block).
using Matq.Runtime;
using System.Diagnostics;
using Matq.Algorithms.MatQuant;
using Matq.Loading;
using Matq.Models;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.OmniQuant;

/// <summary>One epoch of one block: mean training loss over its steps and each width's mean mse (R's order).</summary>
public sealed record OmniQuantEpoch(int Block, int BlockCount, int Epoch, int Epochs, double Loss, IReadOnlyList<double> WidthMse);

public static class OmniQuantBlockwise
{
    /// <summary>Quantizes the run's selected linears (<see cref="QuantizationContext.Selected"/>, model order) under
    /// <paramref name="objective"/> (its Bits, Lambda, Codistill, CodistillWeight, ExtraPrecision; MasterBits = quant.Bits);
    /// returns one result per linear in model order. <paramref name="method"/> names the run in a missing-calibration error.</summary>
    public static IReadOnlyList<QuantizedLinearResult> Run(QuantizationContext context, QuantizationConfig quant, MatQuantConfig objective,
        OmniQuantConfig omni, string method, Action<OmniQuantEpoch>? epochLog = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(quant);
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(omni);
        if (objective.MasterBits != quant.Bits) throw new ArgumentException($"objective master bits {objective.MasterBits} ≠ run bits {quant.Bits}");
        var data = context.RequireCalibration(method);
        using var runner = new Runner(context.Model, context.Selected, quant, objective, omni, context.Seed, context.Progress, epochLog,
            context.Cancellation, context.Checkpoint, context.Hold, context.Blocks);
        return runner.Run(data);
    }

    private sealed class Runner(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected, QuantizationConfig quant, MatQuantConfig objective,
        OmniQuantConfig omni, int seed, QuantizationProgress progress, Action<OmniQuantEpoch>? epochLog, CancellationToken cancel,
        QuantizationCheckpoint? checkpoint, Func<int, IDisposable> hold, LlamaBlockStream? stream) : IDisposable
    {
        private readonly List<QuantizedLinearResult> _results = new(selected.Count);
        private readonly List<Tensor> _fp = [];                                  // X_fp batches [b, T, hidden]
        private readonly Dictionary<int, List<Tensor>> _paths = [];              // X_r batches per width
        // widths whose path is needed: trained (λ > 0) or in a co-distillation pair
        private readonly (int Bits, double Lambda)[] _widths = objective.Bits.Select((b, i) => (Bits: b, Lambda: objective.Lambda[i]))
            .Where(w => w.Lambda > 0 || objective.Codistill.Any(p => p.Teacher == w.Bits || p.Student == w.Bits)).ToArray();
        private readonly int _blocks = progress.BlockCount;
        private readonly int _resume = checkpoint?.BlocksDone ?? 0;                // blocks 0.._resume−1 come from the checkpoint

        public IReadOnlyList<QuantizedLinearResult> Run(CalibrationTokens data)
        {
            if (_resume > _blocks)
                throw new MatqException($"the checkpoint {checkpoint!.Folder} holds {_resume} finished blocks, this run has {_blocks}; run without --resume to start over");
            progress.Started(Math.Min(_resume, _blocks - 1));
            if (_resume > 0)
                progress.Message(Math.Min(_resume, _blocks - 1),
                    $"resuming at block {_resume + 1}/{_blocks}: blocks 1..{_resume} restored from the checkpoint");
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
                    h => layer.forward(h), isHead: false, layer);
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

        // One block (or the head): swap in LWC, targets, train, export, propagate, swap back.
        private void Stage(int block, List<SelectedLinear> linears, Func<string, nn.Module<Tensor, Tensor>> get,
            Action<string, nn.Module<Tensor, Tensor>> replace, Func<Tensor, Tensor> forward, bool isHead, LlamaDecoderLayer? layer = null)
        {
            cancel.ThrowIfCancellationRequested();
            // what the stage makes and does not keep (LWC set-up intermediates, exports, checkpoint copies) is freed when it
            // ends; the activations it keeps (X_fp, the width paths, targets) are detached from every scope
            using var stageScope = NewDisposeScope();
            bool restored = block < _resume;
            if (linears.Count == 0)
            {
                if (!isHead) Propagate(forward, null, _ => { });                   // an unquantized block: every path through the float block
                if (!restored) checkpoint?.Commit(block, [], []);
                return;
            }
            var sw = Stopwatch.StartNew();
            if (!restored) progress.BlockStarted(block);
            var originals = linears.Select(l => (l.Name, Module: get(l.Name))).ToList();
            var lwc = linears.Select((l, i) => new LwcLinear(l.Name, l.Weight, quant.Spec, omni.Init, omni.MaxFor(objective.Bits, objective.MasterBits),
                bias: (originals[i].Module as Linear)?.bias) { ExtraPrecision = objective.ExtraPrecision }).ToList();
            var targets = new List<Tensor>();
            var let = omni.Let && layer is not null ? new LetBlock(model.Config, linears.Select(l => Local(l.Name)), lwc[0].FloatWeight.device) : null;
            if (let is not null)
                foreach (var m in lwc)
                {
                    string local = Local(m.GetName());
                    m.Let = () => let.Scales(local);
                }
            bool fold = false;
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
                    checkpoint!.Restore(block, name => State(lwc, let, name));
                    var stored = checkpoint.Results(block);
                    _results.AddRange(stored);
                    progress.Restored(stored.Count);
                    if (!isHead) Propagate(forward, targets, r => SetBits(lwc, r));
                    fold = true;
                    return;
                }
                Train(block, lwc, let, forward, Target);
                double seconds = sw.Elapsed.TotalSeconds / lwc.Count;
                int first = _results.Count;
                foreach (var m in lwc)
                {
                    using var scope = NewDisposeScope();
                    var (codes, scales, zeros) = m.Export();
                    using var noGrad = no_grad();
                    double mse = (m.TransformedWeight() - TensorAffineQuantizer.Dequantize(codes, scales, zeros, m.GroupSize)).Squared().mean().item<float>();
                    int cols = checked((int)codes.shape[1]);
                    var r = new LayerReport(m.GetName(), checked((int)codes.shape[0]), cols, quant.Bits, mse, null, null, seconds);
                    _results.Add(QuantizedLinearResult.FromTensors(m.GetName(), codes, scales, zeros, quant.StoredGroupSize(cols), null, r));
                    progress.LayerDone(block, r);
                }
                if (!isHead) Propagate(forward, targets, r => SetBits(lwc, r));
                if (checkpoint is not null)
                {
                    var committed = _results.GetRange(first, _results.Count - first);
                    checkpoint.Commit(block, committed, lwc.SelectMany(m => new[] { (m.GetName() + ".clip_max", (Tensor)m.ClipMax), (m.GetName() + ".clip_min", m.ClipMin) })
                        .Concat(let?.State(BlockPrefix(block)) ?? []));
                    var offloaded = checkpoint.Offload(block, committed);   // codes read back from the block's file when used
                    for (int k = 0; k < offloaded.Count; k++) _results[first + k] = offloaded[k];
                }
                fold = true;
                var clips = lwc.Select(m => m.MeanClip()).ToList();
                progress.BlockDone(block,
                    $"mean clip γ {clips.Average(c => c.Gamma):F4}, β {clips.Average(c => c.Beta):F4}, {sw.Elapsed.TotalSeconds:F1} s");
            }
            finally
            {
                foreach (var (name, m) in originals) replace(name, m);
                if (fold && let is not null)
                {
                    var folded = let.Fold(layer!);
                    // a streamed block is dropped when its hold ends and re-read from the shards: keep the folded tensors
                    // (norms, scaled linears) so a later hold and the artifact's float tensors see them, not the originals
                    if (stream is not null) KeepFolded(stream, layer!, block, folded);
                }
                let?.Dispose();
                foreach (var m in lwc) m.Dispose();
                foreach (var t in targets) t.Dispose();                              // empty after a propagation (moved into X_fp)
            }
        }

        // The block's parameters that LetBlock.Fold changed in place, handed to the stream as overrides by their HF names.
        private static void KeepFolded(LlamaBlockStream stream, LlamaDecoderLayer layer, int block, IReadOnlyList<(nn.Module Module, string Parameter)> folded)
        {
            foreach (var (name, module) in layer.named_modules())
                foreach (var (m, parameter) in folded)
                    if (ReferenceEquals(m, module))
                        stream.Override(BlockPrefix(block) + "." + name + "." + parameter, module.get_parameter(parameter)
                            ?? throw new InvalidOperationException($"LET folded '{name}.{parameter}', which the layer has no parameter for"));
        }

        // "model.layers.3.mlp.up_proj.clip_max" → that LwcLinear's logits
        private static Tensor State(List<LwcLinear> lwc, LetBlock? let, string name)
        {
            int dot = name.LastIndexOf('.');
            if (let is not null && dot > 0 && name[..dot].EndsWith(".let", StringComparison.Ordinal) && let.Theta(name[(dot + 1)..]) is { } theta)
                return theta;
            var m = dot < 0 ? null : lwc.FirstOrDefault(l => l.GetName() == name[..dot]);
            return (m, dot < 0 ? "" : name[(dot + 1)..]) switch
            {
                ({ } l, "clip_max") => l.ClipMax,
                ({ } l, "clip_min") => l.ClipMin,
                _ => throw new MatqException($"the checkpoint names '{name}', which this block has no clip logits for; run without --resume to start over"),
            };
        }

        private void Train(int block, List<LwcLinear> modules, LetBlock? let, Func<Tensor, Tensor> forward, Func<int, Tensor> target)
        {
            if (omni.Epochs == 0) return;
            var parameters = modules.SelectMany(m => m.Trainable).ToList();
            using var adam = optim.Adam(parameters, omni.Lr, 0.9, 0.999, 1e-8, 0.0);
            using var letAdam = let is null ? null : optim.Adam(let.Trainable, omni.LetLr, 0.9, 0.999, 1e-8, 0.0);
            var rng = new Random(unchecked(seed * 7919 + block));
            var order = Enumerable.Range(0, _fp.Count).ToArray();
            var students = objective.Codistill.Select(p => p.Student).ToHashSet();
            // the epoch's sums stay on the device (float64) and are read once an epoch: a read per step would make the host
            // wait for each step's kernels before it queues the next step's
            var device = modules[0].FloatWeight.device;
            using var tf32 = Tf32Scope.For(device, omni.Tf32);                    // the steps' matmuls only (targets are computed before)
            for (int epoch = 1; epoch <= omni.Epochs; epoch++)
            {
                rng.Shuffle(order);
                using var sums = zeros(_widths.Length + 1, dtype: ScalarType.Float64, device: device);   // per width, then the loss
                foreach (int j in order)
                {
                    cancel.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    Tensor y = target(j).to(ScalarType.Float32);
                    // several widths a step: each weight's master quantization once, sliced per width (LwcLinear.BeginShared)
                    if (_widths.Length > 1) foreach (var m in modules) m.BeginShared();
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
                        sums[k].add_(mse.detach().to(ScalarType.Float64));
                        if (lambda > 0) total = total + mse * lambda;
                    }
                    foreach (var p in objective.Codistill)
                        total = total + F.mse_loss(outs[p.Student], outs[p.Teacher].detach()) * objective.CodistillWeight;
                    total.backward();
                    foreach (var m in modules) m.EndShared();
                    adam.step();
                    adam.zero_grad();
                    letAdam?.step();
                    letAdam?.zero_grad();
                    sums[_widths.Length].add_(total.detach().to(ScalarType.Float64));
                }
                var totals = HostCopy.ToArray<double>(sums);
                var e = new OmniQuantEpoch(block, _blocks, epoch, omni.Epochs, totals[^1] / order.Length, totals[..^1].Select(s => s / order.Length).ToArray());
                epochLog?.Invoke(e);
                progress.Message(block, $"epoch {epoch}/{omni.Epochs}, loss {e.Loss:E3} ("
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

    private static string BlockPrefix(int block) => "model.layers." + block.ToString(System.Globalization.CultureInfo.InvariantCulture);

    // "model.layers.3.mlp.up_proj" → "mlp.up_proj"
    private static string Local(string name) => name[(name.IndexOf('.', "model.layers.".Length) + 1)..];
}
