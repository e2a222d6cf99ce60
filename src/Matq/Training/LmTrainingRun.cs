// `matq train lm` end to end: SOTU splits → tokenizer → seeded Llama → LmTrainer → HF folder (config.json, bf16
// model.safetensors shards, tokenizer files) + loss.png + README.md card, with the card's numbers measured on the saved weights.
using System.Diagnostics;
using System.Text;
using Matq.Data;
using Matq.Evaluation;
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Models;
using Matq.Runtime;
using Matq.Runtime.Models;
using Matq.Runtime.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Training;

/// <summary>A preset plus command-line overrides (null = the preset's value).</summary>
public sealed record LmRunRequest(string Preset, string OutDir)
{
    public int? Steps { get; init; }
    public int? Batch { get; init; }
    public double? Lr { get; init; }
    public string Device { get; init; } = "auto";
    public long? Seed { get; init; }
    public bool Resume { get; init; }
    public double? MaxMinutes { get; init; }
    public int? EvalEvery { get; init; }
}

public sealed record LmRunReport(string OutDir, string Preset, LlamaConfig Config, string TokenizerText, long Parameters,
    string DeviceText, TrainOptions Options, TrainResult Training, long TrainTokens, long TrainBytes,
    PerplexityResult Validation, double FinalEvalSeconds)
{
    public const string CheckpointFolder = "training";
    public string CheckpointPath => Path.Combine(OutDir, CheckpointFolder, TrainCheckpoint.FileName);
}

public static class LmTrainingRun
{
    /// <summary>Largest safetensors shard written for the model (a single larger tensor still gets a file of its own).</summary>
    public const long MaxShardBytes = 16L * 1024 * 1024 - 4096;

    /// <summary>Trains and saves; null on a data-parallel rank other than 0 (rank 0 writes the model, plot and card).</summary>
    public static LmRunReport? Run(LmRunRequest request, Func<DataStore> dataStore, Action<TrainProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        var preset = LmPreset.Get(request.Preset);
        var options = preset.Defaults with
        {
            Steps = request.Steps ?? preset.Defaults.Steps,
            BatchSize = request.Batch ?? preset.Defaults.BatchSize,
            Lr = request.Lr ?? preset.Defaults.Lr,
            Seed = request.Seed ?? preset.Defaults.Seed,
            MaxMinutes = request.MaxMinutes ?? preset.Defaults.MaxMinutes,
            EvalEvery = request.EvalEvery ?? preset.Defaults.EvalEvery,
        };
        options = options with { WarmupSteps = Math.Min(options.WarmupSteps, Math.Max(1, options.Steps / 10)) };
        options.Validate();
        var device = Matq.Distributed.ProcessGroup.RankDevice(TorchRuntime.Configure(request.Device).Device);
        using var group = Matq.Distributed.ProcessGroup.FromEnvironment(device);
        // No autocast in TorchSharp 0.107: bf16 weights/compute with fp32 masters on GPU (see MasterWeights); fp32 on CPU.
        options = options with { ComputeDtype = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32 };
        var outDir = Path.GetFullPath(request.OutDir);
        var ckpt = Path.Combine(outDir, LmRunReport.CheckpointFolder, TrainCheckpoint.FileName);
        if (request.Resume && !File.Exists(ckpt))
            throw new MatqException($"--resume: no checkpoint at {ckpt} (train without --resume first, or check --out)");
        Directory.CreateDirectory(Path.GetDirectoryName(ckpt)!);

        log?.Invoke("loading SOTU (train = before 2000, validation = 2000–2009)");
        var data = dataStore();
        var corpus = data.Sotu();
        string trainText = corpus.Text(DataSplit.Train), valText = corpus.Text(DataSplit.Validation);
        var tokenizer = preset.Tokenizer == LmTokenizerChoice.Bytes
            ? TextTokenizer.CreateBytes()
            : TextTokenizer.FromGpt2Files(data.Gpt2Tokenizer().EncoderJson, data.Gpt2Tokenizer().VocabBpe);
        var sw = Stopwatch.StartNew();
        int[] trainIds = tokenizer.Encode(trainText, addSpecialTokens: false);
        int[] valIds = tokenizer.Encode(valText, addSpecialTokens: false);
        log?.Invoke($"tokenized with {tokenizer}: train {trainIds.Length:N0} tokens ({Encoding.UTF8.GetByteCount(trainText):N0} bytes), " +
                    $"validation {valIds.Length:N0} tokens ({sw.Elapsed.TotalSeconds:F1} s)");

        var config = preset.Config(tokenizer.VocabSize);
        if (config.MaxPositionEmbeddings < options.ContextLength)
            throw new MatqException($"context {options.ContextLength} exceeds the preset's max_position_embeddings {config.MaxPositionEmbeddings}");
        // Initialized on the CPU from the seeded global generator, so the start point is the same on every device.
        torch.manual_seed(options.Seed);
        using var model = new LlamaForCausalLM(config);
        log?.Invoke($"model: {config.ParameterCount():N0} parameters; device {DeviceText(device)}, compute {options.ComputeDtype}");

        TrainResult result;
        if (group.WorldSize > 1) log?.Invoke($"data-parallel: rank {group.Rank} of {group.WorldSize}, {options.BatchSize / group.WorldSize} of the {options.BatchSize} rows of each step");
        using (var trainer = new LmTrainer(model, device, options, LmPreset.ModelKey(config, tokenizer.Name), group))
            result = trainer.Run(trainIds, valIds, ckpt, request.Resume, progress, cancel);
        if (!group.IsRoot) return null;

        log?.Invoke($"saving {outDir}");
        LlamaSaver.Save(model, outDir, SafetensorsDtype.BF16, MaxShardBytes);
        tokenizer.Save(outDir);
        LossPlot.Save(Path.Combine(outDir, "loss.png"), result.State.Train, result.State.Validation,
            $"matq {preset.Name}: SOTU next-token loss");

        // The card's figures come from the saved bf16 weights, read back as `matq eval` would read them.
        log?.Invoke("final evaluation on the full validation split (saved weights)");
        sw.Restart();
        PerplexityResult val;
        using (var saved = LlamaLoader.Load(outDir, device, ScalarType.Float32))
            val = Perplexity.Evaluate(saved, tokenizer.Encode(valText), Encoding.UTF8.GetByteCount(valText),
                new PerplexityOptions { Context = options.ContextLength, Stride = options.ContextLength / 2, Batch = options.BatchSize },
                device, cancel: cancel);
        var report = new LmRunReport(outDir, preset.Name, config, tokenizer.Describe(), config.ParameterCount(), DeviceText(device),
            options, result, trainIds.Length, Encoding.UTF8.GetByteCount(trainText), val, sw.Elapsed.TotalSeconds);
        ModelCard.Write(Path.Combine(outDir, "README.md"), report);
        return report;
    }

    public static string DeviceText(Device device) => device.type == DeviceType.CUDA
        ? $"CUDA device {Math.Max(0, (int)device.index)} (libtorch from {TorchDevices.TorchLibVariable})"
        : $"CPU ({torch.get_num_threads()} threads)";
}
