// Contract: `matq serve`'s HTTP endpoint (Kestrel + minimal APIs), bound to 127.0.0.1 only: POST /v1/completions and
// POST /v1/chat/completions (OpenAI completions and chat completions, the conversation rendered by the model's chat
// template; "stream": true answers server-sent events "data: {chunk}" ... "data: [DONE]"; both take "bits"), GET /v1/models,
// GET /v1/models/{id}, GET /health. Bounds: request bodies up to MaxBodyBytes (413), at most MaxConcurrency generations
// at once with MaxQueue more waiting (then 429 with Retry-After), prompt + max_tokens within the context (400, from the
// engine), headers within HeadersTimeout and bodies at Kestrel's minimum rate (408 with Retry-After). Every error is
// {"error": {"message", "type", "param", "code"}} with its status (400, 404 unknown route or model, 405 known route with
// another method, 408, 413, 429, 500), Kestrel's own 408 included (KestrelErrorBody). Generation runs on its own thread
// per request; a client that goes away, or the server stopping, cancels it between tokens, and its slot is freed only
// once it has ended.
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Matq.Runtime.Chat;
using Matq.Runtime.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MinDataRate = Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate;

namespace Matq.Cli.Serving;

public sealed record ServeOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 = any free port (see <see cref="CompletionServer.Port"/>).</summary>
    public int Port { get; init; } = 8080;
    public int MaxConcurrency { get; init; } = 2;
    public int MaxQueue { get; init; } = 8;
    public long MaxBodyBytes { get; init; } = 256 * 1024;
    /// <summary>The model id clients name ("model"); by default the artifact's file name without extension.</summary>
    public string? ModelId { get; init; }
    /// <summary>How long a client may take to send a request's headers, from its first byte (Kestrel's RequestHeadersTimeout).</summary>
    public TimeSpan HeadersTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long a body may arrive slower than 240 bytes/s before it is cut off with 408 (Kestrel's MinRequestBodyDataRate grace).</summary>
    public TimeSpan BodyGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new MatqException($"--port {Port} is out of range: 1..65535, or 0 for any free port");
        if (MaxBodyBytes < 1024) throw new MatqException($"--max-body-bytes {MaxBodyBytes} is too small: at least 1024");
        if (MaxConcurrency < 1) throw new MatqException($"--max-concurrency {MaxConcurrency} is out of range: 1 or more");
        if (MaxQueue < 0) throw new MatqException($"--max-queue {MaxQueue} is out of range: 0 (refuse when busy) or more");
        if (HeadersTimeout <= TimeSpan.Zero) throw new MatqException($"headers timeout {HeadersTimeout} is out of range: more than 0");
        if (BodyGracePeriod <= TimeSpan.FromSeconds(1))
            throw new MatqException($"body grace period {BodyGracePeriod} is out of range: more than 1 s (Kestrel checks rates once a second)");
    }
}

public sealed class CompletionServer : IAsyncDisposable
{
    private static readonly Dictionary<string, string> Routes = new(StringComparer.Ordinal)
    {
        ["/v1/completions"] = "POST", ["/v1/chat/completions"] = "POST", ["/v1/models"] = "GET", ["/health"] = "GET",
    };

    private readonly WebApplication _app;
    private readonly CompletionEngine _engine;
    private readonly ChatEngine _chat;
    private readonly ServeOptions _options;
    private readonly Action<string>? _log;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public AdmissionGate Admission { get; }
    public string ModelId { get; }
    public int Port { get; private set; }
    public Uri BaseAddress => new($"http://127.0.0.1:{Port}/");

