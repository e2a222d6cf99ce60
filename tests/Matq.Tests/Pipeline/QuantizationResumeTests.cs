// Resume of block-walking quantization on tiny-llama (CPU): a run cancelled after block k (from the BlockDone progress
// event, as Ctrl+C would) and resumed from its checkpoint writes an artifact byte-identical to an uninterrupted run's
// (wall-clock seconds set to 0 in both, the only field that differs between any two runs), for gptq, athena, omniquant,
// and matquant with the athena and omniquant bases; plus the refusals: changed settings or calibration, methods that do
// not walk blocks, a missing checkpoint.
using Matq.Algorithms.Athena;
using Matq.Models;
using Matq.Quantization.Pipeline;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Models;
using static TorchSharp.torch;

namespace Matq.Tests.Pipeline;

public class QuantizationResumeTests
{
    private static QuantizationConfig Config(string kind, bool head = false) => kind switch
    {
        "gptq" => new("gptq", 4, 32, includeLmHead: head),
        "athena" => new("athena", 3, 16, includeLmHead: head, options: new Dictionary<string, string> { ["sweeps"] = "2", ["calib-batch"] = "4" }),
        "omniquant" => new("omniquant", 4, 32, includeLmHead: head, options: Omni()),
        "matquant-athena" => new("matquant", 8, 32, includeLmHead: head,
            options: new Dictionary<string, string> { ["base"] = "athena", ["bits"] = "8,4,2", ["lambda"] = "1,1,1" }),
        "matquant-omniquant" => new("matquant", 8, 32, includeLmHead: head,
            options: new Dictionary<string, string>(Omni()) { ["base"] = "omniquant", ["bits"] = "8,4,2", ["lambda"] = "1,1,2", ["codistill"] = "8->2" }),
        _ => throw new ArgumentException(kind),
    };

    private static Dictionary<string, string> Omni() => new() { ["epochs"] = "2", ["lwc-lr"] = "0.05", ["lwc-batch"] = "2" };

    private static CalibrationTokens Calibration() => new(AthenaTestData.ZipfWindows(8, 24, seed: 5));

