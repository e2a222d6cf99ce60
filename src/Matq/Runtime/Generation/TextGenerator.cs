// Autoregressive continuation with any ids [B,T] int64 → logits [B,T,V] module, sampling each next id on the host.
// A LlamaForCausalLM decodes incrementally with its KV cache; any other module reruns on the last ContextLength tokens.
using Matq.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Runtime.Generation;

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
        KvCache? cache = null;
        var llama = model as LlamaForCausalLM;
        try
        {
            using (no_grad())
                while (produced.Count < options.MaxNewTokens)
                {
                    cancel.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    Tensor last;                                                                       // [V] logits of the next token
                    if (llama is null) last = Uncached(model, ids, options.ContextLength, device);
                    else
                    {
                        // The cache holds ids[..^k] for the k ids not yet fed; once the window would overflow, start over
                        // on the last ContextLength ids, which is exactly what the uncached path computes.
                        int pending = cache is null ? ids.Count : ids.Count - (int)cache.Length;
                        if (cache is null || cache.Length + pending > options.ContextLength)
                        {
                            cache?.Dispose();
                            cache = new KvCache(llama.Config.NumLayers);
                            pending = Math.Min(ids.Count, options.ContextLength);
                        }
                        var fresh = new long[pending];
                        for (int i = 0; i < pending; i++) fresh[i] = ids[ids.Count - pending + i];
                        var logits = llama.forward(tensor(fresh, [1, pending], ScalarType.Int64).to(device), cache, cache.Length); // [1, k, V]
                        last = logits[0, pending - 1];
                    }
                    int next = sampler.Next(last.to_type(ScalarType.Float32).cpu().data<float>().ToArray());
                    ids.Add(next);
                    produced.Add(next);
                    onToken?.Invoke(next);
                    if (options.StopIds.Contains(next)) break;
                }
        }
        finally
        {
            cache?.Dispose();
        }
        return produced;
    }

    private static Tensor Uncached(nn.Module<Tensor, Tensor> model, List<int> ids, int contextLength, Device device)
    {
        int n = Math.Min(ids.Count, contextLength);
        var window = new long[n];
        for (int i = 0; i < n; i++) window[i] = ids[ids.Count - n + i];
        return model.call(tensor(window, [1, n], ScalarType.Int64).to(device))[0, n - 1];   // [1, n, V] → [V]
    }
}
