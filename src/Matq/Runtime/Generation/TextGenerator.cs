// Autoregressive continuation with any ids [B,T] int64 → logits [B,T,V] module: each step reruns the model on the
// last ContextLength tokens (no KV cache; the model keeps none) and samples the next id on the host.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Runtime.Generation;

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>The model's maximum sequence length; longer prompts keep only their last tokens.</summary>
    public int ContextLength { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Generation stops after emitting one of these ids (e.g. end-of-text); it is included in the output.</summary>
    public IReadOnlyCollection<int> StopIds { get; init; } = Array.Empty<int>();
}

public static class TextGenerator
{
    /// <summary>Returns only the new ids (at most MaxNewTokens); <paramref name="onToken"/> sees each as it is made.</summary>
    public static IReadOnlyList<int> Generate(nn.Module<Tensor, Tensor> model, IReadOnlyList<int> prompt, GenerationOptions options,
        Device device, Action<int>? onToken = null, CancellationToken cancel = default)
    {
        if (options.MaxNewTokens < 0) throw new MatqException($"--max-tokens {options.MaxNewTokens} is out of range: 0 or more");
        if (options.ContextLength < 1) throw new ArgumentOutOfRangeException(nameof(options), "context length must be >= 1");
        if (prompt.Count == 0) throw new MatqException("the prompt encodes to no tokens: give a non-empty --prompt");
        var sampler = new TokenSampler(options.Sampling);
        var ids = new List<int>(prompt);
        var produced = new List<int>();
        model.eval();
        using (no_grad())
            while (produced.Count < options.MaxNewTokens)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                int n = Math.Min(ids.Count, options.ContextLength);
                var window = new long[n];
                for (int i = 0; i < n; i++) window[i] = ids[ids.Count - n + i];
                var logits = model.call(tensor(window, [1, n], ScalarType.Int64).to(device));   // [1, n, V]
                var last = logits[0, n - 1].to_type(ScalarType.Float32).cpu();                 // [V]
                int next = sampler.Next(last.data<float>().ToArray());
                ids.Add(next);
                produced.Add(next);
                onToken?.Invoke(next);
                if (options.StopIds.Contains(next)) break;
            }
        return produced;
    }
}
