// Opens what `matq eval` / `matq generate` score or run: a model that maps ids [B,T] int64 → logits [B,T,V], its
// tokenizer and context length. What a path is (HF folder, .safetensors file, .matq by content) is ModelSource's call.
using Matq.Runtime.Loading;
using Matq.Runtime.Plans;
using Matq.Runtime.Tokenizers;
using static TorchSharp.torch;

namespace Matq.Loading;

public sealed class LanguageModel(nn.Module<Tensor, Tensor> module, TextTokenizer tokenizer, int contextLength, string description,
    ServedModel? served = null) : IDisposable
{
    public nn.Module<Tensor, Tensor> Module { get; } = module;
    public TextTokenizer Tokenizer { get; } = tokenizer;
    /// <summary>Longest input the model was built for (max_position_embeddings, or the sliding window).</summary>
    public int ContextLength { get; } = contextLength;
    public string Description { get; } = description;
    /// <summary>For a .matq: the bits it is served at, per layer; null for float models.</summary>
    public ServedModel? Served { get; } = served;
    public void Dispose() => Module.Dispose();
}

public static class LanguageModelSource
{
    /// <summary>
    /// Loads <paramref name="path"/> on <paramref name="device"/> in fp32 through <see cref="ModelSource.Open"/>:
    /// a float model (bits/plan/extra precision refused) or a .matq served at <paramref name="bits"/> (null = master
    /// bits) with per-layer overrides from <paramref name="plan"/>; the tokenizer comes from the opened model's folder.
    /// </summary>
    public static LanguageModel Open(string path, Device device, int? bits = null, BitPlan? plan = null,
        bool extraPrecision = false, string? tokenizer = null)
    {
        // ModelSource decides what the path is; this only words the commonest mistake (a folder that is no model) for eval.
        if (Directory.Exists(path) && !File.Exists(Path.Combine(path, HfLlamaConfig.FileName)))
            throw new MatqException($"--model {path} has no {HfLlamaConfig.FileName}: it is not an HF model folder (give a model folder or a .matq artifact)");
        var opened = ModelSource.Open(path, bits, device, ScalarType.Float32, extraPrecision, plan, tokenizer);
        return Wrap(opened, path);
    }

    /// <summary>Opens <paramref name="path"/> as <paramref name="request"/> asks (the plan file is read here).</summary>
    public static LanguageModel Open(string path, Device device, ServingRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (bits, plan) = request.Resolve();
        return Open(path, device, bits, plan, request.ExtraPrecision, request.Tokenizer);
    }

    private static LanguageModel Wrap(OpenedModel opened, string path)
    {
        try
        {
            var tokenizer = TextTokenizer.Load(opened.RequireTokenizerFolder());
            var c = opened.Model.Config;
            if (tokenizer.VocabSize > c.VocabSize)
                throw new MatqException($"{path}: the tokenizer has {tokenizer.VocabSize} ids but the model only {c.VocabSize} embeddings");
            var text = $"{opened.Describe()}, hidden {c.HiddenSize}, vocab {c.VocabSize} ({tokenizer.Name})" + PlanNote(opened.Served);
            return new LanguageModel(opened.Model, tokenizer, c.SlidingWindow ?? c.MaxPositionEmbeddings, text, opened.Served);
        }
        catch
        {
            opened.Dispose();
            throw;
        }
    }

    // "; plan: 3 layers at other bits (mean 3.25 bits/weight)" when a plan moved some layers off the default bits.
    private static string PlanNote(ServedModel? served)
    {
        if (served is null) return "";
        int moved = served.Layers.Count(l => l.Bits != served.Bits);
        return moved == 0 ? "" : $"; plan: {moved} of {served.Layers.Count} layers at other bits, mean {served.MeanEffectiveBits:F3} bits/weight";
    }
}
