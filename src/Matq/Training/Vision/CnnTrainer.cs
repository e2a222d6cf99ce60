// Contract: supervised training of a VisionNet on an ImageSet: cross-entropy, SGD(momentum, nesterov) or AdamW,
// warm-up + cosine schedule per step, optional random crop (pad 2) + horizontal flip, a seeded shuffle per epoch (so
// a resume at an epoch boundary is exact), atomic checkpoints after each epoch, test accuracy at the end.
// Hooks let an algorithm act around each optimizer step (EfQAT selection, frozen rows). A net normalized with LBN gets
// its running estimates recomputed as the plain average of the per-sample statistics over (up to 4,096 of) the training
// images, so its inference map depends on neither the batch size nor a momentum: at the start of the last
// FreezeLbnFraction of the steps, after which training uses those fixed estimates (the map folding keeps), or at the
// end when that fraction is 0. (A resume past the freeze point recomputes them at the resumed weights.)
// ClipGradNorm rescales the whole gradient to at most that norm before each step: quantized nets (MaQD) trained at
// SGD lr 0.1 see rare gradient spikes (norm 10–22 against a typical 0.4–3) whose step pushes a norm's β far negative,
// zeroing a whole layer's quantized ReLU and with it every gradient upstream (the run never recovers: loss stays at ln 10).
using Matq.Data;
using Matq.Models.Vision;
using Matq.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Training.Vision;

public sealed record CnnTrainOptions
{
    public int Epochs { get; init; } = 15;
    public int Batch { get; init; } = 128;
    public double Lr { get; init; } = 0.1;
    /// <summary>"sgd" (momentum 0.9, nesterov) or "adamw".</summary>
    public string Optimizer { get; init; } = "sgd";
    public double WeightDecay { get; init; } = 5e-4;
    public bool Augment { get; init; } = true;
    public int WarmupSteps { get; init; } = 100;
    public long Seed { get; init; } = 1234;
    /// <summary>Use only the first N training images (quick runs and tests); null = all.</summary>
    public int? LimitTrain { get; init; }
    /// <summary>LBN nets: the last fraction of the steps trains with the norms frozen at recomputed running estimates.</summary>
    public double FreezeLbnFraction { get; init; } = 0.2;
    /// <summary>Evaluate on only the first N test images (quick runs); null = all 10,000.</summary>
    public int? LimitTest { get; init; }
    /// <summary>Largest global gradient norm per step (the gradient is rescaled above it); null = no clipping.</summary>
    public double? ClipGradNorm { get; init; }

    public void Validate()
    {
        if (Epochs < 1 || Epochs > 1000) throw new MatqException($"epochs = {Epochs} is out of range: allowed 1..1000");
        if (Batch < 1 || Batch > 65536) throw new MatqException($"batch = {Batch} is out of range: allowed 1..65536");
        if (!(Lr > 0) || double.IsInfinity(Lr)) throw new MatqException($"lr = {Lr} is invalid: allowed a positive number");
        if (Optimizer is not ("sgd" or "adamw")) throw new MatqException($"optimizer '{Optimizer}' is not supported: allowed sgd, adamw");
        if (WeightDecay < 0) throw new MatqException($"weight decay = {WeightDecay} is invalid: allowed ≥ 0");
        if (LimitTrain is < 1) throw new MatqException($"limit-train = {LimitTrain} is out of range: allowed ≥ 1 images");
        if (!(FreezeLbnFraction >= 0 && FreezeLbnFraction < 1)) throw new MatqException($"freeze fraction = {FreezeLbnFraction} is out of range: allowed 0 ≤ f < 1 (e.g. 0.2)");
        if (LimitTest is < 1) throw new MatqException($"limit-test = {LimitTest} is out of range: allowed ≥ 1 images");
        if (ClipGradNorm is double c && !(c > 0 && !double.IsInfinity(c))) throw new MatqException($"gradient clip = {c} is invalid: allowed a positive norm (e.g. 2)");
    }
}

public sealed record CnnEpochReport(int Epoch, int Step, int PlannedSteps, double TrainLoss, double Lr, double Seconds);

public sealed record CnnTrainResult(int Steps, double Seconds, double TestAccuracy, List<LossPoint> Losses);

/// <summary>Optional callbacks around each optimizer step (0-based step index).</summary>
public sealed record TrainHooks(Action<int>? BeforeStep = null, Action<int>? AfterStep = null);

