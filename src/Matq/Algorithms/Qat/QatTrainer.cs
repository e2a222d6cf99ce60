// Contract: the one LM QAT loop. Swaps every selected linear for a NestedQuantLinear (the objective's factory), trains
// latent weights, log-scales and zero points (plus the objective's extra parameters) end to end on calibration windows
// with AdamW (warm-up + cosine, global-norm clipping, atomic checkpoints with exact resume) on the objective's loss,
// then swaps the originals back and returns the trained modules; Export turns them into master-code results.
//
// Per step s on ids [B, T+1] (windows order[(s·B + i) mod N] of a seeded permutation): x = ids[:, :T], y = ids[:, 1:];
//   BeforeStep(s); L = objective.Loss(x, y); L.backward(); clip ‖∇‖ ≤ clip; AdamW step; AfterStep()
// Data-parallel (a group of W ranks): every rank builds the same [B, T+1] batch and trains on its B/W rows; the
// gradients are averaged over ranks (bucketed) before the clip and the step, so the ranks stay identical; rank 0 writes
// the checkpoints. The start point is broadcast from rank 0.
// Two AdamW groups (β = 0.9, 0.95, no weight decay): weights at lr·m(s), scales/zeros/extras at scale-lr·m(s), where m is
// the warm-up + cosine multiplier (to 10%). With grid = minmax α, z are the min-max of the current W at every step and
// only W trains. Only the quantized linears (and the objective's extras) train; everything else is frozen meanwhile.
using Matq.Runtime;
using System.Diagnostics;
using Matq.Algorithms.MatQuant;
using Matq.Distributed;
using Matq.Kernels.Quantization;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.Qat;

