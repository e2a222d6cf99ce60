// Contract: the small app-facing API of the runtime package. MatqModel.Open takes a .matq artifact (or an HF float
// model folder, RTN-quantized to an int8 master at open into a temporary artifact deleted on Dispose) and serves it on the
// packed CPU runtime at the default precision (Bits, or a per-layer Plan) with any other bits 1..master per call. It
// wraps CompletionEngine (tokenize, generate, stream: the `matq generate` / `matq serve` path, same sampler and kernels)
// and ChatEngine (the model's chat template from tokenizer_config.json, or ChatTemplatePath), and hands out an
// IChatClient (MatqChatClient). Thread-safe as CompletionEngine is: concurrent calls rent separate sessions.
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Matq.Runtime.Chat;
using Matq.Runtime.Loading;
using Matq.Runtime.Packed;
using Matq.Runtime.Plans;
using Matq.Runtime.Serving;
using Matq.Runtime.Tokenizers;

namespace Matq.Runtime;

/// <summary>How <see cref="MatqModel.Open"/> serves a model. Every field has the default `matq serve` uses.</summary>
public sealed record MatqModelOptions
{
    /// <summary>Bits served when a call names none (1..master); null = the master bits (or the plan's default).</summary>
    public int? Bits { get; init; }
    /// <summary>A per-layer bit plan (`matq plan`), served when a call names no bits; or give <see cref="PlanPath"/>.</summary>
    public BitPlan? Plan { get; init; }
    /// <summary>A plan file written by `matq plan`.</summary>
    public string? PlanPath { get; init; }
    /// <summary>The tokenizer folder; null = the one the artifact records (for an HF folder: the folder itself).</summary>
    public string? TokenizerFolder { get; init; }
    /// <summary>A Jinja chat template file; null = the tokenizer folder's chat_template (tokenizer_config.json).</summary>
    public string? ChatTemplatePath { get; init; }
    /// <summary>Bits of the LM head (null = as stored); 8 as `matq serve` and `matq generate` default.</summary>
    public int? HeadBits { get; init; } = 8;
    /// <summary>Threads per generation; -1 = all cores.</summary>
    public int Threads { get; init; } = -1;
    /// <summary>Most precisions held at once (each built on first use from the master codes).</summary>
    public int MaxPrecisions { get; init; } = 4;
    /// <summary>For an HF float folder only: input columns per RTN group of the int8 master (a multiple of 32; 0 = per output channel).</summary>
    public int GroupSize { get; init; } = 32;
}

/// <summary>One piece of a streamed completion: text as it is released, and the result with the last piece.</summary>
public sealed record CompletionChunk(string Text, CompletionResult? Result);

public sealed class MatqModel : IDisposable
{
    private readonly string? _tempDir;
    private int _disposed;

    /// <summary>The model's name: the artifact's file name, or the HF folder's name + "-rtn8".</summary>
    public string Id { get; }
    /// <summary>The .matq served (a temporary one for an HF folder).</summary>
    public string ArtifactPath => Completions.Precisions.ArtifactPath;
    public CompletionEngine Completions { get; }
    public ChatEngine Chat { get; }
    public TextTokenizer Tokenizer => Completions.Tokenizer;
    public int MasterBits => Completions.Precisions.MasterBits;
    /// <summary>Bits served when a call names none.</summary>
    public int DefaultBits => Completions.Precisions.DefaultBits;
    public bool HasPlan => Completions.Precisions.Options.Plan is not null;
    public int ContextLength => Completions.ContextLength;

    private MatqModel(string id, CompletionEngine completions, ChatEngine chat, string? tempDir)
    {
        Id = id;
        Completions = completions;
        Chat = chat;
        _tempDir = tempDir;
    }

