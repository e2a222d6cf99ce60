// Contract: Microsoft.Extensions.AI's IChatClient over a MatqModel. Messages (system/user/assistant/tool text; ChatOptions
// .Instructions first as a system message) are rendered by the model's chat template (ChatEngine) and generated on the
// packed runtime. ChatOptions map as the OpenAI API does in `matq serve`: Temperature (default 1; 0 = greedy), TopP,
// TopK (default 0 = all), MaxOutputTokens (default: the rest of the context), StopSequences (end the reply, not part of
// it), Seed (default random). AdditionalProperties["bits"] picks the precision per call (1..master, the extension only
// matq has) and ["chat_template_kwargs"] passes template variables. What matq cannot honour (tools, penalties, a JSON
// response format, non-text content, another model id) is a NotSupportedException in one line, never silently ignored; a
// value out of range is a CompletionArgumentException naming the field. Responses carry FinishReason (stop or length),
// Usage, and AdditionalProperties "bits", "precision", "mean_layer_bits" and "tokens_per_second" as served.
using System.Runtime.CompilerServices;
using System.Text.Json;
using Matq.Runtime.Chat;
using Matq.Runtime.Generation;
using Matq.Runtime.Serving;
using Microsoft.Extensions.AI;

namespace Matq.Runtime;

public sealed class MatqChatClient : IChatClient
{
    /// <summary>ChatOptions.AdditionalProperties key of the per-call precision (an integer 1..master bits).</summary>
    public const string BitsKey = "bits";
    /// <summary>ChatOptions.AdditionalProperties key of extra chat-template variables (a dictionary, e.g. enable_thinking).</summary>
    public const string TemplateArgumentsKey = "chat_template_kwargs";

    private readonly bool _ownsModel;

    public MatqModel Model { get; }
    public ChatClientMetadata Metadata { get; }

