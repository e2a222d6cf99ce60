// Contract: MatQuant's QAT base: swaps every selected linear for a NestedQuantLinear, trains latent weights, log-scales
// and zero points end to end on calibration windows with AdamW (warm-up + cosine, global-norm clipping, atomic
// checkpoints with exact resume), then swaps the originals back and returns the master codes.
//
// Loss per step on ids [B, T+1] (inputs x = ids[:, :T], targets y = ids[:, 1:]), ℓ_r = logits of the model sliced to r:
//   L = Σ_{r∈R} λ_r · CE(ℓ_r, y)                                        the nested objective
//     + distill · Σ_{r∈R} λ_r · KL(softmax ℓ_float ‖ softmax ℓ_r)          optional, teacher = the frozen float model
//     + w_cd · Σ_{(a→b)} KL(softmax ℓ_a.detach() ‖ softmax ℓ_b)           co-distillation (teacher slice detached)
// KL and CE are token means in fp32. Gradients reach W, α, z through every slice (NestedQuantLinear's STE); with
// grid = minmax α, z are the min-max of the current W at every step and only W trains. Only the quantized linears
// train; embeddings, norms and an unselected head stay as they are.
using System.Diagnostics;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.MatQuant;

/// <summary>Optional additions to the QAT loop (EfQAT uses them): a module factory (default: min-max parameters from the
/// float weight), extra parameters trained with the scale learning rate (e.g. RMSNorm weights), a callback with the
/// modules once they are in the model, hooks around each optimizer step, and text that joins the checkpoint's run key.</summary>
public sealed record QatExtras(
    Func<SelectedLinear, NestedQuantLinear>? Create = null,
    IReadOnlyList<Parameter>? AlsoTrain = null,
    Action<IReadOnlyList<NestedQuantLinear>>? Attached = null,
    Action<int>? BeforeStep = null,
    Action? AfterStep = null,
    string RunKey = "");

/// <summary>Loss of one logged step: total and the per-width CE terms (in R's order).</summary>
public sealed record MatQuantStep(int Step, double Loss, IReadOnlyList<double> SliceCe);

