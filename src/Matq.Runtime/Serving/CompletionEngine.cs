// Contract: text completions of one .matq artifact on the packed runtime, at a precision chosen per request. Prepare
// checks a request against the model — bits servable by the artifact (1..master), a prompt that encodes to at least one
// token, prompt + max_tokens within the context — and throws CompletionArgumentException naming the field and the fix;
// Run generates with PackedTextGenerator (the `matq generate` path: same tokenizer, sampler and packed kernels, so a
// greedy completion equals its text), streams text through TokenTextStream (stop sequences end the text and are not
// part of it) and reports finish reason "stop" (end-of-text id or a stop sequence) or "length" (max_tokens reached).
using Matq.Runtime.Generation;
using Matq.Runtime.Loading;
using Matq.Runtime.Packed;
using Matq.Runtime.Tokenizers;

namespace Matq.Runtime.Serving;

/// <summary>A request field that cannot be served; <see cref="Param"/> names it and <see cref="Code"/> says why (OpenAI's error "param", "code").</summary>
public sealed class CompletionArgumentException(string param, string message, string code = CompletionArgumentException.InvalidValue) : MatqException(message)
{
    public const string InvalidValue = "invalid_value";
    public const string ContextLengthExceeded = "context_length_exceeded";

    public string Param { get; } = param;
    public string Code { get; } = code;
}

/// <summary>One completion request. Bits null = the server's default precision.</summary>
public sealed record CompletionParameters
{
    public required string Prompt { get; init; }
    public int MaxTokens { get; init; } = 16;
    public SamplingOptions Sampling { get; init; } = new() { Temperature = 0 };
    public IReadOnlyList<string> Stop { get; init; } = [];
    public int? Bits { get; init; }
    /// <summary>Token ids that end the text besides the tokenizer's EOS (a chat model's end-of-turn ids).</summary>
    public IReadOnlyList<int> StopIds { get; init; } = [];
    /// <summary>False for a rendered chat template, which writes its own BOS (transformers tokenizes it so).</summary>
    public bool AddSpecialTokens { get; init; } = true;
    /// <summary>The request field the prompt came from, named in errors ("prompt"; "messages" for chat).</summary>
    public string PromptField { get; init; } = "prompt";
}

/// <summary>A checked request: its prompt ids, ready to run.</summary>
public sealed record PreparedCompletion(CompletionParameters Parameters, int[] PromptIds);

/// <summary>
/// What was generated and at which precision: Precision is the cache key ("2", "plan"), Bits the uniform bits (the plan's
/// default bits for a plan), MeanLayerBits the weight-weighted bits of the decoder linears, WeightBytes the weights held.
/// </summary>
public sealed record CompletionResult(string Text, string FinishReason, int PromptTokens, int CompletionTokens, string Precision,
    int Bits, double MeanLayerBits, long WeightBytes, PackedGenerationStats Stats);

public sealed class CompletionEngine
{
    public const string FinishStop = "stop";
    public const string FinishLength = "length";

    public PackedPrecisionCache Precisions { get; }
    public TextTokenizer Tokenizer { get; }
    /// <summary>Longest prompt + completion, in tokens.</summary>
    public int ContextLength { get; }

    /// <summary>Sequences decoded together in one pass over the weights (continuous batching, BatchedDecoder); 1 = each
    /// request decodes alone on its own session.</summary>
    public int MaxBatch { get; }

    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<PackedPrecision, BatchedDecoder> _decoders = new();

    /// <summary>The batching decoder of <paramref name="precision"/> (null when MaxBatch is 1), for its counters.</summary>
    public BatchedDecoder? DecoderOf(PackedPrecision precision) =>
        MaxBatch > 1 ? _decoders.GetValue(precision, p => new BatchedDecoder(p, MaxBatch)) : null;

    public CompletionEngine(PackedPrecisionCache precisions, TextTokenizer tokenizer, int maxBatch = 1)
    {
        if (maxBatch < 1 || maxBatch > PackedLlamaSession.MaxBatch)
            throw new MatqException($"--batch {maxBatch} is out of range: 1..{PackedLlamaSession.MaxBatch} sequences decoded together");
        MaxBatch = maxBatch;
        Precisions = precisions ?? throw new ArgumentNullException(nameof(precisions));
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        var model = precisions.Default.Model;
        if (tokenizer.VocabSize > model.Config.VocabSize)
            throw new MatqException($"{precisions.ArtifactPath}: the tokenizer has {tokenizer.VocabSize} ids but the model only {model.Config.VocabSize} embeddings");
        if (precisions.Options.ContextLength is int c && c < 1)
            throw new MatqException($"--context {c} is out of range: 1 or more tokens");
        ContextLength = Math.Min(precisions.Options.ContextLength ?? model.MaxPositions, model.MaxPositions);
    }

