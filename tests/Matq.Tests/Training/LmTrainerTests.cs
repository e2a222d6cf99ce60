// The trainer on a tiny seeded Llama (CPU): loss goes down, a run is bit-identical for the same seed (and not for
// another), and checkpoint → resume reproduces the uninterrupted run exactly.
using Matq.Models;
using Matq.Runtime.Models;
using Matq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Training;

public sealed class LmTrainerTests : IDisposable
{
    private const int Vocab = 32;
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-train-").FullName;
    private static readonly int[] TrainTokens = TestText.Tokens(4000, Vocab, 1);
    private static readonly int[] ValTokens = TestText.Tokens(600, Vocab, 2);

    // 2 layers, hidden 32, 4 heads over 2 KV heads, untied head: every kind of Llama parameter, ~20k of them.
    private static readonly LlamaConfig TinyConfig = new(hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, vocabSize: Vocab,
        numKvHeads: 2, maxPositionEmbeddings: 16);

    private static TrainOptions Options(int steps, long seed = 7, ScalarType dtype = ScalarType.Float32) => new()
    {
        ComputeDtype = dtype,
        Steps = steps, BatchSize = 4, ContextLength = 16, Lr = 1e-2, WarmupSteps = 5, EvalEvery = 10, EvalWindows = 8,
        CheckpointEvery = 1000, LogEvery = 1, ThroughputWarmup = 0, Seed = seed,
    };

    private static (TrainResult Result, float[][] Params) Train(TrainOptions o, string? ckpt = null, bool resume = false, int stopAt = -1)
    {
        torch.manual_seed(o.Seed);
        using var model = new LlamaForCausalLM(TinyConfig);
        using var trainer = new LmTrainer(model, CPU, o, "llama-tiny-test");
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
    public void Bf16ComputeWithFp32MastersLearnsAndKeepsMastersExact()
    {
        var o = Options(30, dtype: ScalarType.BFloat16);
        torch.manual_seed(o.Seed);
        using var model = new LlamaForCausalLM(TinyConfig);
        using var trainer = new LmTrainer(model, CPU, o, "llama-tiny-test");
        var r = trainer.Run(TrainTokens, ValTokens, null, false);
        var losses = r.State.Train.Select(p => p.Loss).ToArray();
        Assert.True(losses[^3..].Average() < losses[..3].Average() - 0.5, $"loss {losses[0]:F3} → {losses[^1]:F3}");
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.All(trainer.Masters, m => Assert.Equal(ScalarType.Float32, m.Master.dtype));
        // the model holds exactly the bf16 rounding of each master, and the masters hold more than bf16 can
        var named = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        bool finer = false;
        foreach (var (name, master) in trainer.Masters)
        {
            Assert.True(named[name].equal(master.to_type(ScalarType.BFloat16)).all().item<bool>(), name);
            finer |= !master.equal(master.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)).all().item<bool>();
        }
        Assert.True(finer, "fp32 masters should carry updates smaller than bf16's resolution");
    }

    [Fact]
    public void EachStepUsesTheScheduledLearningRate()
    {
        // Adam's first update moves every weight by about lr (m̂/√v̂ = ±1), so one step at warm-up rate Lr/10
        // must move weights ~Lr/10, not Lr: this fails if the schedule never reaches the optimizer.
        var o = Options(30) with { WarmupSteps = 10, Lr = 1e-2, WeightDecay = 0 };
        torch.manual_seed(o.Seed);
        using var model = new LlamaForCausalLM(TinyConfig);
        var before = model.parameters().Select(p => p.detach().clone()).ToList();
        using var trainer = new LmTrainer(model, CPU, o with { EvalEvery = 0 }, "lr-test");
        using var cts = new CancellationTokenSource();
        var r = trainer.Run(TrainTokens, ValTokens, null, false, p => { if (p.Step == 1) cts.Cancel(); }, cts.Token);
        Assert.Equal(1, r.State.Step);
        double maxMove = model.parameters().Zip(before).Max(t => (t.First - t.Second).abs().max().item<float>());
        Assert.InRange(maxMove, 0.5e-3, 1.05e-3);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]   // the GPU scheme (bf16 model, flat fp32 masters), run on the CPU
    public void ResumeEqualsAnUninterruptedRun(ScalarType dtype)
    {
        var full = Train(Options(20, dtype: dtype));
        var ckpt = Path.Combine(_dir, TrainCheckpoint.FileName);
        var first = Train(Options(20, dtype: dtype), ckpt, stopAt: 9);
        Assert.True(first.Result.Cancelled);
        Assert.Equal(9, TrainCheckpoint.ReadState(ckpt).Step);
        Assert.NotEqual(full.Params[0], first.Params[0]);                                     // really stopped early

        // A fresh model object (re-seeded init, then overwritten by the checkpoint) continues to step 20.
        var resumed = Train(Options(20, dtype: dtype), ckpt, resume: true);
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