    /// <summary>
    /// Opens a .matq artifact, or an HF float model folder (quantized to an int8 RTN master at open, without TorchSharp).
    /// Problems (missing file, bits outside 1..master, a plan for another model, no tokenizer) are one-line MatqExceptions.
    /// </summary>
    public static MatqModel Open(string path, MatqModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new MatqModelOptions();
        if (options.Plan is not null && options.PlanPath is not null)
            throw new MatqException("MatqModelOptions has both Plan and PlanPath: give one");
        var plan = options.Plan ?? (options.PlanPath is null ? null : BitPlan.Load(options.PlanPath));
        string? tempDir = null, tokenizer = options.TokenizerFolder, artifact = path, id;
        if (FloatModelArtifact.IsFloatModelFolder(path))
        {
            id = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(path))) + "-rtn8";
            tempDir = Directory.CreateTempSubdirectory("matq-model-").FullName;
            artifact = Path.Combine(tempDir, id + ".matq");
            tokenizer ??= path;
        }
        else if (Directory.Exists(path))
            throw new MatqException($"{SafeText.Quote(path)} is a folder without config.json: give a .matq artifact or an HF model folder");
        else if (!File.Exists(path))
            throw new MatqException($"{SafeText.Quote(path)} does not exist: give a .matq artifact or an HF model folder");
        else id = Path.GetFileNameWithoutExtension(path);
        try
        {
            if (tempDir is not null) FloatModelArtifact.WriteRtn8(path, artifact, options.GroupSize);
            else if (!ArtifactSource.IsArtifactFile(path))
                throw new MatqException($"{SafeText.Quote(path)} is not a .matq artifact: give one written by `matq quantize`, or an HF model folder");
            var serving = new PackedServingOptions
            {
                // a plan's default bits serve its unlisted layers (as `--plan` does); Bits must agree with it
                DefaultBits = plan is null ? options.Bits : plan.ResolveBits(options.Bits, plan.Origin ?? "(MatqModelOptions.Plan)"), Plan = plan, HeadBits = options.HeadBits, Threads = options.Threads, Capacity = options.MaxPrecisions,
            };
            var completions = CompletionEngine.Open(artifact, serving, tokenizer);
            return new MatqModel(id, completions, OpenChat(path, completions, tokenizer, options.ChatTemplatePath), tempDir);
        }
        catch
        {
            if (tempDir is not null) Directory.Delete(tempDir, recursive: true);
            throw;
        }
    }

    // The chat template as ChatEngine.Open finds it, with the fix for a missing one named in this API's terms.
    private static ChatEngine OpenChat(string path, CompletionEngine completions, string? tokenizer, string? templateFile)
    {
        if (templateFile is not null)
        {
            if (!File.Exists(templateFile))
                throw new MatqException($"MatqModelOptions.ChatTemplatePath {SafeText.Quote(templateFile)} does not exist: give a Jinja chat-template file");
            return ChatEngine.Open(completions, tokenizer, templateFile);
        }
        var p = completions.Precisions;
        string? folder = tokenizer ?? ArtifactSource.ArtifactTokenizer(p.ArtifactPath, p.Metadata).Folder;
        var (template, problem) = folder is null ? (null, "it has no tokenizer folder") : ChatTemplate.FromFolder(folder);
        return new ChatEngine(completions, template, template is not null ? null
            : $"{SafeText.Quote(path)} has no chat template ({problem}): set MatqModelOptions.ChatTemplatePath to a Jinja chat-template file, "
              + "or TokenizerFolder to a folder whose tokenizer_config.json has a chat_template");
    }

    /// <summary>Token ids of <paramref name="text"/> (with the tokenizer's BOS when it adds one and <paramref name="addSpecialTokens"/>).</summary>
    public int[] Tokenize(string text, bool addSpecialTokens = true) => Tokenizer.Encode(text, addSpecialTokens);

    public string Detokenize(ReadOnlySpan<int> ids, bool skipSpecialTokens = true) => Tokenizer.Decode(ids, skipSpecialTokens);

    /// <summary>
    /// A completion of <paramref name="parameters"/>.Prompt at its Bits (null = the default precision); <paramref name="onText"/>
    /// sees each released piece. A field that cannot be served is a CompletionArgumentException naming it.
    /// </summary>
    public CompletionResult Generate(CompletionParameters parameters, Action<string>? onText = null, CancellationToken cancel = default) =>
        Completions.Run(Completions.Prepare(parameters), onText, cancel);

    /// <summary><see cref="Generate"/> on the thread pool.</summary>
    public Task<CompletionResult> GenerateAsync(CompletionParameters parameters, CancellationToken cancel = default)
    {
        var prepared = Completions.Prepare(parameters);   // argument errors throw here, not inside the task
        return Task.Run(() => Completions.Run(prepared, null, cancel), cancel);
    }

    /// <summary>The completion as it is generated: text pieces, then one chunk carrying the result (its Text may be empty).</summary>
    public IAsyncEnumerable<CompletionChunk> StreamAsync(CompletionParameters parameters, CancellationToken cancel = default) =>
        Stream(Completions, Completions.Prepare(parameters), cancel);

    /// <summary>A chat client over this model (the model stays owned by the caller).</summary>
    public MatqChatClient AsChatClient() => new(this);

    // Runs a prepared completion on the thread pool, handing its pieces over a channel; the result comes last.
    internal static async IAsyncEnumerable<CompletionChunk> Stream(CompletionEngine engine, PreparedCompletion prepared,
        [EnumeratorCancellation] CancellationToken cancel = default)
    {
        var channel = Channel.CreateUnbounded<CompletionChunk>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var run = Task.Run(() =>
        {
            try
            {
                var result = engine.Run(prepared, piece => channel.Writer.TryWrite(new CompletionChunk(piece, null)), stop.Token);
                channel.Writer.TryWrite(new CompletionChunk("", result));
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None);
        try
        {
            await foreach (var chunk in channel.Reader.ReadAllAsync(cancel).ConfigureAwait(false))
                yield return chunk;
        }
        finally
        {
            stop.Cancel();   // a consumer that stops early ends the generation between tokens
            try { await run.ConfigureAwait(false); } catch (OperationCanceledException) { }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_tempDir is not null && Directory.Exists(_tempDir)) Directory.Delete(_tempDir, recursive: true);
    }
}
