// The collectives over the loopback TCP star (ranks as threads of this process, each its own HostProcessGroup), gradient
// bucketing, and data-parallel training: two ranks with half of every batch each end where the one-process run with the
// whole batch ends (up to the order of the gradient sums), and one rank of a group is exactly the one-process run.
using Matq.Distributed;
using Matq.Models;
using Matq.Runtime.Models;
using Matq.Tests.Training;
using Matq.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Distributed;

public sealed class DataParallelTests
{
    /// <summary>Runs <paramref name="body"/> once per rank, each on its own thread with its own group; rank order results.</summary>
    internal static T[] OnRanks<T>(int world, Func<ProcessGroup, T> body)
    {
        int port = HostProcessGroup.FreeLoopbackPort();
        var results = new T[world];
        var errors = new Exception?[world];
        var threads = Enumerable.Range(0, world).Select(r => new Thread(() =>
        {
            try
            {
                using var g = new HostProcessGroup(r, world, "127.0.0.1", port);
                results[r] = body(g);
            }
            catch (Exception e) { errors[r] = e; }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var e in errors) if (e is not null) throw new AggregateException(e);
        return results;
    }

    [Fact]
    public void All_reduce_gives_every_rank_the_rank_order_sum_and_broadcast_the_roots_values()
    {
        var got = OnRanks(3, g =>
        {
            using var t = tensor(new[] { 0.1f * (g.Rank + 1), 1e8f, -3f + g.Rank, 1f / 3 * g.Rank });
            g.AllReduceSum(t);
            using var b = tensor(new[] { (float)g.Rank, 10f + g.Rank });
            g.Broadcast(b, root: 1);
            return (Sum: t.data<float>().ToArray(), Bcast: b.data<float>().ToArray());
        });
        float[] expected = [(0.1f + 0.2f) + 0.3f, (1e8f + 1e8f) + 1e8f, (-3f + -2f) + -1f, (0f + 1f / 3) + 2f / 3];
        foreach (var (sum, bcast) in got)
        {
            Assert.Equal(expected, sum);          // the same bits on every rank
            Assert.Equal([1f, 11f], bcast);
        }
    }

    [Fact]
    public void Ranks_that_disagree_on_a_size_fail_with_one_line()
    {
        var e = Assert.Throws<AggregateException>(() => OnRanks(2, g =>
        {
            using var t = zeros(g.Rank == 0 ? 3 : 4);
            g.AllReduceSum(t);
            return 0;
        }));
        Assert.Contains(e.InnerExceptions, x => x.Message.Contains("the ranks disagree on a tensor's size") || x.Message.Contains("left the job"));
    }

    [Fact]
    public void Buckets_group_consecutive_tensors_and_give_the_same_mean_as_one_collective_per_tensor()
    {
        Assert.Equal([[0, 1], [2], [3, 4]], GradientBuckets.Plan([10, 15, 40, 5, 5], bucketBytes: 100));
        Assert.Equal([[0], [1]], GradientBuckets.Plan([100, 1], bucketBytes: 8));   // a tensor larger than a bucket is its own
        var got = OnRanks(2, g =>
        {
            var gen = new Random(g.Rank + 5);
            Tensor Make(params long[] shape) => tensor(Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b)).Select(_ => (float)gen.NextDouble()).ToArray(), shape);
            var a = new[] { Make(3, 4), Make(5), Make(2, 2, 2), Make(7) };
            var b = a.Select(t => t.clone()).ToArray();
            GradientBuckets.AllReduceMean(g, a, bucketBytes: 80);
            foreach (var t in b) g.AllReduceMean(t);
            return (A: a.Select(t => t.data<float>().ToArray()).ToArray(), B: b.Select(t => t.data<float>().ToArray()).ToArray(),
                Shapes: a.Select(t => t.shape).ToArray());
        });
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(got[0].B[i], got[0].A[i]);   // exact: element-wise sums do not depend on the bucketing
            Assert.Equal(got[0].A[i], got[1].A[i]);
        }
        Assert.Equal([2L, 2, 2], got[0].Shapes[2]);
    }

    private const int Vocab = 32;
    private static readonly int[] TrainTokens = TestText.Tokens(4000, Vocab, 1);
    private static readonly int[] ValTokens = TestText.Tokens(600, Vocab, 2);
    private static readonly LlamaConfig TinyConfig = new(hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, vocabSize: Vocab,
        numKvHeads: 2, maxPositionEmbeddings: 16);

    private static TrainOptions Options(ScalarType dtype, int steps = 12) => new()
    {
        ComputeDtype = dtype, Steps = steps, BatchSize = 4, ContextLength = 16, Lr = 1e-2, WarmupSteps = 3, EvalEvery = 0, EvalWindows = 8,
        CheckpointEvery = 1000, LogEvery = 1, ThroughputWarmup = 0, Seed = 7,
    };

    private static (double[] Losses, float[][] Masters) Train(LlamaForCausalLM model, TrainOptions o, ProcessGroup? g, string? ckpt = null)
    {
        using var trainer = new LmTrainer(model, CPU, o, "dp-test", g);
        var r = trainer.Run(TrainTokens, ValTokens, ckpt, false);
        return (r.State.Train.Select(p => p.Loss).ToArray(), trainer.Masters.Select(m => m.Master.detach().cpu().data<float>().ToArray()).ToArray());
    }

    // fp32: only the order of the gradient sums differs; bf16 compute: each half's backward also rounds its gradients to
    // bf16 differently, and Adam's per-element normalization turns a flipped near-zero gradient into a full step
    [Theory]
    [InlineData(ScalarType.Float32, 12, 2e-4, 3)]
    [InlineData(ScalarType.BFloat16, 12, 1e-2, 2)]
    public void Two_ranks_with_half_the_rows_each_follow_the_one_process_run(ScalarType dtype, int steps, double tolerance, int lossDigits)
    {
        var o = Options(dtype, steps);
        torch.manual_seed(o.Seed);
        using var single = new LlamaForCausalLM(TinyConfig);
        var one = Train(single, o, null);
        // the ranks' models are built before the threads start: the seeded global generator is process-wide
        var models = Enumerable.Range(0, 2).Select(r => { torch.manual_seed(r == 0 ? o.Seed : 99); return new LlamaForCausalLM(TinyConfig); }).ToArray();
        var dir = Directory.CreateTempSubdirectory("matq-dp-").FullName;
        try
        {
            // rank 1 starts from other weights: the broadcast from rank 0 must make the start points equal
            var ranks = OnRanks(2, g => Train(models[g.Rank], o, g, Path.Combine(dir, $"ckpt-{g.Rank}.bin")));
            for (int i = 0; i < one.Masters.Length; i++)
            {
                Assert.Equal(ranks[0].Masters[i], ranks[1].Masters[i]);             // the ranks stay identical, bit for bit
                // fp32: the largest difference; bf16: the mean one (a few near-zero gradients can flip their Adam step)
                double scale = dtype == ScalarType.Float32 ? one.Masters[i].Max(v => Math.Abs(v)) + 1e-3 : one.Masters[i].Average(v => Math.Abs(v)) + 1e-3;
                var deltas = one.Masters[i].Zip(ranks[0].Masters[i], (a, b) => (double)Math.Abs(a - b)).ToArray();
                double diff = dtype == ScalarType.Float32 ? deltas.Max() : deltas.Average();
                Assert.True(diff <= tolerance * scale, $"master {i}: |Δ| {diff:E2} vs the one-process run (scale {scale:F3})");
            }
            Assert.Equal(one.Losses.Length, ranks[0].Losses.Length);
            for (int s = 0; s < one.Losses.Length; s++) Assert.Equal(one.Losses[s], ranks[0].Losses[s], lossDigits);   // the global batch's mean loss
            Assert.True(File.Exists(Path.Combine(dir, "ckpt-0.bin")));
            Assert.False(File.Exists(Path.Combine(dir, "ckpt-1.bin")));           // rank 0 alone writes checkpoints
        }
        finally
        {
            foreach (var m in models) m.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_run_checkpointed_by_two_ranks_resumes_in_one_process()
    {
        var o = Options(ScalarType.Float32) with { CheckpointEvery = 3 };
        torch.manual_seed(o.Seed);
        using var single = new LlamaForCausalLM(TinyConfig);
        var whole = Train(single, o, null);
        var dir = Directory.CreateTempSubdirectory("matq-dp-resume-").FullName;
        var ckpt = Path.Combine(dir, "ckpt.bin");
        try
        {
            var models = Enumerable.Range(0, 2).Select(_ => { torch.manual_seed(o.Seed); return new LlamaForCausalLM(TinyConfig); }).ToArray();
            // both ranks stop after step 6 (each its own cancellation, at the same step), rank 0 leaves the checkpoint
            OnRanks(2, g =>
            {
                using var cts = new CancellationTokenSource();
                using var trainer = new LmTrainer(models[g.Rank], CPU, o, "dp-test", g);
                return trainer.Run(TrainTokens, ValTokens, ckpt, false, p => { if (p.Step == 6) cts.Cancel(); }, cts.Token).Cancelled;
            });
            foreach (var m in models) m.Dispose();
            Assert.Equal(6, TrainCheckpoint.ReadState(ckpt).Step);
            torch.manual_seed(123);   // the checkpoint, not the seed, sets the weights
            using var resumed = new LlamaForCausalLM(TinyConfig);
            using var trainer = new LmTrainer(resumed, CPU, o, "dp-test");
            var r = trainer.Run(TrainTokens, ValTokens, ckpt, resume: true);
            Assert.Equal(12, r.State.Step);
            var masters = trainer.Masters.Select(m => m.Master.detach().cpu().data<float>().ToArray()).ToArray();
            for (int i = 0; i < masters.Length; i++)
            {
                double scale = whole.Masters[i].Max(v => Math.Abs(v)) + 1e-3;
                double diff = whole.Masters[i].Zip(masters[i], (a, b) => (double)Math.Abs(a - b)).Max();
                Assert.True(diff <= 2e-4 * scale, $"master {i}: |Δ| {diff:E2} vs the uninterrupted one-process run");
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_batch_that_does_not_split_over_the_ranks_is_one_line()
    {
        var e = Assert.Throws<AggregateException>(() => OnRanks(3, g =>
        {
            torch.manual_seed(1);
            using var m = new LlamaForCausalLM(TinyConfig);
            using var t = new LmTrainer(m, CPU, Options(ScalarType.Float32), "dp-test", g);
            return 0;
        }));
        Assert.Contains(e.InnerExceptions, x => x.Message.Contains("batch 4 does not split over 3 ranks"));
    }
}

public sealed class NcclLookupTests
{
    [Fact]
    public void Nccl_is_looked_for_where_the_torch_install_keeps_it_and_its_absence_is_one_line()
    {
        var c = Nccl.Candidates("/x/libnccl.so.2", "/opt/torch/.venv/lib/python3.12/site-packages/torch/lib");
        Assert.Equal(["/x/libnccl.so.2", "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2",
            "/opt/torch/.venv/lib/python3.12/site-packages/torch/lib/libnccl.so.2", "libnccl.so.2"], c);
        Assert.Equal(["libnccl.so.2"], Nccl.Candidates(null, null));
        var e = Assert.Throws<MatqException>(() => Nccl.Load(["/nonexistent/libnccl.so.2"]));
        Assert.Contains("NCCL not found (tried /nonexistent/libnccl.so.2): set MATQ_NCCL_LIB", e.Message);
    }
}

public sealed class DataParallelQatTests
{
    private static Matq.Quantization.Pipeline.CalibrationTokens Data() => new(Matq.Tests.Algorithms.Athena.AthenaTestData.ZipfWindows(16, 17, seed: 5));

    private static Matq.Quantization.Pipeline.QuantizationConfig Config() => new("matquant", 8, 32, options: new Dictionary<string, string>
    {
        ["bits"] = "8,4,2", ["lambda"] = "1,1,1", ["steps"] = "4", ["batch"] = "4", ["warmup"] = "1", ["lr"] = "0.01", ["scale-lr"] = "0.01",
    });

    [Fact]
    public void MatQuant_qat_on_two_ranks_with_half_the_rows_each_matches_the_one_process_codes()
    {
        List<Matq.Quantization.Pipeline.QuantizedLinearResult> Run(ProcessGroup? g)
        {
            using var model = Matq.Tests.Pipeline.PipelineFixtures.LoadTiny();
            var context = new Matq.Quantization.Pipeline.QuantizationContext(model, CPU, Data, seed: 9) { Group = g ?? new SingleProcessGroup() };
            return Matq.Quantization.Pipeline.QuantizationRunner.Run(Config(), context).Layers.ToList();
        }
        var one = Run(null);
        var ranks = DataParallelTests.OnRanks(2, g => Run(g));
        long codes = 0, differ = 0;
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(ranks[0][i].Codes, ranks[1][i].Codes);          // the ranks agree exactly
            Assert.Equal(ranks[0][i].Scales, ranks[1][i].Scales);
            codes += one[i].Codes.Length;
            differ += one[i].Codes.Zip(ranks[0][i].Codes, (a, b) => a != b ? 1 : 0).Sum();
            for (int k = 0; k < one[i].Scales.Length; k++)
                Assert.True(Math.Abs(one[i].Scales[k] - ranks[0][i].Scales[k]) <= 1e-4 * Math.Abs(one[i].Scales[k]), $"layer {i} scale {k}");
        }
        // the one-process run and the ranks differ only in the order of the gradient sums: a code may round the other way
        Assert.True(differ <= codes / 1000, $"{differ} of {codes} codes differ from the one-process run");
    }
}

public sealed class LayerParallelPtqTests
{
    private static Matq.Quantization.Pipeline.CalibrationTokens Data() => new(Matq.Tests.Algorithms.Athena.AthenaTestData.ZipfWindows(8, 33, seed: 3));

    [Theory]
    [InlineData("gptq", 2)]
    [InlineData("gptq", 3)]
    [InlineData("matquant-athena", 2)]
    public void Each_block_spread_over_the_ranks_gives_the_one_process_results_bit_for_bit(string method, int world)
    {
        var config = method == "gptq"
            ? new Matq.Quantization.Pipeline.QuantizationConfig("gptq", 4, 32)
            : new Matq.Quantization.Pipeline.QuantizationConfig("matquant", 8, 32, options: new Dictionary<string, string> { ["base"] = "athena", ["bits"] = "8,4,2" });
        List<Matq.Quantization.Pipeline.QuantizedLinearResult> Run(ProcessGroup? g)
        {
            using var model = Matq.Tests.Pipeline.PipelineFixtures.LoadTiny();
            var context = new Matq.Quantization.Pipeline.QuantizationContext(model, CPU, Data, seed: 4) { Group = g ?? new SingleProcessGroup() };
            return Matq.Quantization.Pipeline.QuantizationRunner.Run(config, context).Layers.ToList();
        }
        var one = Run(null);
        var ranks = DataParallelTests.OnRanks(world, g => Run(g));
        foreach (var rank in ranks)
        {
            Assert.Equal(one.Count, rank.Count);
            for (int i = 0; i < one.Count; i++)
            {
                Assert.Equal(one[i].Name, rank[i].Name);
                Assert.Equal(one[i].Codes, rank[i].Codes);
                Assert.Equal(one[i].Scales, rank[i].Scales);
                Assert.Equal(one[i].Zeros, rank[i].Zeros);
                Assert.Equal(one[i].Report.HessianErrorAfter, rank[i].Report.HessianErrorAfter);
            }
        }
    }

    [Fact]
    public void A_result_survives_its_trip_between_ranks()
    {
        var r = new Matq.Quantization.Pipeline.QuantizedLinearResult("model.layers.0.mlp.up_proj", 2, 3, -1, [1, 2, 3, 4, 5, 6], [0.5f, 0.25f], [1f, 2f], [2, 0, 1],
            new Matq.Quantization.Pipeline.LayerReport("model.layers.0.mlp.up_proj", 2, 3, 4, 1e-3, double.NaN, 0.5, 1.25));
        var back = Matq.Quantization.Pipeline.QuantizedLinearResult.FromBytes(r.ToBytes());
        Assert.Equal(r.Codes, back.Codes);
        Assert.Equal(r.Scales, back.Scales);
        Assert.Equal(r.Zeros, back.Zeros);
        Assert.Equal(r.Perm, back.Perm);
        Assert.Equal(r.Report, back.Report);
        Assert.Equal((r.Name, r.OutFeatures, r.InFeatures, r.GroupSize), (back.Name, back.OutFeatures, back.InFeatures, back.GroupSize));
    }
}