    /// <param name="model">The model served.</param>
    /// <param name="ownsModel">Dispose the model with the client.</param>
    public MatqChatClient(MatqModel model, bool ownsModel = false)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        _ownsModel = ownsModel;
        Metadata = new ChatClientMetadata("matq", null, model.Id);
    }

    /// <summary>Opens <paramref name="path"/> (a .matq or an HF folder) as <see cref="MatqModel.Open"/> does; the client owns the model.</summary>
    public static MatqChatClient Open(string path, MatqModelOptions? options = null) => new(MatqModel.Open(path, options), ownsModel: true);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var prepared = Prepare(messages, options);
        var result = await Task.Run(() => Model.Chat.Completions.Run(prepared, null, cancellationToken), cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text) { MessageId = NewId("msg") })
        {
            ResponseId = NewId("chatcmpl"),
            ModelId = Model.Id,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReason(result),
            Usage = Usage(result),
            AdditionalProperties = Served(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var prepared = Prepare(messages, options);
        string responseId = NewId("chatcmpl"), messageId = NewId("msg");
        var created = DateTimeOffset.UtcNow;
        await foreach (var chunk in MatqModel.Stream(Model.Chat.Completions, prepared, cancellationToken).ConfigureAwait(false))
        {
            if (chunk.Result is not { } result)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, chunk.Text)
                {
                    ResponseId = responseId, MessageId = messageId, ModelId = Model.Id, CreatedAt = created,
                };
                continue;
            }
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ResponseId = responseId, MessageId = messageId, ModelId = Model.Id, CreatedAt = created,
                FinishReason = FinishReason(result), AdditionalProperties = Served(result),
            };
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(Model)) return Model;
        return null;
    }

    public void Dispose()
    {
        if (_ownsModel) Model.Dispose();
    }

    /// <summary>The checked completion a chat call runs: the rendered conversation and the options as sampling, stops and bits.</summary>
    public PreparedCompletion Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<TemplateDict>();
        if (!string.IsNullOrEmpty(options?.Instructions)) list.Add(Message("system", options.Instructions));
        foreach (var m in messages) list.Add(ToTemplate(m));
        CheckSupported(options);
        int? seed = options?.Seed switch
        {
            null => null,
            long s when s is >= int.MinValue and <= int.MaxValue => (int)s,
            long s => throw new CompletionArgumentException("seed", $"ChatOptions.Seed {s} is out of range: give a seed that fits a 32-bit integer"),
        };
        return Model.Chat.Prepare(new ChatParameters
        {
            Messages = list,
            MaxTokens = options?.MaxOutputTokens,
            Sampling = new SamplingOptions
            {
                Temperature = options?.Temperature ?? 1.0,
                TopP = options?.TopP ?? 1.0,
                TopK = options?.TopK ?? 0,
                Seed = seed ?? Random.Shared.Next(),
            },
            Stop = options?.StopSequences?.ToList() ?? [],
            Bits = Bits(options),
            TemplateArguments = TemplateArguments(options),
        });
    }

    /// <summary>The per-call bits of <paramref name="options"/> (AdditionalProperties["bits"]), or null for the model's default.</summary>
    public static int? Bits(ChatOptions? options)
    {
        if (options?.AdditionalProperties is not { } props || !props.TryGetValue(BitsKey, out var value) || value is null) return null;
        int? bits = value switch
        {
            int i => i,
            long l when l is >= int.MinValue and <= int.MaxValue => (int)l,
            short s => s,
            byte b => b,
            sbyte b => b,
            string text when int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var i) => i,
            JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetInt32(out var i) => i,
            double d when d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue => (int)d,
            _ => null,
        };
        return bits ?? throw new CompletionArgumentException(BitsKey,
            $"ChatOptions.AdditionalProperties[\"bits\"] = {SafeText.Quote(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "")} ({value.GetType().Name}) is not a whole number: give an integer such as 2, 4 or 8");
    }

    private static IReadOnlyDictionary<string, object?>? TemplateArguments(ChatOptions? options)
    {
        if (options?.AdditionalProperties is not { } props || !props.TryGetValue(TemplateArgumentsKey, out var value) || value is null) return null;
        return value switch
        {
            IReadOnlyDictionary<string, object?> d => d,
            IDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => kv.Value),
            JsonElement { ValueKind: JsonValueKind.Object } e => e.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value),
            _ => throw new CompletionArgumentException(TemplateArgumentsKey,
                $"ChatOptions.AdditionalProperties[\"{TemplateArgumentsKey}\"] is a {value.GetType().Name}: give a dictionary of template variables such as {{\"enable_thinking\": false}}"),
        };
    }

    private void CheckSupported(ChatOptions? options)
    {
        if (options is null) return;
        if (options.Tools is { Count: > 0 })
            throw new NotSupportedException("MatqChatClient does not call tools: leave ChatOptions.Tools empty");
        if (options.FrequencyPenalty is not null || options.PresencePenalty is not null)
            throw new NotSupportedException("MatqChatClient has no frequency or presence penalty: leave ChatOptions.FrequencyPenalty and PresencePenalty unset");
        if (options.ResponseFormat is ChatResponseFormatJson)
            throw new NotSupportedException("MatqChatClient cannot constrain replies to JSON: leave ChatOptions.ResponseFormat unset or text");
        if (options.ModelId is { } id && id != Model.Id)
            throw new NotSupportedException($"ChatOptions.ModelId {SafeText.Quote(id)} is not the model this client serves ({SafeText.Quote(Model.Id)}): leave it unset or give {SafeText.Quote(Model.Id)}");
    }

    private static TemplateDict ToTemplate(ChatMessage m)
    {
        foreach (var c in m.Contents)
            if (c is not TextContent and not UsageContent)
                throw new NotSupportedException($"MatqChatClient reads text only: a {m.Role.Value} message holds {c.GetType().Name}; give TextContent");
        var d = Message(m.Role.Value, m.Text);
        if (m.AuthorName is { } name) d["name"] = name;
        return d;
    }

    private static TemplateDict Message(string role, string content)
    {
        var d = new TemplateDict();
        d["role"] = role;
        d["content"] = content;
        return d;
    }

    private static ChatFinishReason FinishReason(CompletionResult r) =>
        r.FinishReason == CompletionEngine.FinishLength ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(CompletionResult r) => new()
    {
        InputTokenCount = r.PromptTokens, OutputTokenCount = r.CompletionTokens, TotalTokenCount = r.PromptTokens + r.CompletionTokens,
    };

    private static AdditionalPropertiesDictionary Served(CompletionResult r) => new()
    {
        [BitsKey] = r.Bits,
        ["precision"] = r.Precision,
        ["mean_layer_bits"] = r.MeanLayerBits,
        ["tokens_per_second"] = r.Stats.DecodeTokensPerSecond,
    };

    private static string NewId(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..24];
}
