// Named recipes for `matq train lm --preset`: architecture, tokenizer and default hyper-parameters.
// tiny: byte-level, ~1.05M parameters, minutes on 2 CPU cores. small: GPT-2 BPE, ~28.7M parameters (tied embedding), ~1 minute on one H100.
using Matq.Models;
using Matq.Runtime.Models;

namespace Matq.Training;

public enum LmTokenizerChoice { Bytes, Gpt2 }

public sealed record LmPreset(string Name, string Summary, LmTokenizerChoice Tokenizer, Func<int, LlamaConfig> Config, TrainOptions Defaults)
{
    public const int RopeTheta = 10000;

    public static IReadOnlyList<LmPreset> All { get; } =
    [
        new("tiny", "byte-level tokenizer, hidden 128, 4 layers, 4 heads / 2 KV heads, SwiGLU 512, ctx 256 (~1.05M params; CPU)",
            LmTokenizerChoice.Bytes,
            Llama(hidden: 128, intermediate: 512, layers: 4, heads: 4, context: 256, tied: false),
            new TrainOptions
            {
                Steps = 800, BatchSize = 8, ContextLength = 256, Lr = 4e-3, WarmupSteps = 40, WeightDecay = 0.1,
                EvalEvery = 100, EvalWindows = 32, CheckpointEvery = 100, LogEvery = 10,
            }),
        new("small", "GPT-2 BPE tokenizer, hidden 384, 6 layers, 6 heads / 2 KV heads, SwiGLU 1024, ctx 512, tied embedding (~28.7M params; GPU)",
            LmTokenizerChoice.Gpt2,
            Llama(hidden: 384, intermediate: 1024, layers: 6, heads: 6, context: 512, tied: true),
            new TrainOptions
            {
                // SOTU train is only 1.92M GPT-2 tokens: 1600 × 16 × 512 ≈ 7 epochs with the cosine decay gave the best validation loss
                // (H100 sweep: 3000 steps × 32 seqs reached val ppl 4166 from a minimum of 145 at step 600).
                Steps = 1600, BatchSize = 16, ContextLength = 512, Lr = 1.5e-3, WarmupSteps = 100, WeightDecay = 0.1,
                EvalEvery = 100, EvalWindows = 128, CheckpointEvery = 200, LogEvery = 10,
            }),
    ];

    /// <summary>The presets' architecture: 2 KV heads, RMSNorm eps 1e-5, RoPE θ <see cref="RopeTheta"/>; the vocabulary comes from the tokenizer.</summary>
    private static Func<int, LlamaConfig> Llama(int hidden, int intermediate, int layers, int heads, int context, bool tied) =>
        vocab => new LlamaConfig(hiddenSize: hidden, intermediateSize: intermediate, numLayers: layers, numHeads: heads, vocabSize: vocab,
            numKvHeads: 2, rmsNormEps: 1e-5, maxPositionEmbeddings: context, tieWordEmbeddings: tied, ropeTheta: RopeTheta);

    public static IEnumerable<string> Names => All.Select(p => p.Name);

    public static LmPreset Get(string name) =>
        All.FirstOrDefault(p => p.Name == name)
        ?? throw new MatqException($"unknown preset '{name}': use one of {string.Join(", ", Names)}");

    /// <summary>What must match for a resume: the architecture as a compact string.</summary>
    public static string ModelKey(LlamaConfig c, string tokenizer) =>
        $"{tokenizer}/v{c.VocabSize}/h{c.HiddenSize}/m{c.IntermediateSize}/l{c.NumLayers}/a{c.NumHeads}/kv{c.NumKvHeads}/ctx{c.MaxPositionEmbeddings}/tie{c.TieWordEmbeddings}";
}
