// Small ids [B,T] → logits [B,T,V] modules for trainer/evaluator tests: a seeded bigram LM with a norm gain
// (so both AdamW groups are exercised) and a parameter-free model that outputs uniform (all-zero) logits.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Tests.Training;

public sealed class BigramLm : nn.Module<Tensor, Tensor>
{
    private readonly Embedding emb;
    private readonly Parameter gain;
    private readonly Linear head;

    /// <summary>Initialized from torch's global generator seeded with <paramref name="seed"/>.</summary>
    public BigramLm(int vocab, int dim, long seed) : base(nameof(BigramLm))
    {
        torch.manual_seed(seed);
        emb = nn.Embedding(vocab, dim);
        gain = new Parameter(ones(dim));
        head = nn.Linear(dim, vocab);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids) => head.call(emb.call(ids) * gain);   // [B,T,D] → [B,T,V]
}

public sealed class UniformLm(int vocab) : nn.Module<Tensor, Tensor>(nameof(UniformLm))
{
    public override Tensor forward(Tensor ids) => zeros(ids.shape[0], ids.shape[1], vocab, device: ids.device);
}

public static class TestText
{
    /// <summary>A deterministic token stream with a learnable bigram structure: mostly t → (3t + 1) mod V, sometimes random.</summary>
    public static int[] Tokens(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        var t = new int[count];
        for (int i = 1; i < count; i++) t[i] = rng.NextDouble() < 0.8 ? (3 * t[i - 1] + 1) % vocab : rng.Next(vocab);
        return t;
    }
}
