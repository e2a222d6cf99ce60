// The app-facing API on models/tiny without TorchSharp: MatqModel opens the HF folder (int8 RTN at open) whose
// tokenizer_config.json carries Qwen 2.5's real chat template, and MatqChatClient (IChatClient) renders conversations with
// it: a seeded reply is the same each time and equals the completion of the rendered prompt; a stop sequence ends the
// reply before it; streamed updates concatenate to the non-streamed reply with the same finish reason and usage; bits 2
// and 8 serve different precisions (reported back); a bad bits value is one clear exception naming the field.
using Matq.Runtime.Chat;
using Matq.Runtime.Generation;
using Matq.Runtime.Serving;
using Microsoft.Extensions.AI;

namespace Matq.Runtime.Tests;

public sealed class MatqChatClientTests : IClassFixture<MatqChatClientTests.TinyChatModel>
{
    public sealed class TinyChatModel : IDisposable
    {
        public string Folder { get; } = Directory.CreateTempSubdirectory("matq-chat-client-").FullName;
        public MatqModel Model { get; }

        public TinyChatModel()
        {
            var tiny = RepoPath("models", "tiny");
            foreach (var f in new[] { "config.json", "model.safetensors", "matq_tokenizer.json" })
                File.Copy(Path.Combine(tiny, f), Path.Combine(Folder, f));
            var template = File.ReadAllText(RepoPath("tests", "fixtures", "chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"));
            File.WriteAllText(Path.Combine(Folder, "tokenizer_config.json"),
                System.Text.Json.JsonSerializer.Serialize(new { bos_token = "<s>", eos_token = "<|im_end|>", chat_template = template }));
            Model = MatqModel.Open(Folder, new MatqModelOptions { Threads = 1 });
        }

        public void Dispose()
        {
            Model.Dispose();
            Directory.Delete(Folder, recursive: true);
        }
    }