public static class CnnTrainer
{
    /// <summary>Trains <paramref name="net"/> (already on <paramref name="device"/>) and returns the test accuracy.
    /// <paramref name="checkpointDir"/>: where checkpoint.safetensors goes (null = none); resume when it holds one.</summary>
    public static CnnTrainResult Train(VisionNet net, ImageSet train, ImageSet test, CnnTrainOptions o, Device device,
        Action<CnnEpochReport>? progress = null, string? checkpointDir = null, TrainHooks? hooks = null,
        Action<int, int, double>? stepProgress = null, CancellationToken cancel = default)
    {
        o.Validate();
        int n = Math.Min(train.Count, o.LimitTrain ?? int.MaxValue);
        int stepsPerEpoch = (n + o.Batch - 1) / o.Batch, total = stepsPerEpoch * o.Epochs;
        var schedule = new LrSchedule(o.Lr, Math.Min(o.WarmupSteps, total), total);
        var parameters = net.parameters().Where(p => p.requires_grad).ToList();
        optim.Optimizer opt = o.Optimizer == "sgd"
            ? optim.SGD(parameters, o.Lr, momentum: 0.9, nesterov: true, weight_decay: o.WeightDecay)
            : optim.AdamW(parameters, o.Lr, weight_decay: o.WeightDecay);
        var masters = VisionNetIO.FloatState(net);
        string? ckpt = checkpointDir is null ? null : Path.Combine(checkpointDir, TrainCheckpoint.FileName);
        string runKey = $"{net.Config.ToJson().ReplaceLineEndings("")}|{o with { Epochs = 0 }}";
        var state = new TrainState { PlannedSteps = total, Seed = o.Seed, RunKey = runKey };
        if (ckpt is not null && File.Exists(ckpt))
        {
            var stored = TrainCheckpoint.ReadState(ckpt);
            if (stored.RunKey == runKey && stored.PlannedSteps == total) state = TrainCheckpoint.Load(ckpt, masters, opt);
        }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int step = state.Step;
        bool lbnNet = net.Norms().Count > 0 && net.Norms().All(m => m is LayerBatchNorm);
        // the estimates are recomputed below (RecalibrateLbn), so per-step updates would be wasted kernels
        if (lbnNet) foreach (var m in net.Norms().Cast<LayerBatchNorm>()) m.TrackRunningStats = false;
        int freezeAt = lbnNet && o.FreezeLbnFraction > 0 ? (int)Math.Round(total * (1 - o.FreezeLbnFraction)) : int.MaxValue;
        bool frozen = false;
        var losses = state.Train;
        for (int epoch = step / stepsPerEpoch; epoch < o.Epochs && !cancel.IsCancellationRequested; epoch++)
        {
            net.train();
            var rng = new Random(unchecked((int)(o.Seed * 1000003 + epoch)));
            int[] order = Enumerable.Range(0, n).ToArray();
            rng.Shuffle(order);
            double sumLoss = 0; int count = 0;
            for (int b = 0; b < stepsPerEpoch && !cancel.IsCancellationRequested; b++, step++)
            {
                if (step >= freezeAt && !frozen)
                {
                    RecalibrateLbn(net, train, Math.Min(n, RecalibrationImages), device);
                    foreach (var m in net.Norms().Cast<LayerBatchNorm>()) m.Frozen = true;
                    frozen = true;
                }
                using var scope = NewDisposeScope();
                int start = b * o.Batch, len = Math.Min(o.Batch, n - start);
                (Tensor x, Tensor y) = Batch(train, order.AsSpan(start, len), o.Augment ? rng : null, device);
                double lr = schedule.At(step);
                foreach (var g in opt.ParamGroups) g.LearningRate = lr;
                hooks?.BeforeStep?.Invoke(step);
                opt.ClearGradients();
                Tensor loss = nn.functional.cross_entropy(net.forward(x), y);
                loss.backward();
                if (o.ClipGradNorm is double clip) nn.utils.clip_grad_norm_(parameters, clip);   // one native call (libtorch loops the grads)
                opt.step();
                hooks?.AfterStep?.Invoke(step);
                // Some native tensors of a step are released only by the GC finalizer (TorchSharp wrappers the dispose
                // scope does not own: seen as RSS growing ~50 MB/step for a MaQD ResNet at batch 128 on CPU, and as CUDA
                // memory growth before). The managed heap is tiny, so a collection every few steps costs ~1 ms.
                if ((step + 1) % GcEverySteps == 0) { GC.Collect(); GC.WaitForPendingFinalizers(); }
                if (b % 50 == 0 || b == stepsPerEpoch - 1)
                {
                    double l = loss.item<float>();
                    sumLoss += l; count++;
                    losses.Add(new LossPoint(step, l, lr));
                    stepProgress?.Invoke(step + 1, total, l);
                }
            }
            progress?.Invoke(new CnnEpochReport(epoch + 1, step, total, count == 0 ? double.NaN : sumLoss / count, schedule.At(Math.Max(0, step - 1)), sw.Elapsed.TotalSeconds));
            if (ckpt is not null)
                TrainCheckpoint.Save(ckpt, masters, opt, state with { Step = step, ElapsedSeconds = state.ElapsedSeconds + sw.Elapsed.TotalSeconds, Train = losses });
        }
        if (!cancel.IsCancellationRequested && !frozen) RecalibrateLbn(net, train, Math.Min(n, RecalibrationImages), device);
        if (lbnNet) foreach (var m in net.Norms().Cast<LayerBatchNorm>()) m.TrackRunningStats = true;
        double seconds = sw.Elapsed.TotalSeconds;
        double acc = Accuracy(net, test, device, o.LimitTest);
        return new CnnTrainResult(step, seconds, acc, losses);
    }

