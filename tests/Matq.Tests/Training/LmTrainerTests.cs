// The trainer on a seeded bigram LM (CPU): loss goes down, a run is bit-identical for the same seed (and not for
// another), and checkpoint → resume reproduces the uninterrupted run exactly.
using Matq.Training;
using static TorchSharp.torch;

namespace Matq.Tests.Training;

public sealed class LmTrainerTests : IDisposable
{
    private const int Vocab = 32;
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-train-").FullName;
    private static readonly int[] TrainTokens = TestText.Tokens(4000, Vocab, 1);
    private static readonly int[] ValTokens = TestText.Tokens(600, Vocab, 2);

    private static TrainOptions Options(int steps, long seed = 7) => new()
    {
        Steps = steps, BatchSize = 4, ContextLength = 16, Lr = 3e-2, WarmupSteps = 5, EvalEvery = 10, EvalWindows = 8,
        CheckpointEvery = 1000, LogEvery = 1, ThroughputWarmup = 0, Seed = seed,
    };

    private static (TrainResult Result, float[][] Params) Train(TrainOptions o, string? ckpt = null, bool resume = false, int stopAt = -1)
    {
        using var model = new BigramLm(Vocab, 16, o.Seed);
        using var trainer = new LmTrainer(model, CPU, o, "bigram-32x16");
        using var cts = new CancellationTokenSource();
        var result = trainer.Run(TrainTokens, ValTokens, ckpt, resume, p => { if (p.Step == stopAt) cts.Cancel(); }, cts.Token);
        var ps = trainer.Masters.Select(m => m.Master.detach().cpu().data<float>().ToArray()).ToArray();
        return (result, ps);
    }

    [Fact]
    public void ThirtyStepsReduceTheLossAndRepeatBitForBit()
    {
        var a = Train(Options(30));
        var b = Train(Options(30));
        var losses = a.Result.State.Train.Select(p => p.Loss).ToArray();
        Assert.Equal(30, losses.Length);
        Assert.True(losses[^3..].Average() < losses[..3].Average() - 0.5, $"loss {losses[0]:F3} → {losses[^1]:F3}");
        Assert.True(a.Result.State.Validation[^1].Loss < a.Result.State.Validation[0].Loss);
        Assert.Equal(losses, b.Result.State.Train.Select(p => p.Loss).ToArray());               // exact equality
        Assert.Equal(a.Result.State.Validation, b.Result.State.Validation);
        for (int i = 0; i < a.Params.Length; i++) Assert.Equal(a.Params[i], b.Params[i]);

        var other = Train(Options(30, seed: 8));
        Assert.NotEqual(losses, other.Result.State.Train.Select(p => p.Loss).ToArray());
    }

    [Fact]
    public void ResumeEqualsAnUninterruptedRun()
    {
        var full = Train(Options(20));
        var ckpt = Path.Combine(_dir, TrainCheckpoint.FileName);
        var first = Train(Options(20), ckpt, stopAt: 9);
        Assert.True(first.Result.Cancelled);
        Assert.Equal(9, TrainCheckpoint.ReadState(ckpt).Step);
        Assert.NotEqual(full.Params[0], first.Params[0]);                                     // really stopped early

        // A fresh model object (re-seeded init, then overwritten by the checkpoint) continues to step 20.
        var resumed = Train(Options(20), ckpt, resume: true);
        Assert.Equal(20, resumed.Result.State.Step);
        for (int i = 0; i < full.Params.Length; i++) Assert.Equal(full.Params[i], resumed.Params[i]);
        Assert.Equal(full.Result.State.Train.Select(p => p.Loss), resumed.Result.State.Train.Select(p => p.Loss));
    }

    [Fact]
    public void ResumeWithOtherSettingsIsRefused()
    {
        var ckpt = Path.Combine(_dir, TrainCheckpoint.FileName);
        Train(Options(20), ckpt, stopAt: 5);
        var e = Assert.Throws<MatqException>(() => Train(Options(20) with { BatchSize = 8 }, ckpt, resume: true));
        Assert.Contains("batch=4", e.Message);
        var fresh = Assert.Throws<MatqException>(() => Train(Options(20), ckpt));
        Assert.Contains("--resume", fresh.Message);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
