// Next-token training of any ids [B,T] int64 → logits [B,T,V] module: AdamW on fp32 masters, warm-up + cosine
// schedule, global-norm clipping, periodic validation, atomic checkpoints, exact resume, optional time budget.
using System.Diagnostics;
using TorchSharp;
using Matq.Distributed;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Training;

/// <summary>What the progress display shows; ValidationLoss is set on evaluation steps only.</summary>
public sealed record TrainProgress(int Step, int PlannedSteps, double TrainLoss, double? ValidationLoss, double Lr,
    double TokensPerSecond, TimeSpan Elapsed, string? Note = null);

public sealed record TrainResult(TrainState State, double MsPerStep, double TokensPerSecond, int MeasuredSteps,
    bool StoppedByBudget, bool Cancelled);

public sealed class LmTrainer : IDisposable
{
    private readonly nn.Module<Tensor, Tensor> _model;
    private readonly Device _device;
    private readonly TrainOptions _o;
    private readonly MasterWeights _masters;
    private readonly AdamW _optimizer;
    private readonly string _runKey;
    private readonly ProcessGroup _group;

    /// <summary>Moves <paramref name="model"/> (fp32, freshly seeded) to the device and narrows it to the compute dtype.
    /// With a <paramref name="group"/> of several ranks the training is data-parallel: every rank builds the same global
    /// batch of each step and trains on its 1/world of the rows, the gradients are averaged over ranks (bucketed) before
    /// the clip and the step, so the ranks stay identical and the run follows the one-process run with the same batch
    /// (up to the order of the gradient sums); rank 0 alone validates and writes checkpoints.</summary>
    public LmTrainer(nn.Module<Tensor, Tensor> model, Device device, TrainOptions options, string modelKey, ProcessGroup? group = null)
    {
        options.Validate();
        _group = group ?? new SingleProcessGroup();
        if (options.BatchSize % _group.WorldSize != 0)
            throw new MatqException($"batch {options.BatchSize} does not split over {_group.WorldSize} ranks: give a --batch that is a multiple of the rank count");
        if (_group.WorldSize > 1 && options.MaxMinutes is not null)
            throw new MatqException("--max-minutes with several ranks is not implemented: the ranks would have to agree on the shortened schedule; give --steps instead");
        _model = model;
        _device = device;
        _o = options;
        _runKey = options.RunKey(modelKey);
        _model.to(device);
        _masters = new MasterWeights(_model, options.ComputeDtype);
        // Decay matrices only: norms' gains (and any biases) are 1-D and are left undecayed, as is usual.
        var groups = new List<AdamW.ParamGroup>
        {
            new(_masters.Decayed, options.Lr, options.Beta1, options.Beta2, options.Eps, options.WeightDecay, false, false),
        };
        if (_masters.Undecayed.Count > 0)
            groups.Add(new(_masters.Undecayed, options.Lr, options.Beta1, options.Beta2, options.Eps, 0.0, false, false));
        _optimizer = optim.AdamW(groups, options.Lr, options.Beta1, options.Beta2, options.Eps, options.WeightDecay);
    }

    public IReadOnlyList<(string Name, Tensor Master)> Masters => _masters.Masters;