    public const int RecalibrationImages = 4096;
    /// <summary>Steps between forced garbage collections in the training loop (see the comment there).</summary>
    public const int GcEverySteps = 10;

    /// <summary>When every norm of the net is an LBN: resets the running estimates and sets them to the cumulative average
    /// of the per-sample statistics over the first <paramref name="images"/> images of <paramref name="set"/> (no
    /// augmentation, no gradients; weights unchanged; the norms are unfrozen). Returns false (and does nothing) for other nets.</summary>
    public static bool RecalibrateLbn(VisionNet net, ImageSet set, int images, Device device)
    {
        var norms = net.Norms();
        if (norms.Count == 0 || norms.Any(m => m is not LayerBatchNorm || m.Folded)) return false;
        var lbns = norms.Cast<LayerBatchNorm>().ToList();
        var saved = lbns.Select(m => (m.Momentum, m.TrackRunningStats)).ToList();
        foreach (var m in lbns) { m.ResetRunningStats(); m.Momentum = null; m.Frozen = false; m.TrackRunningStats = true; }
        net.train();
        using (no_grad())
        {
            int n = Math.Min(images, set.Count);
            int[] idx = Enumerable.Range(0, n).ToArray();
            for (int start = 0; start < n; start += 256)
            {
                using var scope = NewDisposeScope();
                (Tensor x, _) = Batch(set, idx.AsSpan(start, Math.Min(256, n - start)), null, device);
                net.forward(x);
            }
        }
        for (int i = 0; i < lbns.Count; i++) (lbns[i].Momentum, lbns[i].TrackRunningStats) = saved[i];
        return true;
    }

    /// <summary>Top-1 accuracy in eval mode (BN running statistics), batches of 1000.</summary>
    public static double Accuracy(VisionNet net, ImageSet set, Device device, int? limit = null)
    {
        net.eval();
        using var noGrad = no_grad();
        int n = Math.Min(set.Count, limit ?? int.MaxValue), correct = 0;
        int[] idx = Enumerable.Range(0, n).ToArray();
        for (int start = 0; start < n; start += 1000)
        {
            using var scope = NewDisposeScope();
            int len = Math.Min(1000, n - start);
            (Tensor x, Tensor y) = Batch(set, idx.AsSpan(start, len), null, device);
            correct += (int)net.forward(x).argmax(1).eq(y).sum().item<long>();
        }
        net.train();
        return (double)correct / n;
    }

    /// <summary>Images [B, 1, 28, 28] float and labels [B] int64 on <paramref name="device"/>; with <paramref name="augment"/>,
    /// each image is shifted by a random (dy, dx) ∈ [−2, 2]² (zero fill, = pad-2 random crop) and flipped left-right with p ½.</summary>
    public static (Tensor X, Tensor Y) Batch(ImageSet set, ReadOnlySpan<int> indices, Random? augment, Device device)
    {
        int side = set.Rows, pix = side * set.Cols, b = indices.Length;
        var x = new float[b * pix];
        var y = new long[b];
        for (int i = 0; i < b; i++)
        {
            int src = indices[i] * pix;
            y[i] = set.Labels[indices[i]];
            if (augment is null) { Array.Copy(set.Images, src, x, i * pix, pix); continue; }
            int dy = augment.Next(-2, 3), dx = augment.Next(-2, 3);
            bool flip = augment.Next(2) == 1;
            for (int r = 0; r < side; r++)
            {
                int sr = r + dy;
                if (sr < 0 || sr >= side) continue;
                for (int c = 0; c < set.Cols; c++)
                {
                    int sc = (flip ? set.Cols - 1 - c : c) + dx;
                    if (sc >= 0 && sc < set.Cols) x[i * pix + r * set.Cols + c] = set.Images[src + sr * set.Cols + sc];
                }
            }
        }
        return (tensor(x, new long[] { b, 1, side, set.Cols }).to(device), tensor(y).to(device));
    }
}