    [Theory]
    [InlineData("gptq")]
    [InlineData("omniquant")]
    public void Committing_a_block_leaves_no_tensor_alive_in_the_run(string kind)
    {
        // a block's commit made a detached alias (and on the GPU a host copy) of its installed weights in the calibrator's
        // run-long dispose scope: one block's weights more per block until the run ended (0.87 GB a block at 8B). The
        // live tensor count when each block is done must not grow from block to block.
        var config = Config(kind);
        var outPath = Path.Combine(HfFixtures.TempDir(), "live.matq");
        using var model = PipelineFixtures.LoadTiny();
        var live = new List<long>();
        var checkpoint = QuantizationCheckpoint.Create(outPath, Settings(config, model));
        QuantizationRunner.Run(config, Context(model, checkpoint, progress: e =>
        {
            if (e.Kind == QuantizationEventKind.BlockDone) live.Add(TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        }));
        Assert.Equal(2, live.Count);
        Assert.True(live[1] <= live[0], $"live tensors after block 1: {live[0]}, after block 2: {live[1]}");

        // and the commit itself, called from a caller's scope, leaves nothing in it
        using var scope = NewDisposeScope();
        var fresh = QuantizationCheckpoint.Create(Path.Combine(HfFixtures.TempDir(), "commit.matq"), Settings(config, model));
        var weight = PipelineFixtures.WeightOf(model, "model.layers.0.mlp.down_proj");
        long before = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        fresh.Commit(0, [], [("model.layers.0.mlp.down_proj.weight", weight)]);
        Assert.Equal(before, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    private static QuantizationContext Context(LlamaForCausalLM model, QuantizationCheckpoint? checkpoint = null, Func<CalibrationTokens>? calibration = null,
        Action<QuantizationEvent>? progress = null, CancellationToken cancel = default) =>
        new(model, CPU, calibration ?? Calibration, seed: 11, progress: progress, cancellation: cancel) { Checkpoint = checkpoint };

    private static List<KeyValuePair<string, string>> Settings(QuantizationConfig config, LlamaForCausalLM model) =>
        QuantizationCheckpoint.RunSettings(AlgorithmRegistry.Create(config), model, seed: 11);

    // The run's result with every wall-clock field at 0, so two runs' artifacts can be compared byte for byte.
    private static QuantizationResult WithoutTimes(QuantizationResult r) => r with
    {
        Seconds = 0,
        Layers = r.Layers.Select(l => new QuantizedLinearResult(l.Name, l.OutFeatures, l.InFeatures, l.GroupSize, l.Codes, l.Scales, l.Zeros, l.Perm,
            l.Report with { Seconds = 0 })).ToArray(),
    };

    private static byte[] Artifact(QuantizationResult result, LlamaForCausalLM model, string path)
    {
        ArtifactExport.Write(WithoutTimes(result), model, path);
        return File.ReadAllBytes(path);
    }

    [Theory]
    [InlineData("gptq", 0, false)]
    [InlineData("athena", 0, false)]
    [InlineData("athena", 1, true)]              // resumes at lm_head, the third block
    [InlineData("omniquant", 0, false)]
    [InlineData("omniquant", 1, true)]
    [InlineData("matquant-athena", 0, false)]
    [InlineData("matquant-omniquant", 0, false)]
    public void A_run_killed_after_block_k_and_resumed_writes_the_uninterrupted_artifact(string kind, int killAfter, bool head)
    {
        var config = Config(kind, head);
        var dir = HfFixtures.TempDir();

        byte[] expected;
        using (var model = PipelineFixtures.LoadTiny())
            expected = Artifact(QuantizationRunner.Run(config, Context(model)), model, Path.Combine(dir, "uninterrupted.matq"));

        var outPath = Path.Combine(dir, "resumed.matq");
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Create(outPath, Settings(config, model));
            using var cts = new CancellationTokenSource();
            void Kill(QuantizationEvent e)
            {
                if (e.Kind == QuantizationEventKind.BlockDone && e.Block == killAfter) cts.Cancel();
            }
            Assert.ThrowsAny<OperationCanceledException>(() => QuantizationRunner.Run(config, Context(model, checkpoint, progress: Kill, cancel: cts.Token)));
            Assert.Equal(killAfter + 1, checkpoint.BlocksDone);
            Assert.False(File.Exists(outPath));
        }

        var events = new List<QuantizationEvent>();
        using (var model = PipelineFixtures.LoadTiny())         // a fresh process: the float model from disk
        {
            var checkpoint = QuantizationCheckpoint.Open(outPath, Settings(config, model));
            Assert.Equal(killAfter + 1, checkpoint.BlocksDone);
            var resumed = QuantizationRunner.Run(config, Context(model, checkpoint, progress: events.Add));
            Assert.Equal(expected, Artifact(resumed, model, outPath));
            checkpoint.Delete();
            Assert.False(Directory.Exists(QuantizationCheckpoint.FolderFor(outPath)));
        }
        int blocks = 2 + (head ? 1 : 0);
        Assert.Contains(events, e => e.Kind == QuantizationEventKind.Message && e.Message!.StartsWith($"resuming at block {killAfter + 2}/{blocks}", StringComparison.Ordinal));
        Assert.DoesNotContain(events, e => e.Kind == QuantizationEventKind.BlockStarted && e.Block <= killAfter);
    }

    [Fact]
    public void Every_finished_block_is_a_checkpoint_file_and_the_run_is_unchanged_by_checkpointing()
    {
        var config = Config("gptq");
        var dir = HfFixtures.TempDir();
        byte[] plain;
        using (var model = PipelineFixtures.LoadTiny())
            plain = Artifact(QuantizationRunner.Run(config, Context(model)), model, Path.Combine(dir, "plain.matq"));
        var outPath = Path.Combine(dir, "checkpointed.matq");
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Create(outPath, Settings(config, model));
            var result = QuantizationRunner.Run(config, Context(model, checkpoint));
            Assert.Equal(2, checkpoint.BlocksDone);
            var folder = QuantizationCheckpoint.FolderFor(outPath);
            Assert.Equal(Path.Combine(dir, ".checkpointed.matq.resume"), folder);
            Assert.Equal(new[] { "block-0000.safetensors", "block-0001.safetensors", "run.json" },
                Directory.GetFiles(folder).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
            Assert.Equal(plain, Artifact(result, model, outPath));
            // stored results come back equal, the installed weights as the model holds them
            var block1 = checkpoint.Results(1);
            Assert.Equal(result.Layers.Where(l => l.Name.StartsWith("model.layers.1.", StringComparison.Ordinal)).Select(l => l.Codes), block1.Select(l => l.Codes));
            using var fresh = PipelineFixtures.LoadTiny();
            checkpoint.RestoreInstalled(1, fresh);
            var name = "model.layers.1.mlp.down_proj";
            Assert.True(PipelineFixtures.WeightOf(fresh, name).eq(PipelineFixtures.WeightOf(model, name)).all().item<bool>());
            // GPTQ installs its dequantized codes, so the files store codes and no installed weight (a quarter of the bytes)
            foreach (var file in Directory.GetFiles(folder, "block-*.safetensors"))
            {
                using var f = Matq.Formats.Safetensors.SafetensorsFile.Open(file);
                Assert.DoesNotContain(f.Tensors, t => t.Name.StartsWith("state.", StringComparison.Ordinal));
                Assert.Contains("\"installed\":\"codes\"", f.Metadata["matq.resume"], StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void An_installed_weight_that_is_not_its_dequantized_codes_is_stored_and_restored_byte_for_byte()
    {
        // the commit compares each installed weight with its codes' dequantization bit for bit: one ulp apart is stored
        var config = Config("gptq");
        var dir = HfFixtures.TempDir();
        using var model = PipelineFixtures.LoadTiny();
        var checkpoint = QuantizationCheckpoint.Create(Path.Combine(dir, "a.matq"), Settings(config, model));
        var result = QuantizationRunner.Run(config, Context(model, checkpoint));
        var layers = result.Layers.Where(l => l.Name.StartsWith("model.layers.0.", StringComparison.Ordinal)).ToList();
        var nudged = layers.Single(l => l.Name.EndsWith("mlp.up_proj", StringComparison.Ordinal));
        var weight = PipelineFixtures.WeightOf(model, nudged.Name);
        using (no_grad())
        {
            var flat = weight.view(-1);
            flat[5] = nextafter(flat[5], flat[5].abs().add(1));
        }
        var other = QuantizationCheckpoint.Create(Path.Combine(dir, "b.matq"), Settings(config, model));
        other.CommitInstalled(0, layers, model);
        using (var f = Matq.Formats.Safetensors.SafetensorsFile.Open(Path.Combine(QuantizationCheckpoint.FolderFor(Path.Combine(dir, "b.matq")), "block-0000.safetensors")))
            Assert.Equal(new[] { "state." + nudged.WeightName }, f.Tensors.Where(t => t.Name.StartsWith("state.", StringComparison.Ordinal)).Select(t => t.Name).ToArray());
        using var fresh = PipelineFixtures.LoadTiny();
        other.RestoreInstalled(0, fresh);
        foreach (var l in layers)
            Assert.True(PipelineFixtures.WeightOf(fresh, l.Name).eq(PipelineFixtures.WeightOf(model, l.Name)).all().item<bool>(), l.Name);
    }

    [Fact]
    public void A_run_killed_after_its_last_block_resumes_to_the_artifact_without_quantizing()
    {
        var config = Config("athena", head: true);
        var dir = HfFixtures.TempDir();
        var outPath = Path.Combine(dir, "m.matq");
        byte[] expected;
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Create(outPath, Settings(config, model));
            expected = Artifact(QuantizationRunner.Run(config, Context(model, checkpoint)), model, Path.Combine(dir, "first.matq"));
            Assert.Equal(3, checkpoint.BlocksDone);                 // two decoder blocks and lm_head
        }
        var events = new List<QuantizationEvent>();
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Open(outPath, Settings(config, model));
            Assert.Equal(expected, Artifact(QuantizationRunner.Run(config, Context(model, checkpoint, progress: events.Add)), model, outPath));
            var head = PipelineFixtures.WeightOf(model, "lm_head");
            using var fresh = PipelineFixtures.LoadTiny();
            Assert.False(head.eq(PipelineFixtures.WeightOf(fresh, "lm_head")).all().item<bool>(), "the quantized head weight was restored");
        }
        Assert.DoesNotContain(events, e => e.Kind is QuantizationEventKind.BlockStarted or QuantizationEventKind.LayerDone);
    }

    [Fact]
    public void Resume_with_a_changed_setting_is_refused_naming_it()
    {
        var outPath = Path.Combine(HfFixtures.TempDir(), "m.matq");
        using var model = PipelineFixtures.LoadTiny();
        QuantizationCheckpoint.Create(outPath, Settings(Config("athena"), model));
        var changed = new QuantizationConfig("athena", 3, 16, options: new Dictionary<string, string> { ["sweeps"] = "1", ["calib-batch"] = "4" });
        var e = Assert.Throws<MatqException>(() => QuantizationCheckpoint.Open(outPath, Settings(changed, model)));
        Assert.Contains("option sweeps = 2, this run has option sweeps = 1", e.Message);
        e = Assert.Throws<MatqException>(() => QuantizationCheckpoint.Open(outPath, Settings(Config("gptq"), model)));
        Assert.Contains("method = athena, this run has method = gptq", e.Message);
        var extra = Settings(Config("athena"), model);
        extra.Add(new("calib-n", "8"));
        e = Assert.Throws<MatqException>(() => QuantizationCheckpoint.Open(outPath, extra));
        Assert.Contains("calib-n", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Resume_with_other_calibration_windows_is_refused()
    {
        var config = Config("gptq");
        var outPath = Path.Combine(HfFixtures.TempDir(), "m.matq");
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Create(outPath, Settings(config, model));
            using var cts = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => QuantizationRunner.Run(config, Context(model, checkpoint,
                progress: e => { if (e.Kind == QuantizationEventKind.BlockDone) cts.Cancel(); }, cancel: cts.Token)));
        }
        using (var model = PipelineFixtures.LoadTiny())
        {
            var checkpoint = QuantizationCheckpoint.Open(outPath, Settings(config, model));
            var e = Assert.Throws<MatqException>(() => QuantizationRunner.Run(config, Context(model, checkpoint,
                calibration: () => new CalibrationTokens(AthenaTestData.ZipfWindows(8, 24, seed: 6)))));
            Assert.Contains("calibration windows differ", e.Message);
        }
    }

    [Theory]
    [InlineData("rtn", null)]
    [InlineData("matquant", "qat")]
    public void Methods_that_do_not_walk_blocks_refuse_a_checkpoint(string method, string? baseName)
    {
        var options = baseName is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["base"] = baseName, ["bits"] = "8,4,2", ["lambda"] = "1,1,1" };
        var config = new QuantizationConfig(method, method == "rtn" ? 4 : 8, 32, options: options);
        Assert.False(AlgorithmRegistry.Create(config).SupportsResume);
        using var model = PipelineFixtures.LoadTiny();
        var checkpoint = QuantizationCheckpoint.Create(Path.Combine(HfFixtures.TempDir(), "m.matq"), Settings(config, model));
        var e = Assert.Throws<MatqException>(() => QuantizationRunner.Run(config, Context(model, checkpoint)));
        Assert.Contains("cannot resume", e.Message);
        Assert.Contains(QuantizationCheckpoint.ResumableMethods, e.Message);
        Assert.True(new AthenaAlgorithm(Config("gptq"), AthenaMode.GptqExact).SupportsResume);
    }

    [Fact]
    public void Opening_a_missing_checkpoint_says_where_it_looked()
    {
        var outPath = Path.Combine(HfFixtures.TempDir(), "none.matq");
        var e = Assert.Throws<MatqException>(() => QuantizationCheckpoint.Open(outPath, []));
        Assert.Contains("no checkpoint", e.Message);
        Assert.Contains(".none.matq.resume", e.Message);
    }
}