    /// <summary>Opens a .matq artifact and its tokenizer (the folder its tokenizer reference points into).</summary>
    public static CompletionEngine Open(string artifactPath, PackedServingOptions? options = null, string? tokenizer = null, int maxBatch = 1)
    {
        var precisions = new PackedPrecisionCache(artifactPath, options);
        return new CompletionEngine(precisions, ArtifactSource.LoadArtifactTokenizer(artifactPath, precisions.Metadata, precisions.Default.Model.Config.VocabSize, tokenizer), maxBatch);
    }

    public PreparedCompletion Prepare(CompletionParameters p)
    {
        ArgumentNullException.ThrowIfNull(p);
        int master = Precisions.MasterBits;
        if (p.Bits is int b && (b < 1 || b > master))
            throw new CompletionArgumentException("bits", $"bits {b} cannot be served: this {master}-bit artifact serves bits 1..{master}; give one of them or leave bits out for the default {Precisions.DefaultBits}");
        if (p.MaxTokens < 0)
            throw new CompletionArgumentException("max_tokens", $"max_tokens {p.MaxTokens} is out of range: give 0 or more");
        var ids = Tokenizer.Encode(p.Prompt, p.AddSpecialTokens);
        string what = p.PromptField == "prompt" ? "the prompt" : "the rendered conversation";
        if (ids.Length == 0)
            throw new CompletionArgumentException(p.PromptField, $"{what} encodes to no tokens: give a non-empty {p.PromptField}");
        if (ids.Length > ContextLength)
            throw new CompletionArgumentException(p.PromptField, $"{what} is {ids.Length} tokens, longer than the model's context of {ContextLength} tokens; shorten {what}", CompletionArgumentException.ContextLengthExceeded);
        if (ids.Length + p.MaxTokens > ContextLength)
            throw new CompletionArgumentException("max_tokens", $"{what} ({ids.Length} tokens) plus max_tokens {p.MaxTokens} exceeds the model's context of {ContextLength} tokens; set max_tokens to at most {ContextLength - ids.Length} or shorten {what}", CompletionArgumentException.ContextLengthExceeded);
        var sp = p.Sampling;
        if (!(sp.Temperature >= 0) || double.IsInfinity(sp.Temperature))
            throw new CompletionArgumentException("temperature", $"temperature {sp.Temperature} is out of range: 0 (greedy) or a positive number");
        if (!(sp.TopP > 0 && sp.TopP <= 1))
            throw new CompletionArgumentException("top_p", $"top_p {sp.TopP} is out of range: more than 0, at most 1");
        if (sp.TopK < 0)
            throw new CompletionArgumentException("top_k", $"top_k {sp.TopK} is out of range: 0 (no limit) or more");
        if (p.Stop.Any(string.IsNullOrEmpty)) throw new CompletionArgumentException("stop", "stop holds an empty string: give non-empty stop sequences");
        return new PreparedCompletion(p, ids);
    }

    /// <summary>
    /// Generates (building the precision on first use); <paramref name="onText"/> sees each released piece of text, and
    /// the pieces concatenate to the result's Text. Cancelling stops between tokens (OperationCanceledException).
    /// </summary>
    public CompletionResult Run(PreparedCompletion prepared, Action<string>? onText = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        var p = prepared.Parameters;
        var precision = Precisions.Get(p.Bits);
        cancel.ThrowIfCancellationRequested();
        var stream = new TokenTextStream(Tokenizer, p.Stop);
        var options = new GenerationOptions
        {
            MaxNewTokens = p.MaxTokens, ContextLength = ContextLength, Sampling = p.Sampling,
            StopIds = (Tokenizer.EosId is int eos ? p.StopIds.Append(eos) : p.StopIds).ToHashSet(),
        };
        bool endOfText = false;
        bool OnToken(int id)
        {
            endOfText |= options.StopIds.Contains(id);
            var piece = stream.Add(id);
            if (piece.Length > 0) onText?.Invoke(piece);
            return !stream.Stopped;
        }
        PackedGenerationStats stats;
        if (DecoderOf(precision) is { } decoder)
        {
            try { stats = decoder.Submit(prepared.PromptIds, options, OnToken, cancel).GetAwaiter().GetResult(); }
            catch (TaskCanceledException) { throw new OperationCanceledException(cancel); }
        }
        else
        {
            using var lease = precision.Rent();
            (_, stats) = PackedTextGenerator.GenerateWhile(lease.Session, prepared.PromptIds, options, OnToken, cancel);
        }
        var rest = stream.Finish();
        if (rest.Length > 0) onText?.Invoke(rest);
        var model = precision.Model;
        return new CompletionResult(stream.Text, stream.Stopped || endOfText ? FinishStop : FinishLength, prepared.PromptIds.Length,
            stream.TokenCount, precision.Key, model.Bits, model.MeanLayerBits, model.ResidentWeightBytes, stats);
    }
}
