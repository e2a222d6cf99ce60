// Opens what `matq eval` / `matq generate` score or run: a model that maps ids [B,T] int64 → logits [B,T,V], its
// tokenizer and context length. Today an HF folder (config.json + safetensors + tokenizer files); .matq artifacts
// served at r bits plug in here as another branch returning their own module.
using Matq.Loading;
using Matq.Loading.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Evaluation;

public sealed class LanguageModel(nn.Module<Tensor, Tensor> module, TextTokenizer tokenizer, int contextLength, string description) : IDisposable
{
    public nn.Module<Tensor, Tensor> Module { get; } = module;
    public TextTokenizer Tokenizer { get; } = tokenizer;
    /// <summary>Longest input the model was built for (max_position_embeddings).</summary>
    public int ContextLength { get; } = contextLength;
    public string Description { get; } = description;
    public void Dispose() => Module.Dispose();
}

public static class LanguageModelSource
{
    /// <summary>Loads <paramref name="path"/> on <paramref name="device"/> in fp32; <paramref name="bits"/> is for .matq artifacts.</summary>
    public static LanguageModel Open(string path, Device device, int? bits = null)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new MatqException("--model is empty: give a model folder");
        if (path.EndsWith(".matq", StringComparison.OrdinalIgnoreCase))
            throw new MatqException($"{path}: .matq artifacts are not served by this build yet (give an HF model folder)");
        if (!Directory.Exists(path))
            throw new MatqException(File.Exists(path)
                ? $"--model {path} is a file: give the model folder that holds config.json, the safetensors and tokenizer files"
                : $"--model {path} does not exist");
        if (bits is not null)
            throw new MatqException($"--bits {bits} applies to .matq artifacts; {path} is a float model folder");
        if (!File.Exists(Path.Combine(path, HfLlamaConfig.FileName)))
            throw new MatqException($"--model {path} has no {HfLlamaConfig.FileName}: it is not an HF model folder");
        var tokenizer = TextTokenizer.Load(path);
        var model = LlamaLoader.Load(path, device, ScalarType.Float32);
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new MatqException($"{path}: the tokenizer has {tokenizer.VocabSize} ids but the model only {model.Config.VocabSize} embeddings");
        }
        var c = model.Config;
        var text = $"{Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar))}: {c.Family} {c.ParameterCount():N0} params, " +
                   $"{c.NumLayers} layers, hidden {c.HiddenSize}, vocab {c.VocabSize} ({tokenizer.Name})";
        return new LanguageModel(model, tokenizer, c.SlidingWindow ?? c.MaxPositionEmbeddings, text);
    }
}