public static class MatQuantQat
{
    /// <summary>Trains <paramref name="selected"/> of <paramref name="model"/>; returns the trained modules in selection order
    /// (the caller exports and disposes them). The model's module tree is restored before returning (also on failure).</summary>
    public static IReadOnlyList<(string Name, NestedQuantLinear Module)> Train(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected,
        QuantizationConfig quant, MatQuantConfig config, CalibrationTokens data, Device device, int seed,
        Action<MatQuantStep>? log = null, CancellationToken cancel = default, QatExtras? extras = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (data.Length < 2) throw new MatqException("matquant qat needs windows of at least 2 tokens (--calib-len)");
        extras ??= new QatExtras();
        var modules = selected.Select(s => (s.Name, Module: extras.Create?.Invoke(s) ?? new NestedQuantLinear(s.Name, s.Weight, quant.Spec))).ToList();
        foreach (var (_, m) in modules)
        {
            m.to(device);
            m.ExtraPrecision = config.ExtraPrecision;
            m.Grid = config.Grid;
            if (config.Grid == QatGrid.MinMax) { m.LogScale.requires_grad = false; m.Zero.requires_grad = false; }   // no learned grid
        }
        var originals = selected.Select(s => (s.Name, s.Module)).ToList();
        var also = extras.AlsoTrain ?? [];
        var frozen = model.parameters().Where(p => p.requires_grad).ToList();
        try
        {
            foreach (var p in frozen) p.requires_grad = false;
            foreach (var p in also) p.requires_grad = true;
            foreach (var (name, m) in modules) model.ReplaceLinear(name, m);
            extras.Attached?.Invoke(modules.Select(m => m.Module).ToList());
            Loop(model, modules.Select(m => m.Module).ToList(), config, data, device, seed, log, cancel, extras);
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

    private static void Loop(LlamaForCausalLM model, List<NestedQuantLinear> modules, MatQuantConfig config, CalibrationTokens data,
        Device device, int seed, Action<MatQuantStep>? log, CancellationToken cancel, QatExtras extras)
    {
        var weights = modules.Select(m => (Tensor)m.Weight).ToList();
        var also = extras.AlsoTrain ?? [];
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
        string runKey = $"matquant;bits={string.Join(",", config.Bits)};lambda={string.Join(",", config.Lambda)};steps={config.Steps};batch={config.Batch};" +
                        $"lr={config.Lr:R};slr={config.ScaleLr:R};cd={string.Join(",", config.Codistill)};distill={config.Distill:R};extra={config.ExtraPrecision};seed={seed};n={data.Count}x{data.Length}" +
                        (config.Grid == QatGrid.Learned ? "" : $";grid={config.Grid.ToString().ToLowerInvariant()}") + extras.RunKey;
        int start = 0;
        if (config.Checkpoint is { } ckpt && File.Exists(ckpt))
        {
            var stored = TrainCheckpoint.ReadState(ckpt);
            if (stored.RunKey != runKey)
                throw new MatqException($"{ckpt} was written by a different matquant run; use the same settings or another checkpoint path");
            start = TrainCheckpoint.Load(ckpt, named, optimizer).Step;
        }
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
            var ids = Batch(data, order, step, config.Batch, device);                            // [B, T+1]
            long t = ids.shape[1] - 1;
            var x = ids.narrow(1, 0, t);
            var y = ids.narrow(1, 1, t).flatten();                                              // [B·T]
            extras.BeforeStep?.Invoke(step);
            var (loss, ce) = Loss(model, modules, config, x, y);
            loss.backward();
            GradClip.ClipGlobalNorm(all, config.ClipNorm);
            optimizer.step();
            extras.AfterStep?.Invoke();
            optimizer.ClearGradients();
            if (log is not null && ((step + 1) % 10 == 0 || step + 1 == config.Steps))
                log(new MatQuantStep(step + 1, loss.item<float>(), ce.Select(c => (double)c.item<float>()).ToArray()));
            if (config.Checkpoint is { } path && (step + 1) % config.CheckpointEvery == 0 && step + 1 < config.Steps)
                TrainCheckpoint.Save(path, named, optimizer, new TrainState { Step = step + 1, PlannedSteps = config.Steps, Seed = seed, RunKey = runKey,
                    ElapsedSeconds = sw.Elapsed.TotalSeconds });
        }
        if (config.Checkpoint is { } final)
            TrainCheckpoint.Save(final, named, optimizer, new TrainState { Step = config.Steps, PlannedSteps = config.Steps, Seed = seed, RunKey = runKey,
                ElapsedSeconds = sw.Elapsed.TotalSeconds });
        model.eval();
    }

    /// <summary>The header's L for inputs x [B, T] and flat targets y [B·T]; also each width's CE (detached, R's order).</summary>
    public static (Tensor Loss, Tensor[] SliceCe) Loss(LlamaForCausalLM model, IReadOnlyList<NestedQuantLinear> modules, MatQuantConfig config, Tensor x, Tensor y)
    {
        Tensor? teacher = null;
        if (config.Distill > 0)
        {
            using var noGrad = no_grad();
            SetBits(modules, 0);
            teacher = F.log_softmax(model.call(x).flatten(0, 1), 1);                        // [B·T, V] float model
        }
        var logp = new Dictionary<int, Tensor>();
        var ce = new Tensor[config.Bits.Count];
        Tensor total = zeros(Array.Empty<long>(), device: x.device);
        for (int i = 0; i < config.Bits.Count; i++)
        {
            int r = config.Bits[i];
            bool needed = config.Lambda[i] > 0 || config.Codistill.Any(p => p.Teacher == r || p.Student == r);
            if (!needed) { ce[i] = zeros(Array.Empty<long>()); continue; }
            SetBits(modules, r);
            var lp = F.log_softmax(model.call(x).flatten(0, 1), 1);                         // [B·T, V]
            logp[r] = lp;
            var c = F.nll_loss(lp, y);
            ce[i] = c.detach();
            if (config.Lambda[i] > 0)
            {
                total = total + c * config.Lambda[i];
                if (teacher is not null) total = total + Kl(teacher, lp) * (config.Distill * config.Lambda[i]);
            }
        }
        foreach (var p in config.Codistill)
            total = total + Kl(logp[p.Teacher].detach(), logp[p.Student]) * config.CodistillWeight;
        SetBits(modules, modules.Count > 0 ? modules[0].MasterBits : 0);
        return (total, ce);
    }

    /// <summary>The trained modules' master codes as results (MSE against the selected float weights), reported per layer;
    /// disposes the modules. <paramref name="seconds"/> = the training time, spread evenly over the layers' reports.</summary>
    public static IReadOnlyList<QuantizedLinearResult> Export(IReadOnlyList<(string Name, NestedQuantLinear Module)> trained,
        IReadOnlyList<SelectedLinear> selected, QuantizationConfig config, QuantizationContext context, double seconds = 0)
    {
        int blocks = context.Model.Config.NumLayers + (selected.Any(s => s.Name == "lm_head") ? 1 : 0);
        var results = new List<QuantizedLinearResult>();
        try
        {
            foreach (var (name, module) in trained)
            {
                using var scope = NewDisposeScope();
                var (codes, scales, zeros) = module.Export();
                var w = selected.First(s => s.Name == name).Weight.detach().to(ScalarType.Float32, codes.device);
                var deq = Matq.Quantization.TensorAffineQuantizer.Dequantize(codes, scales, zeros, module.GroupSize);
                double mse = (w - deq).square().mean().item<float>();
                int cols = checked((int)codes.shape[1]);
                var report = new LayerReport(name, checked((int)codes.shape[0]), cols, config.Bits, mse, null, null, seconds / trained.Count);
                results.Add(QuantizedLinearResult.FromTensors(name, codes, scales, zeros, config.StoredGroupSize(cols), null, report));
                context.Report(new QuantizationEvent(QuantizationEventKind.LayerDone, name == "lm_head" ? blocks - 1 : LinearSelection.BlockOf(name),
                    blocks, results.Count, selected.Count, report));
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

    // KL(p ‖ q) per token, mean over tokens, from log-probabilities [N, V].
    private static Tensor Kl(Tensor logP, Tensor logQ) => logP.exp().mul(logP - logQ).sum(dim: 1L).mean();

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