    /// <summary>Resumes from <paramref name="checkpointPath"/> (when <paramref name="resume"/>) and trains to the planned step.</summary>
    public TrainResult Run(int[] trainTokens, int[] validationTokens, string? checkpointPath, bool resume,
        Action<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var state = new TrainState { PlannedSteps = _o.Steps, Seed = _o.Seed, RunKey = _runKey };
        if (resume)
        {
            if (checkpointPath is null) throw new ArgumentException("resume needs a checkpoint path");
            var stored = TrainCheckpoint.ReadState(checkpointPath);
            CheckRunKey(stored.RunKey, checkpointPath);
            state = TrainCheckpoint.Load(checkpointPath, _masters.Masters, _optimizer);
            _masters.MastersToModel();
        }
        else if (checkpointPath is not null && File.Exists(checkpointPath))
        {
            var stored = TrainCheckpoint.ReadState(checkpointPath);
            if (stored.Step < stored.PlannedSteps)
                throw new MatqException($"{checkpointPath} holds an unfinished run at step {stored.Step}/{stored.PlannedSteps}: pass --resume to continue it, or use another --out");
        }
        _masters.BroadcastMasters(_group);   // one start point on every rank (seeded alike, or one checkpoint: a safeguard)
        bool root = _group.IsRoot;
        int rows = _o.BatchSize / _group.WorldSize;

        using var batcher = new TokenBatcher(trainTokens, _o.BatchSize, _o.ContextLength, _o.Seed, _device);
        var schedule = _o.Schedule(state.PlannedSteps);
        long tokensPerStep = (long)_o.BatchSize * _o.ContextLength;
        var wall = Stopwatch.StartNew();          // this segment, everything included
        var trainClock = new Stopwatch();         // this segment, training steps after warm-up only
        int measured = 0, segmentStart = state.Step;
        bool budgetPlanned = false, stoppedByBudget = false, cancelled = false;
        double lastTrain = double.NaN, evalSeconds = 0;
        double budgetSeconds = (_o.MaxMinutes ?? 0) * 60;
        using var lossSum = zeros(1, dtype: ScalarType.Float32, device: _device);
        int lossCount = 0;

        void Report(int step, double? val, string? note = null) => progress?.Invoke(new TrainProgress(step, state.PlannedSteps, lastTrain, val,
            schedule.At(Math.Min(step, state.PlannedSteps - 1)), measured > 0 ? measured * tokensPerStep / trainClock.Elapsed.TotalSeconds : 0,
            TimeSpan.FromSeconds(state.ElapsedSeconds + wall.Elapsed.TotalSeconds), note));

        void Validate(int step)
        {
            var t = Stopwatch.StartNew();
            double v = ValidationLoss(validationTokens);
            evalSeconds = t.Elapsed.TotalSeconds;
            state.Validation.RemoveAll(p => p.Step == step);
            state.Validation.Add(new LossPoint(step, v));
            Report(step, v);
        }

        void PauseClock()
        {
            if (!trainClock.IsRunning) return;
            Sync();
            trainClock.Stop();
        }

        TrainState Snapshot() => state with
        {
            ElapsedSeconds = state.ElapsedSeconds + wall.Elapsed.TotalSeconds,
            TokensSeen = state.Step * tokensPerStep,
        };

        if (root && state.Step == 0 && validationTokens.Length > _o.ContextLength + 1) Validate(0);
        _model.train();
        while (state.Step < state.PlannedSteps)
        {
            if (cancel.IsCancellationRequested) { cancelled = true; break; }
            if (budgetSeconds > 0 && state.ElapsedSeconds + wall.Elapsed.TotalSeconds >= budgetSeconds) { stoppedByBudget = true; break; }
            int step = state.Step;
            bool timed = step - segmentStart >= _o.ThroughputWarmup;
            // The clock runs across consecutive steps without syncing (the host queues ahead of the GPU, as in
            // PyTorch); it is paused, after a device sync, only around validation and checkpoints.
            if (timed && !trainClock.IsRunning) trainClock.Start();
            double lr = schedule.At(step);
            using (var scope = NewDisposeScope())
            {
                foreach (var g in _optimizer.ParamGroups) g.LearningRate = lr;
                var batch = batcher.Batch(step);                                  // [B, T+1], the same on every rank
                if (_group.WorldSize > 1) batch = batch.narrow(0, _group.Rank * rows, rows);   // this rank's rows [B/W, T+1]
                var input = batch.narrow(1, 0, _o.ContextLength);                 // [B, T]
                var target = batch.narrow(1, 1, _o.ContextLength);                // [B, T]
                var logits = _model.call(input);                                  // [B, T, V]
                // CE in fp32: bf16 log-softmax over a large vocabulary loses the small probabilities' precision.
                var loss = nn.functional.cross_entropy(logits.flatten(0, 1).to_type(ScalarType.Float32), target.flatten());
                loss.backward();
                _masters.GradsToMasters();
                _masters.AverageGrads(_group);
                GradClip.ClipGlobalNorm(_masters.OptimizerParameters, _o.ClipNorm);
                _optimizer.step();
                _optimizer.zero_grad();
                _masters.MastersToModel();
                lossSum.add_(loss.detach());
                lossCount++;
            }
            state = state with { Step = step + 1 };
            bool log = state.Step % _o.LogEvery == 0 || state.Step == state.PlannedSteps;
            if (log)
            {
                // .item() syncs the device, so the clock below is honest for asynchronous GPUs.
                _group.AllReduceMean(lossSum);   // every rank's mean over its rows → the global batch's mean
                lastTrain = lossSum.item<float>() / lossCount;
                state.Train.Add(new LossPoint(state.Step, lastTrain, lr));
                lossSum.zero_();
                lossCount = 0;
            }
            if (timed) measured++;
            if (log) Report(state.Step, null);

            // Time budget: once the per-step time is known, shorten the schedule (once) so the decay completes in time.
            if (budgetSeconds > 0 && !budgetPlanned && measured >= 10)
            {
                budgetPlanned = true;
                double perStep = trainClock.Elapsed.TotalSeconds / measured + (_o.EvalEvery > 0 ? evalSeconds / _o.EvalEvery : 0);
                double left = budgetSeconds - state.ElapsedSeconds - wall.Elapsed.TotalSeconds;
                int fit = state.Step + (int)Math.Floor(Math.Max(0, left) * 0.97 / perStep);
                if (fit < state.PlannedSteps)
                {
                    state = state with { PlannedSteps = Math.Max(state.Step + 1, fit) };
                    schedule = schedule.WithTotal(state.PlannedSteps);
                    Report(state.Step, null, $"time budget: schedule shortened to {state.PlannedSteps} steps");
                }
            }
            bool last = state.Step == state.PlannedSteps;
            if (root && _o.EvalEvery > 0 && state.Step % _o.EvalEvery == 0 && !last) { PauseClock(); Validate(state.Step); _model.train(); }
            if (root && checkpointPath is not null && state.Step % _o.CheckpointEvery == 0 && !last)
            {
                PauseClock();
                TrainCheckpoint.Save(checkpointPath, _masters.Masters, _optimizer, Snapshot());
            }
        }
        PauseClock();
        if (root && (state.Validation.Count == 0 || state.Validation[^1].Step != state.Step))
            if (validationTokens.Length > _o.ContextLength + 1) Validate(state.Step);
        state = Snapshot();
        if (root && checkpointPath is not null) TrainCheckpoint.Save(checkpointPath, _masters.Masters, _optimizer, state);
        double msPerStep = measured > 0 ? trainClock.Elapsed.TotalMilliseconds / measured : double.NaN;
        double tps = measured > 0 ? measured * tokensPerStep / trainClock.Elapsed.TotalSeconds : double.NaN;
        return new TrainResult(state, msPerStep, tps, measured, stoppedByBudget, cancelled);
    }

