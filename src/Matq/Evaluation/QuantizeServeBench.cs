// Contract: the shared core of the LM quantization benches (`bench matquant`, `bench efqat-lm`): one float model and its
// eval texts (SOTU test and Moby-Dick, each cut to its first N tokens); each run quantizes a fresh copy of the float
// model, writes it as a .matq artifact, serves it at r bits and scores it (perplexity per text). The caller builds its table.
using Matq.Data;
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Plans;
using Matq.Runtime.Tokenizers;
using static TorchSharp.torch;

namespace Matq.Evaluation;

/// <summary>One served width of an artifact: perplexity per eval text (in <see cref="QuantizeServeBench.Labels"/> order)
/// and the bits/weight measures of the served model (escape-stream, paper r + overflow fraction, sparse lists).</summary>
public sealed record ServedScore(int Bits, IReadOnlyList<double> Perplexity, double EffectiveBits, double PaperBits, double SparseBits,
    bool ExtraPrecision, string ExtraBitsText);

/// <summary>The bench on the float model at <paramref name="modelPath"/>: <paramref name="trainTokens"/> feed QAT and calibration
/// windows, <paramref name="texts"/> are scored (see <see cref="Open"/>).</summary>
public sealed class QuantizeServeBench(string modelPath, Device device, int[] trainTokens, IReadOnlyList<(string Label, int[] Tokens)> texts)
{
    /// <summary>Every bench scores with windows of 256 tokens, stride 128, 8 windows per batch.</summary>
    public static PerplexityOptions Windows { get; } = new() { Context = 256, Stride = 128, Batch = 8 };

    private readonly (string Label, int[] Tokens)[] _texts = texts.ToArray();

    public string ModelPath { get; } = modelPath;
    public Device Device { get; } = device;

    /// <summary>SOTU train, tokenized: the source of QAT and calibration windows.</summary>
    public int[] TrainTokens { get; } = trainTokens;

    /// <summary>"SOTU test", "Moby-Dick": the order of every score list.</summary>
    public IReadOnlyList<string> Labels => _texts.Select(t => t.Label).ToArray();

    /// <summary>Loads the model's tokenizer and tokenizes SOTU train and the eval texts (each cut to its first
    /// <paramref name="maxTokens"/> tokens; 0 = all).</summary>
    public static QuantizeServeBench Open(string modelPath, Device device, Func<DataStore> data, int maxTokens)
    {
        var tokenizer = TextTokenizer.Load(modelPath);
        var train = tokenizer.Encode(data().Sotu().Text(DataSplit.Train));
        var texts = new[] { ("SOTU test", data().Sotu().Text(DataSplit.Test)), ("Moby-Dick", data().MobyDick()) }
            .Select(t => { var ids = tokenizer.Encode(t.Item2); return (t.Item1, maxTokens > 0 && ids.Length > maxTokens ? ids[..maxTokens] : ids); })
            .ToArray();
        return new QuantizeServeBench(modelPath, device, train, texts);
    }

    /// <summary>Windows of QAT training: steps × batch windows of context + 1 tokens (fewer when SOTU train is short).</summary>
    public CalibrationTokens QatWindows(int steps, int batch, int context, int seed) =>
        CalibrationTokens.Sample(TrainTokens, Math.Min(steps * batch, TrainTokens.Length / (context + 1) - 1), context + 1, seed);

    /// <summary>Perplexity of <paramref name="model"/> on each eval text.</summary>
    public double[] Score(nn.Module<Tensor, Tensor> model) =>
        _texts.Select(t => Perplexity.Evaluate(model, t.Tokens, t.Tokens.Length, Windows, Device).Perplexity).ToArray();

    /// <summary>Perplexity of the float model.</summary>
    public double[] ScoreFloat()
    {
        using var source = ModelSource.Open(ModelPath, device: Device);
        return Score(source.Model);
    }

    /// <summary>Quantizes a fresh copy of the float model with <paramref name="config"/> and writes the artifact (atomically).</summary>
    public QuantizationResult Quantize(QuantizationConfig config, Func<CalibrationTokens> calibration, int seed, string artifactPath)
    {
        using var source = ModelSource.Open(ModelPath, device: Device);
        var result = QuantizationRunner.Run(config, new QuantizationContext(source.Model, Device, calibration, seed));
        ArtifactExport.Write(result, source.Model, artifactPath, source.TokenizerFolder);
        return result;
    }

    /// <summary>Serves <paramref name="artifact"/> at <paramref name="bits"/> (optionally with extra precision or a per-layer
    /// plan) and scores it.</summary>
    public ServedScore Serve(MatqArtifact artifact, int bits, bool extraPrecision = false, BitPlan? plan = null)
    {
        using var served = QuantizedModelLoader.LoadServed(artifact, bits, Device, ScalarType.Float32, extraPrecision, plan);
        return new ServedScore(bits, Score(served.Model), served.MeanEffectiveBits, served.MeanPaperBits, served.MeanSparseBits,
            served.ExtraPrecision, served.ExtraBitsText);
    }

    /// <summary>A run label as a file-name stem: letters and digits kept (lower case), everything else '-'.</summary>
    public static string Slug(string label) => new(label.ToLowerInvariant().Select(ch => char.IsLetterOrDigit(ch) ? ch : '-').ToArray());
}