    /// <summary>A path under the repository root (the folder above this test's output that holds models/tiny).</summary>
    public static string RepoPath(params string[] parts)
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "models", "tiny"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) throw new DirectoryNotFoundException("models/tiny not found above " + AppContext.BaseDirectory);
        return Path.Combine([dir, .. parts]);
    }

    private readonly TinyChatModel _f;
    public MatqChatClientTests(TinyChatModel f) => _f = f;

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "You are terse."),   // Qwen's default system turn alone nearly fills the tiny model's 256 bytes
        new(ChatRole.User, "The state of the"),
        new(ChatRole.Assistant, "Union is strong."),
        new(ChatRole.User, "Fellow citizens"),
    ];

    private static ChatOptions Options(int maxTokens, float temperature, long? seed = null, int? bits = null, params string[] stop)
    {
        var o = new ChatOptions { MaxOutputTokens = maxTokens, Temperature = temperature, Seed = seed };
        if (stop.Length > 0) o.StopSequences = stop;
        if (bits is not null) o.AdditionalProperties = new AdditionalPropertiesDictionary { ["bits"] = bits };
        return o;
    }

    [Fact]
    public void The_model_opens_the_float_folder_as_an_int8_master_with_its_chat_template()
    {
        var m = _f.Model;
        Assert.Equal(8, m.MasterBits);
        Assert.Equal(8, m.DefaultBits);
        Assert.Equal(256, m.ContextLength);
        Assert.EndsWith("-rtn8", m.Id, StringComparison.Ordinal);
        Assert.True(File.Exists(m.ArtifactPath));
        Assert.NotNull(m.Chat.Template);
        Assert.EndsWith("tokenizer_config.json", m.Chat.Template!.Source, StringComparison.Ordinal);
        Assert.Equal("Fellow", m.Detokenize(m.Tokenize("Fellow")));
        using var client = m.AsChatClient();
        Assert.Equal(m.Id, client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Same(m, client.GetService<MatqModel>());
    }

    [Fact]
    public async Task A_seeded_reply_is_deterministic_and_is_the_completion_of_the_rendered_conversation()
    {
        using var client = _f.Model.AsChatClient();
        var options = Options(24, 0.9f, seed: 7);
        var a = await client.GetResponseAsync(Conversation, options);
        var b = await client.GetResponseAsync(Conversation, options);
        Assert.Equal(24, a.Usage!.OutputTokenCount);
        Assert.Equal(a.Text, b.Text);
        Assert.Equal(ChatFinishReason.Length, a.FinishReason);

        // the same as rendering with the template and completing the prompt at the same sampling
        var prompt = _f.Model.Chat.RenderPrompt(new ChatParameters { Messages = [.. Conversation.Select(Dict)] });
        Assert.StartsWith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nThe state of the<|im_end|>", prompt, StringComparison.Ordinal);
        Assert.EndsWith("<|im_start|>user\nFellow citizens<|im_end|>\n<|im_start|>assistant\n", prompt, StringComparison.Ordinal);
        var completion = _f.Model.Generate(new CompletionParameters
        {
            Prompt = prompt, MaxTokens = 24, AddSpecialTokens = false,
            Sampling = new SamplingOptions { Temperature = 0.9, TopK = 0, TopP = 1, Seed = 7 },
        });
        Assert.Equal(completion.Text, a.Text);
        Assert.Equal(_f.Model.Tokenize(prompt, addSpecialTokens: false).Length, a.Usage.InputTokenCount);

        // another seed samples another reply
        var seeds = new List<string>();
        foreach (long seed in new long[] { 8, 9, 10 })
            seeds.Add((await client.GetResponseAsync(Conversation, Options(24, 0.9f, seed))).Text);
        Assert.Contains(seeds, t => t != a.Text);
    }

    [Fact]
    public async Task Instructions_become_the_system_turn_of_the_template()
    {
        using var client = _f.Model.AsChatClient();
        var withInstructions = Options(4, 0);
        withInstructions.Instructions = "Be brief.";
        var reply = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Fellow citizens")], withInstructions);
        var prompt = _f.Model.Chat.RenderPrompt(new ChatParameters
        {
            Messages = [Dict(new ChatMessage(ChatRole.System, "Be brief.")), Dict(new ChatMessage(ChatRole.User, "Fellow citizens"))],
        });
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>", prompt, StringComparison.Ordinal);
        Assert.Equal(_f.Model.Tokenize(prompt, addSpecialTokens: false).Length, reply.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_reply_before_it()
    {
        using var client = _f.Model.AsChatClient();
        var full = (await client.GetResponseAsync(Conversation, Options(40, 0))).Text;
        Assert.True(full.Length >= 12, $"greedy reply too short to cut: '{full}'");
        var stop = full.Substring(6, 3);
        var cut = await client.GetResponseAsync(Conversation, Options(40, 0, stop: stop));
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        Assert.DoesNotContain(stop, cut.Text, StringComparison.Ordinal);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
    }

    [Fact]
    public async Task Streamed_updates_concatenate_to_the_non_streamed_reply()
    {
        using var client = _f.Model.AsChatClient();
        var options = Options(32, 0.8f, seed: 42);
        var whole = await client.GetResponseAsync(Conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, options)) updates.Add(u);
        Assert.True(updates.Count(u => u.Text.Length > 0) > 1, "the reply came in one piece, not streamed");
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        var last = updates[^1];
        Assert.Equal(whole.FinishReason, last.FinishReason);
        var merged = updates.ToChatResponse();
        Assert.Equal(whole.Text, merged.Text);
        Assert.Equal(whole.Usage!.InputTokenCount, merged.Usage!.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, merged.Usage.OutputTokenCount);
        Assert.Equal(8, last.AdditionalProperties!["bits"]);

        // the completion API streams the same way
        var parameters = new CompletionParameters { Prompt = "Fellow citizens", MaxTokens = 20 };
        var pieces = new List<CompletionChunk>();
        await foreach (var c in _f.Model.StreamAsync(parameters)) pieces.Add(c);
        Assert.Equal(_f.Model.Generate(parameters).Text, string.Concat(pieces.Select(p => p.Text)));
        Assert.NotNull(pieces[^1].Result);
        Assert.Equal(20, pieces[^1].Result!.CompletionTokens);
    }

    [Fact]
    public async Task Leaving_a_stream_early_or_cancelling_ends_the_generation()
    {
        using var client = _f.Model.AsChatClient();
        var options = Options(50, 0.8f, seed: 3);
        int seen = 0;
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, options))
            if (u.Text.Length > 0 && ++seen == 2) break;
        Assert.Equal(2, seen);
        using var cancel = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync(Conversation, options, cancel.Token))
                if (u.Text.Length > 0) cancel.Cancel();
        });
        // the model serves on afterwards
        Assert.Equal(50, (await client.GetResponseAsync(Conversation, options)).Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Bits_in_additional_properties_pick_the_precision_per_call()
    {
        using var client = _f.Model.AsChatClient();
        var two = await client.GetResponseAsync(Conversation, Options(32, 0, bits: 2));
        var eight = await client.GetResponseAsync(Conversation, Options(32, 0, bits: 8));
        var byDefault = await client.GetResponseAsync(Conversation, Options(32, 0));
        Assert.Equal(2, two.AdditionalProperties!["bits"]);
        Assert.Equal(8, eight.AdditionalProperties!["bits"]);
        Assert.NotEqual(two.Text, eight.Text);
        Assert.Equal(eight.Text, byDefault.Text);
        // "bits" as a JSON number or a string (as configuration binding gives it) is read the same
        var json = Options(32, 0);
        json.AdditionalProperties = new AdditionalPropertiesDictionary { ["bits"] = System.Text.Json.JsonDocument.Parse("2").RootElement };
        Assert.Equal(two.Text, (await client.GetResponseAsync(Conversation, json)).Text);
        var text = Options(32, 0);
        text.AdditionalProperties = new AdditionalPropertiesDictionary { ["bits"] = "2" };
        Assert.Equal(two.Text, (await client.GetResponseAsync(Conversation, text)).Text);
    }

    [Theory]
    [InlineData(9, "bits 9 cannot be served: this 8-bit artifact serves bits 1..8")]
    [InlineData(0, "bits 0 cannot be served")]
    [InlineData("two", "is not a whole number")]
    [InlineData(2.5, "is not a whole number")]
    public async Task A_bad_bits_value_is_one_clear_exception_naming_the_field(object bits, string expected)
    {
        using var client = _f.Model.AsChatClient();
        var options = Options(8, 0);
        options.AdditionalProperties = new AdditionalPropertiesDictionary { ["bits"] = bits };
        var e = await Assert.ThrowsAsync<CompletionArgumentException>(() => client.GetResponseAsync(Conversation, options));
        Assert.Equal("bits", e.Param);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        await Assert.ThrowsAsync<CompletionArgumentException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(Conversation, options)) { }
        });
    }

    [Fact]
    public async Task What_matq_cannot_honour_is_refused_in_one_line()
    {
        using var client = _f.Model.AsChatClient();
        var penalty = new ChatOptions { FrequencyPenalty = 0.5f };
        Assert.Contains("penalty", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(Conversation, penalty))).Message, StringComparison.Ordinal);
        var image = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        Assert.Contains("text only", (await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image]))).Message, StringComparison.Ordinal);
        var seed = new ChatOptions { Seed = 1L << 40 };
        Assert.Equal("seed", (await Assert.ThrowsAsync<CompletionArgumentException>(() => client.GetResponseAsync(Conversation, seed))).Param);
    }

    [Fact]
    public async Task A_model_without_a_chat_template_says_how_to_give_one()
    {
        using var model = MatqModel.Open(RepoPath("models", "tiny"), new MatqModelOptions { Threads = 1 });
        using var client = model.AsChatClient();
        var e = Assert.Throws<MatqException>(() => client.Prepare(Conversation, null));
        Assert.Contains("no chat template", e.Message, StringComparison.Ordinal);
        // completions still serve, and a template file fixes chat
        Assert.Equal(4, model.Generate(new CompletionParameters { Prompt = "Fellow", MaxTokens = 4 }).CompletionTokens);
        using var withTemplate = MatqChatClient.Open(RepoPath("models", "tiny"), new MatqModelOptions
        {
            Threads = 1, ChatTemplatePath = RepoPath("tests", "fixtures", "chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"),
        });
        Assert.Equal(3, (await withTemplate.GetResponseAsync(Conversation, Options(3, 0))).Usage!.OutputTokenCount);
    }

    [Fact]
    public void Opening_what_is_not_a_model_is_one_line()
    {
        var missing = Assert.Throws<MatqException>(() => MatqModel.Open("/nonexistent/x.matq"));
        Assert.Contains("does not exist", missing.Message, StringComparison.Ordinal);
        var badBits = Assert.Throws<MatqException>(() => MatqModel.Open(_f.Model.ArtifactPath, new MatqModelOptions { Bits = 9, TokenizerFolder = _f.Folder }));
        Assert.Contains("1..8", badBits.Message, StringComparison.Ordinal);
        // the artifact itself (with the tokenizer folder) opens and serves the same greedy text
        using var again = MatqModel.Open(_f.Model.ArtifactPath, new MatqModelOptions { Threads = 1, TokenizerFolder = _f.Folder });
        var p = new CompletionParameters { Prompt = "Fellow citizens", MaxTokens = 12, Bits = 4 };
        Assert.Equal(_f.Model.Generate(p).Text, again.Generate(p).Text);
    }

    [Fact]
    public async Task A_plan_serves_calls_that_name_no_bits_and_bits_still_override_it()
    {
        // a hand-written plan: the first two blocks' MLP at 2 bits, everything else at 4
        var layers = Enumerable.Range(0, 2).SelectMany(i => new[] { "gate_proj", "up_proj", "down_proj" }.Select(l => $"model.layers.{i}.mlp.{l}"))
            .ToDictionary(n => n, _ => 2);
        using var planned = MatqModel.Open(_f.Model.ArtifactPath, new MatqModelOptions
        {
            Threads = 1, TokenizerFolder = _f.Folder, Plan = new Matq.Runtime.Plans.BitPlan(layers, defaultBits: 4),
        });
        Assert.True(planned.HasPlan);
        using var client = planned.AsChatClient();
        var byPlan = await client.GetResponseAsync(Conversation, Options(32, 0));
        Assert.Equal("plan", byPlan.AdditionalProperties!["precision"]);
        Assert.InRange(Convert.ToDouble(byPlan.AdditionalProperties["mean_layer_bits"]), 2.01, 3.99);
        var four = await client.GetResponseAsync(Conversation, Options(32, 0, bits: 4));
        Assert.Equal("4", four.AdditionalProperties!["precision"]);
        Assert.Equal((await _f.Model.AsChatClient().GetResponseAsync(Conversation, Options(32, 0, bits: 4))).Text, four.Text);
        Assert.NotEqual(four.Text, byPlan.Text);
    }

    private static TemplateDict Dict(ChatMessage m)
    {
        var d = new TemplateDict();
        d["role"] = m.Role.Value;
        d["content"] = m.Text;
        return d;
    }
}
