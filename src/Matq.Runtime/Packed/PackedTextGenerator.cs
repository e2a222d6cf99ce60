// Contract: autoregressive continuation on the packed runtime (no TorchSharp): the prompt is prefilled in chunks, each new
// token decoded with the KV cache and sampled on the host by TokenSampler (the torch engine's sampler, so greedy and
// seeded sampling pick the same ids from the same logits); the caller may stop it after any token (stop sequences).
// A prompt longer than the context is refused; when generation fills the context, the window slides exactly as
// TextGenerator does (the last ContextLength ids are prefilled again).
using System.Diagnostics;
using Matq.Runtime.Generation;

namespace Matq.Runtime.Packed;

/// <summary>Wall-clock split of one generation: prompt prefill and per-token decode (re-prefills after a slide count as decode).</summary>
public sealed record PackedGenerationStats(int PromptTokens, double PrefillSeconds, int DecodedTokens, double DecodeSeconds)
{
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? PromptTokens / PrefillSeconds : 0;
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? DecodedTokens / DecodeSeconds : 0;
}

public static class PackedTextGenerator
{
    /// <summary>Returns only the new ids (at most MaxNewTokens); <paramref name="onToken"/> sees each as it is made.</summary>
    public static (IReadOnlyList<int> Ids, PackedGenerationStats Stats) Generate(PackedLlamaSession session, IReadOnlyList<int> prompt,
        GenerationOptions options, Action<int>? onToken = null, CancellationToken cancel = default) =>
        GenerateWhile(session, prompt, options, id => { onToken?.Invoke(id); return true; }, cancel);

    /// <summary>
    /// As Generate, and stops early once <paramref name="onToken"/> returns false for a new id (that id is kept), e.g. when
    /// the text it completes holds a stop sequence.
    /// </summary>
    public static (IReadOnlyList<int> Ids, PackedGenerationStats Stats) GenerateWhile(PackedLlamaSession session, IReadOnlyList<int> prompt,
        GenerationOptions options, Func<int, bool> onToken, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(onToken);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxNewTokens < 0) throw new MatqException($"--max-tokens {options.MaxNewTokens} is out of range: 0 or more");
        if (prompt.Count == 0) throw new MatqException("the prompt encodes to no tokens: give a non-empty --prompt");
        int context = Math.Min(options.ContextLength, session.ContextLength);
        if (prompt.Count > context)
            throw new MatqException($"the prompt is {prompt.Count} tokens, longer than the model's context of {context} tokens; shorten --prompt");
        var sampler = new TokenSampler(options.Sampling);
        var ids = new List<int>(prompt);
        var produced = new List<int>();
        session.Reset();
        if (options.MaxNewTokens == 0) return (produced, new PackedGenerationStats(prompt.Count, 0, 0, 0));

        var clock = Stopwatch.StartNew();
        var logits = new float[session.Model.Config.VocabSize];
        session.Forward(ids.ToArray(), logits);
        double prefill = clock.Elapsed.TotalSeconds;
        clock.Restart();
        while (true)
        {
            int next = sampler.Next(logits);
            ids.Add(next);
            produced.Add(next);
            bool more = onToken(next);
            if (!more || produced.Count >= options.MaxNewTokens || options.StopIds.Contains(next)) break;
            cancel.ThrowIfCancellationRequested();
            if (session.Length + 1 > context)
            {
                session.Reset();
                session.Forward(ids.GetRange(ids.Count - context, context).ToArray(), logits);
            }
            else session.Forward([next], logits);
        }
        // the first new token comes from the prefill logits; decode time covers the tokens after it
        return (produced, new PackedGenerationStats(prompt.Count, prefill, produced.Count - 1, clock.Elapsed.TotalSeconds));
    }
}