public static class QatTrainer
{
    /// <summary>The whole QAT method on a run: trains the context's selected linears under <paramref name="objective"/>,
    /// reporting each logged step as a progress message, and exports the trained codes (one result per linear, model order).</summary>
    public static IReadOnlyList<QuantizedLinearResult> Run(QuantizationContext context, QuantizationConfig quant, QatConfig config,
        QatObjective objective, string method, Action<QatStep>? log = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(quant);
        var data = context.RequireCalibration(method);
        var progress = context.Progress;
        progress.Started();
        var sw = Stopwatch.StartNew();
        var trained = Train(context.Model, context.Selected, quant.Spec, config, objective, data, context.Device, context.Seed, s =>
        {
            log?.Invoke(s);
            progress.Message(0, $"{objective.Label} step {s.Step}/{config.Steps}, loss {s.Loss:F4}");
        }, context.Cancellation, context.Group);
        return Export(trained, context, quant, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Trains <paramref name="selected"/> of <paramref name="model"/>; returns the trained modules in selection order
    /// (the caller exports and disposes them). The model's module tree is restored before returning (also on failure).</summary>
    public static IReadOnlyList<(string Name, NestedQuantLinear Module)> Train(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected,
        QuantSpec spec, QatConfig config, QatObjective objective, CalibrationTokens data, Device device, int seed,
        Action<QatStep>? log = null, CancellationToken cancel = default, ProcessGroup? group = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        group ??= new SingleProcessGroup();
        if (config.Batch % group.WorldSize != 0)
            throw new MatqException($"{objective.Label}: batch {config.Batch} does not split over {group.WorldSize} ranks: give a batch that is a multiple of the rank count");
        ArgumentNullException.ThrowIfNull(selected);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(data);
        if (data.Length < 2) throw new MatqException($"{objective.Label} needs windows of at least 2 tokens (--calib-len)");
        var modules = selected.Select(s => (s.Name, Module: objective.Create(s, spec))).ToList();
        foreach (var (_, m) in modules)
        {
            m.to(device);
            m.ExtraPrecision = objective.ExtraPrecision;
            m.Grid = config.Grid;
            if (config.Grid == QatGrid.MinMax) { m.LogScale.requires_grad = false; m.Zero.requires_grad = false; }   // no learned grid
        }
        var originals = selected.Select(s => (s.Name, s.Module)).ToList();
        var also = objective.AlsoTrain;
        var frozen = model.parameters().Where(p => p.requires_grad).ToList();
        try
        {
            foreach (var p in frozen) p.requires_grad = false;
            foreach (var p in also) p.requires_grad = true;
            foreach (var (name, m) in modules) model.ReplaceLinear(name, m);
            objective.Attached(modules.Select(m => m.Module).ToList());
            Loop(model, modules.Select(m => m.Module).ToList(), config, objective, data, device, seed, log, cancel, group);
            objective.Finished();
            return modules;
        }
        catch
        {
            foreach (var (_, m) in modules) m.Dispose();
            throw;
        }
        finally
        {
            foreach (var (name, module) in originals) model.ReplaceLinear(name, module);
            foreach (var p in frozen) p.requires_grad = true;
        }
    }

    private static void Loop(LlamaForCausalLM model, List<NestedQuantLinear> modules, QatConfig config, QatObjective objective, CalibrationTokens data,
        Device device, int seed, Action<QatStep>? log, CancellationToken cancel, ProcessGroup group)
    {
        var weights = modules.Select(m => (Tensor)m.Weight).ToList();
        var also = objective.AlsoTrain;
        var quantParams = modules.SelectMany(m => new Tensor[] { m.LogScale, m.Zero }).Concat(also).ToList();
        var all = weights.Concat(quantParams).ToList();
        var named = modules.SelectMany((m, i) => new (string, Tensor)[] { ($"{i}.w", m.Weight), ($"{i}.s", m.LogScale), ($"{i}.z", m.Zero) })
            .Concat(also.Select((p, i) => ($"extra{i}", (Tensor)p))).ToList();
        var groups = new List<AdamW.ParamGroup>
        {
            new(weights.Select(t => (Parameter)t), config.Lr, 0.9, 0.95, 1e-8, 0.0, false, false),
            new(quantParams.Select(t => (Parameter)t), config.ScaleLr, 0.9, 0.95, 1e-8, 0.0, false, false),
        };
        using var optimizer = optim.AdamW(groups, config.Lr);
        var schedule = new LrSchedule(1.0, config.Warmup, config.Steps, 0.1);   // multiplier of each group's peak
        string runKey = objective.RunKey(config, seed, data);
        int start = 0;
        if (config.Checkpoint is { } ckpt && File.Exists(ckpt))
        {
            var stored = TrainCheckpoint.ReadState(ckpt);
            if (stored.RunKey != runKey)
                throw new MatqException($"{ckpt} was written by a different {objective.Label} run; use the same settings or another checkpoint path");
            start = TrainCheckpoint.Load(ckpt, named, optimizer).Step;
        }
        using (no_grad())
            foreach (var p in all) group.Broadcast(p.detach());   // one start point on every rank
        int rows = config.Batch / group.WorldSize;
        int[] order = Shuffle(data.Count, seed);
        model.train();
        var sw = Stopwatch.StartNew();
        for (int step = start; step < config.Steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            double mult = schedule.At(step);
            optimizer.ParamGroups.ElementAt(0).LearningRate = config.Lr * mult;
            optimizer.ParamGroups.ElementAt(1).LearningRate = config.ScaleLr * mult;
            var ids = Batch(data, order, step, config.Batch, device);                            // [B, T+1], alike on every rank
            if (group.WorldSize > 1) ids = ids.narrow(0, group.Rank * rows, rows);               // this rank's [B/W, T+1]
            long t = ids.shape[1] - 1;
            var x = ids.narrow(1, 0, t);
            var y = ids.narrow(1, 1, t).flatten();                                              // [B·T]
            objective.BeforeStep(step);
            var (loss, terms) = objective.Loss(model, modules, x, y);
            loss.backward();
            if (group.WorldSize > 1) GradientBuckets.AllReduceMean(group, all.Select(p => p.grad).OfType<Tensor>().ToList());
            GradClip.ClipGlobalNorm(all, config.ClipNorm);
            optimizer.step();
            objective.AfterStep();
            optimizer.ClearGradients();
            if (log is not null && ((step + 1) % 10 == 0 || step + 1 == config.Steps))
            {
                var shown = stack(terms.Prepend(loss).Select(c => c.detach().to_type(ScalarType.Float32).reshape(1)).ToList()).flatten();
                group.AllReduceMean(shown);                                                      // the global batch's means
                var v = shown.cpu().data<float>().ToArray();
                log(new QatStep(step + 1, v[0], v.Skip(1).Select(x => (double)x).ToArray()));
            }
            if (group.IsRoot && config.Checkpoint is { } path && (step + 1) % config.CheckpointEvery == 0 && step + 1 < config.Steps)
                TrainCheckpoint.Save(path, named, optimizer, new TrainState { Step = step + 1, PlannedSteps = config.Steps, Seed = seed, RunKey = runKey,
                    ElapsedSeconds = sw.Elapsed.TotalSeconds });
        }
        if (group.IsRoot && config.Checkpoint is { } final)
            TrainCheckpoint.Save(final, named, optimizer, new TrainState { Step = config.Steps, PlannedSteps = config.Steps, Seed = seed, RunKey = runKey,
                ElapsedSeconds = sw.Elapsed.TotalSeconds });
        model.eval();
    }

    /// <summary>The trained modules' master codes as results (MSE against the context's selected float weights), each
    /// reported as a finished layer; disposes the modules. <paramref name="seconds"/> = the training time, spread evenly.</summary>
    public static IReadOnlyList<QuantizedLinearResult> Export(IReadOnlyList<(string Name, NestedQuantLinear Module)> trained,
        QuantizationContext context, QuantizationConfig config, double seconds = 0)
    {
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentNullException.ThrowIfNull(context);
        var selected = context.Selected.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var results = new List<QuantizedLinearResult>();
        try
        {
            foreach (var (name, module) in trained)
            {
                using var scope = NewDisposeScope();
                var (codes, scales, zeros) = module.Export();
                var linear = selected[name];
                var w = linear.Weight.detach().to(ScalarType.Float32, codes.device);
                var deq = Matq.Quantization.TensorAffineQuantizer.Dequantize(codes, scales, zeros, module.GroupSize);
                double mse = (w - deq).Squared().mean().item<float>();
                int cols = checked((int)codes.shape[1]);
                var report = new LayerReport(name, checked((int)codes.shape[0]), cols, config.Bits, mse, null, null, seconds / trained.Count);
                results.Add(QuantizedLinearResult.FromTensors(name, codes, scales, zeros, config.StoredGroupSize(cols), null, report));
                context.Progress.LayerDone(linear.Block, report);
            }
        }
        finally
        {
            foreach (var (_, m) in trained) m.Dispose();
        }
        return results;
    }

    public static void SetBits(IEnumerable<NestedQuantLinear> modules, int bits)
    {
        foreach (var m in modules) m.Bits = bits;
    }

    // rows of step s: windows order[(s·B + i) mod N] (a seeded permutation; epochs wrap around)
    private static Tensor Batch(CalibrationTokens data, int[] order, int step, int batch, Device device)
    {
        var flat = new long[(long)batch * data.Length];
        for (int i = 0; i < batch; i++)
        {
            var w = data.Windows[order[(int)(((long)step * batch + i) % order.Length)]];
            for (int j = 0; j < data.Length; j++) flat[(long)i * data.Length + j] = w[j];
        }
        return tensor(flat, new long[] { batch, data.Length }, dtype: ScalarType.Int64, device: device);
    }

    private static int[] Shuffle(int n, int seed)
    {
        var rng = new Random(seed);
        var order = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(order);
        return order;
    }
}