    /// <summary>Mean next-token loss over EvalWindows fixed windows, evenly spaced over the validation stream.</summary>
    public double ValidationLoss(int[] tokens)
    {
        int T = _o.ContextLength;
        long span = tokens.Length - T - 1;
        if (span < 0) throw new MatqException($"the validation text has {tokens.Length} tokens, fewer than one window of {T + 1}");
        int windows = (int)Math.Min(_o.EvalWindows, span + 1);
        _model.eval();
        double total = 0;
        int count = 0;
        using (no_grad())
            for (int first = 0; first < windows; first += _o.BatchSize)
            {
                using var scope = NewDisposeScope();
                int rows = Math.Min(_o.BatchSize, windows - first);
                var ids = new long[rows * (T + 1)];
                for (int r = 0; r < rows; r++)
                {
                    long start = windows == 1 ? 0 : (first + r) * span / (windows - 1);
                    for (int j = 0; j <= T; j++) ids[r * (T + 1) + j] = tokens[start + j];
                }
                var batch = tensor(ids, [rows, T + 1], ScalarType.Int64).to(_device);
                var logits = _model.call(batch.narrow(1, 0, T));
                var loss = nn.functional.cross_entropy(logits.flatten(0, 1).to_type(ScalarType.Float32),
                    batch.narrow(1, 1, T).flatten(), reduction: nn.Reduction.Sum);
                total += loss.item<float>();
                count += rows * T;
            }
        return total / count;
    }

    private void CheckRunKey(string stored, string path)
    {
        if (stored == _runKey) return;
        var a = stored.Split(';'); var b = _runKey.Split(';');
        var diff = a.Zip(b).FirstOrDefault(p => p.First != p.Second);
        var what = diff == default ? $"'{stored}' vs '{_runKey}'" : $"checkpoint has {diff.First}, this run has {diff.Second}";
        throw new MatqException($"{path} was written by a different run ({what}): resume with the same settings, or use another --out");
    }

    private void Sync()
    {
        if (_device.type == DeviceType.CUDA) cuda.synchronize(_device);
    }

    public void Dispose()
    {
        _optimizer.Dispose();
        _masters.Dispose();
    }
}