    private CompletionServer(CompletionEngine engine, ChatEngine? chat, ServeOptions options, Action<string>? log)
    {
        options.Validate();
        _engine = engine;
        _chat = chat ?? new ChatEngine(engine, null, "this server was started without a chat template; restart matq serve with --template FILE, "
            + "or --tokenizer DIR whose tokenizer_config.json has a chat_template");
        _options = options;
        _log = log;
        Admission = new AdmissionGate(options.MaxConcurrency, options.MaxQueue);
        ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(engine.Precisions.ArtifactPath);

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, options.Port, listen => listen.Use(KestrelErrorBody.Middleware(KestrelBody)));
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.Limits.RequestHeadersTimeout = options.HeadersTimeout;
            k.Limits.MinRequestBodyDataRate = new MinDataRate(240, options.BodyGracePeriod);
        });
        builder.Services.AddRoutingCore();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.Services.AddSingleton<IHostLifetime, EmbeddedLifetime>();   // the caller decides when to stop (Ctrl+C in the verb)
        _app = builder.Build();
        _app.MapPost("/v1/completions", ctx => Guard(ctx, CompleteAsync));
        _app.MapPost("/v1/chat/completions", ctx => Guard(ctx, ChatAsync));
        _app.MapGet("/v1/models", ctx => Guard(ctx, c => WriteJson(c, 200, new { @object = "list", data = new[] { ModelObject() } })));
        _app.MapGet("/v1/models/{id}", ctx => Guard(ctx, c => (string?)c.Request.RouteValues["id"] == ModelId
            ? WriteJson(c, 200, ModelObject())
            : throw new ApiException(404, $"the model '{c.Request.RouteValues["id"]}' does not exist: this server serves '{ModelId}'", param: "model", code: "model_not_found")));
        _app.MapGet("/health", ctx => Guard(ctx, c => WriteJson(c, 200, new
        {
            status = "ok", model = ModelId, active = Admission.Active, queued = Admission.Waiting,
            max_concurrency = Admission.MaxConcurrent, max_queue = Admission.MaxQueue, cached_precisions = _engine.Precisions.CachedKeys,
        })));
        _app.MapFallback(ctx => Guard(ctx, Fallback));
    }

    /// <summary>
    /// Binds 127.0.0.1:Port and starts answering; <see cref="Port"/> then holds the bound port. Without <paramref name="chat"/>
    /// (or with one that has no template) /v1/chat/completions answers 400 saying how to give the model a chat template.
    /// </summary>
    public static async Task<CompletionServer> StartAsync(CompletionEngine engine, ServeOptions? options = null, Action<string>? log = null, ChatEngine? chat = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        if (chat is not null && chat.Completions != engine) throw new ArgumentException("the chat engine must wrap the same completion engine", nameof(chat));
        var server = new CompletionServer(engine, chat, options ?? new ServeOptions(), log);
        try
        {
            await server._app.StartAsync().ConfigureAwait(false);
        }
        catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException || e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            await server._app.DisposeAsync().ConfigureAwait(false);
            throw new MatqException($"--port {server._options.Port}: cannot listen on 127.0.0.1:{server._options.Port} ({e.Message.TrimEnd('.')}); pick another --port, or 0 for any free port");
        }
        var addresses = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        server.Port = new Uri(addresses.First()).Port;
        return server;
    }

    /// <summary>Stops listening, cancels running generations and waits (up to 5 s) for their requests to end.</summary>
    public async Task StopAsync() => await _app.StopAsync().ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private object ModelObject()
    {
        var p = _engine.Precisions;
        return new
        {
            id = ModelId,
            @object = "model",
            created = _created,
            owned_by = "matq",
            matq = new
            {
                algorithm = p.Metadata.Algorithm,
                master_bits = p.MasterBits,
                trained_bits = p.Metadata.TrainedBits,
                default_bits = p.DefaultBits,
                plan = p.Options.Plan is not null,
                servable_bits = Enumerable.Range(1, p.MasterBits).ToArray(),
                cached_precisions = p.CachedKeys,
                max_precisions = p.Options.Capacity,
                context_length = _engine.ContextLength,
                chat_template = _chat.Template is not null,
            },
        };
    }

    // ---- POST /v1/completions, POST /v1/chat/completions ----

    /// <summary>The response objects of one endpoint: id prefix, non-stream body, and stream chunks (an optional first one).</summary>
    private sealed record Shapes(string Route, string IdPrefix, Func<string, long, string, CompletionResult, object> Body,
        Func<string, long, string, object>? First, Func<string, long, string, string, object> Piece,
        Func<string, long, string, CompletionResult, object> Final, Func<string, long, string, CompletionResult, object> Usage);

    private static readonly Shapes TextShapes = new("/v1/completions", "cmpl-", OpenAiProtocol.Completion, null, OpenAiProtocol.Chunk,
        OpenAiProtocol.FinalChunk, OpenAiProtocol.UsageChunk);

    private static readonly Shapes ChatShapes = new("/v1/chat/completions", "chatcmpl-", OpenAiChatProtocol.Completion, OpenAiChatProtocol.RoleChunk,
        OpenAiChatProtocol.TextChunk, OpenAiChatProtocol.FinalChunk, OpenAiChatProtocol.UsageChunk);

    private async Task CompleteAsync(HttpContext ctx)
    {
        var request = OpenAiProtocol.ParseCompletion(await ReadBodyAsync(ctx).ConfigureAwait(false), ModelId);
        await GenerateAsync(ctx, TextShapes, () => _engine.Prepare(request.Parameters), request.Parameters.Bits, request.Stream, request.IncludeUsage).ConfigureAwait(false);
    }

    private async Task ChatAsync(HttpContext ctx)
    {
        var request = OpenAiChatProtocol.ParseChat(await ReadBodyAsync(ctx).ConfigureAwait(false), ModelId);
        if (_chat.Template is null) throw new ApiException(400, _chat.MissingTemplate!, param: "messages", code: "chat_template_missing");
        await GenerateAsync(ctx, ChatShapes, () => _chat.Prepare(request.Parameters), request.Parameters.Bits, request.Stream, request.IncludeUsage).ConfigureAwait(false);
    }

    private async Task GenerateAsync(HttpContext ctx, Shapes shapes, Func<PreparedCompletion> prepare, int? bits, bool stream, bool includeUsage)
    {
        var clock = Stopwatch.StartNew();
        PreparedCompletion prepared;
        try
        {
            prepared = prepare();
        }
        catch (CompletionArgumentException e)
        {
            throw new ApiException(400, e.Message, param: e.Param, code: e.Code);
        }
        var stopping = ctx.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, stopping);
        using var slot = await Admission.TryEnterAsync(cancel.Token).ConfigureAwait(false)
            ?? throw new ApiException(429, $"the server is busy: {Admission.MaxConcurrent} requests are generating and {Admission.MaxQueue} waiting (--max-concurrency, --max-queue); retry shortly",
                ApiException.RateLimit, code: "rate_limit_exceeded");
        // Build (or find) the precision before answering, so a failure there still gets its status code.
        var precision = await Task.Run(() => _engine.Precisions.Get(bits), cancel.Token).ConfigureAwait(false);
        string id = shapes.IdPrefix + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        CompletionResult result = stream
            ? await StreamAsync(ctx, shapes, prepared, includeUsage, id, created, cancel).ConfigureAwait(false)
            : await Generate(prepared, null, cancel.Token).ConfigureAwait(false);
        if (!stream)
            await WriteJson(ctx, 200, shapes.Body(id, created, ModelId, result)).ConfigureAwait(false);
        _log?.Invoke($"POST {shapes.Route} 200 bits={precision.Key}{(stream ? " stream" : "")} {result.PromptTokens}+{result.CompletionTokens} tokens "
            + $"{result.FinishReason} {clock.Elapsed.TotalSeconds:F2} s (decode {result.Stats.DecodeTokensPerSecond:F0} tok/s)");
    }

    // The generation on a thread of its own (CPU-bound for the whole request; the thread pool stays free for I/O).
    private Task<CompletionResult> Generate(PreparedCompletion prepared, Action<string>? onText, CancellationToken cancel) =>
        Task.Factory.StartNew(() => _engine.Run(prepared, onText, cancel), cancel, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private async Task<CompletionResult> StreamAsync(HttpContext ctx, Shapes shapes, PreparedCompletion prepared, bool includeUsage, string id, long created,
        CancellationTokenSource cancel)
    {
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var generation = Generate(prepared, piece => pieces.Writer.TryWrite(piece), cancel.Token);
        _ = generation.ContinueWith(_ => pieces.Writer.TryComplete(), TaskScheduler.Default);
        var response = ctx.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        try
        {
            await response.StartAsync(cancel.Token).ConfigureAwait(false);
            if (shapes.First is not null) await WriteEvent(response, shapes.First(id, created, ModelId), cancel.Token).ConfigureAwait(false);
            await foreach (var piece in pieces.Reader.ReadAllAsync(cancel.Token).ConfigureAwait(false))
                await WriteEvent(response, shapes.Piece(id, created, ModelId, piece), cancel.Token).ConfigureAwait(false);
            var result = await generation.ConfigureAwait(false);   // a failure is reported by Guard as an error event
            await WriteEvent(response, shapes.Final(id, created, ModelId, result), cancel.Token).ConfigureAwait(false);
            if (includeUsage) await WriteEvent(response, shapes.Usage(id, created, ModelId, result), cancel.Token).ConfigureAwait(false);
            await response.WriteAsync("data: [DONE]\n\n", cancel.Token).ConfigureAwait(false);
            await response.Body.FlushAsync(cancel.Token).ConfigureAwait(false);
            return result;
        }
        finally
        {
            // the slot is freed only after the generation has really ended (a disconnect cancels it between tokens)
            cancel.Cancel();
            try { await generation.ConfigureAwait(false); } catch { /* rethrown above to Guard, or cancelled */ }
        }
    }

    private static async Task WriteEvent(HttpResponse response, object payload, CancellationToken cancel)
    {
        var json = JsonSerializer.Serialize(payload, OpenAiProtocol.Json);
        await response.WriteAsync("data: " + json + "\n\n", Encoding.UTF8, cancel).ConfigureAwait(false);
        await response.Body.FlushAsync(cancel).ConfigureAwait(false);
    }

    private async Task<byte[]> ReadBodyAsync(HttpContext ctx)
    {
        long max = _options.MaxBodyBytes;
        if (ctx.Request.ContentLength is long declared && declared > max) throw TooLarge(declared);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > max) throw TooLarge(null);
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private ApiException TooLarge(long? bytes) => new(413,
        $"the request body is {(bytes is long b ? $"{b} bytes" : "larger than the limit")}, more than the server's limit of {_options.MaxBodyBytes} bytes; "
        + "shorten the prompt, or restart matq serve with a larger --max-body-bytes", code: "request_too_large");

    // ---- routing leftovers and errors ----

    private Task Fallback(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "/";
        string? allowed = Routes.TryGetValue(path, out var m) ? m : path.StartsWith("/v1/models/", StringComparison.Ordinal) ? "GET" : null;
        if (allowed is not null)
        {
            ctx.Response.Headers.Allow = allowed;
            throw new ApiException(405, $"{ctx.Request.Method} {path} is not allowed: use {allowed} {path}", code: "method_not_allowed");
        }
        throw new ApiException(404, $"unknown request URL: {ctx.Request.Method} {path}; matq serve answers POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health",
            code: "unknown_url");
    }

    private async Task Guard(HttpContext ctx, Func<HttpContext, Task> handler)
    {
        try
        {
            await handler(ctx).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            await WriteError(ctx, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)   // Kestrel's own limits (a chunked body past MaxRequestBodySize, a body too slow)
        {
            await WriteError(ctx, e.StatusCode switch
            {
                413 => TooLarge(null),
                408 => TimedOut("the request body arrived too slowly (under 240 bytes/s after the first "
                    + $"{_options.BodyGracePeriod.TotalSeconds:0.#} s)"),
                _ => new ApiException(e.StatusCode, e.Message),
            }).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            _log?.Invoke($"{ctx.Request.Method} {ctx.Request.Path} cancelled: the client went away");
        }
        catch (OperationCanceledException)
        {
            await WriteError(ctx, new ApiException(503, "the server is stopping; retry against a running server", ApiException.Server, code: "server_stopping")).ConfigureAwait(false);
        }
        catch (MatqException e)
        {
            await WriteError(ctx, new ApiException(400, e.Message)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await WriteError(ctx, new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message}", ApiException.Server)).ConfigureAwait(false);
        }
    }

    private async Task WriteError(HttpContext ctx, ApiException e)
    {
        _log?.Invoke($"{ctx.Request.Method} {ctx.Request.Path} {e.Status} {e.Message}");
        try
        {
            if (!ctx.Response.HasStarted)
            {
                if (e.Status is 429 or 408) ctx.Response.Headers.RetryAfter = "1";
                await WriteJson(ctx, e.Status, e.Body()).ConfigureAwait(false);
            }
            else if (ctx.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true)
                await WriteEvent(ctx.Response, e.Body(), ctx.RequestAborted).ConfigureAwait(false);   // mid-stream: an error event, no [DONE]
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { }
        catch (IOException) { }
    }

    // With Content-Length the body is whole even when Kestrel then closes the connection (after a rejected request body).
    private static Task WriteJson(HttpContext ctx, int status, object payload)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(payload, OpenAiProtocol.Json);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        ctx.Response.ContentLength = bytes.Length;
        return ctx.Response.Body.WriteAsync(bytes).AsTask();
    }

    private static ApiException TimedOut(string what) =>
        new(408, $"{what}; the server stopped waiting. Send the whole request promptly, then retry", code: "request_timeout");

    // Kestrel's own 400 / 408 / 431 (the app never saw the request), made JSON by KestrelErrorBody.
    private byte[]? KestrelBody(int status) => status switch
    {
        408 => JsonSerializer.SerializeToUtf8Bytes(TimedOut(
            $"the request headers did not all arrive within {_options.HeadersTimeout.TotalSeconds:0.#} s of its first byte").Body(), OpenAiProtocol.Json),
        400 => JsonSerializer.SerializeToUtf8Bytes(new ApiException(400,
            "the request line or a header is not valid HTTP/1.1 (refused before it reached the API); send a well-formed request",
            code: "malformed_request").Body(), OpenAiProtocol.Json),
        431 => JsonSerializer.SerializeToUtf8Bytes(new ApiException(431,
            "the request headers are larger than the server accepts; send fewer or shorter headers", code: "request_headers_too_large").Body(), OpenAiProtocol.Json),
        _ => null,
    };

    /// <summary>No console hooks: Ctrl+C and SIGTERM belong to whoever hosts the server.</summary>
    private sealed class EmbeddedLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
