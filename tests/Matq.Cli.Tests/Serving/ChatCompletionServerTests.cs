// POST /v1/chat/completions over real HTTP (Kestrel on a free port) with an RTN int8 artifact of models/tiny whose
// tokenizer folder carries Qwen 2.5's real chat template: a greedy reply equals `matq generate`'s continuation of the
// conversation as the template renders it, at the bits the request names (reported in "matq"); a stream starts with the
// assistant role, its deltas concatenate to the non-stream content, and it ends with a finish reason, usage and [DONE];
// malformed messages, unknown fields and image parts get a 400 OpenAI-style error naming the field; a model without a
// chat template answers 400 saying how to give it one, while /v1/completions keeps serving.
using System.Net;
using System.Text;
using System.Text.Json;
using Matq.Cli.Serving;
using Matq.Runtime.Chat;
using Matq.Runtime.Packed;
using Matq.Runtime.Serving;

namespace Matq.Cli.Tests.Serving;

public sealed class ChatCompletionServerTests : IClassFixture<ChatCompletionServerTests.Fixture>
{
    public sealed class Fixture : TempFolderFixture, IAsyncLifetime
    {
        public string Artifact { get; }
        public string TokenizerDir { get; }
        public CompletionEngine Engine { get; }
        public CompletionServer Server { get; private set; } = null!;
        public CompletionServer Plain { get; private set; } = null!;
        public HttpClient Http { get; private set; } = null!;
        public HttpClient PlainHttp { get; private set; } = null!;

        public Fixture() : base("matq-chat-serve-")
        {
            var model = CliRunner.TinyModel();
            Artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"), model);
            TokenizerDir = WriteChatTokenizer(Dir, model, "Qwen-Qwen2.5-7B-Instruct.jinja", "<|im_end|>");
            Engine = CompletionEngine.Open(Artifact, new PackedServingOptions { Threads = 1, HeadBits = 8 }, TokenizerDir);   // as serve and generate default (--head 8)
        }

        public async Task InitializeAsync()
        {
            Server = await CompletionServer.StartAsync(Engine, new ServeOptions { Port = 0 }, chat: ChatEngine.Open(Engine, TokenizerDir));
            Http = new HttpClient { BaseAddress = Server.BaseAddress };
            Plain = await CompletionServer.StartAsync(Engine, new ServeOptions { Port = 0 });
            PlainHttp = new HttpClient { BaseAddress = Plain.BaseAddress };
        }

        public async Task DisposeAsync()
        {
            Http.Dispose();
            PlainHttp.Dispose();
            await Server.DisposeAsync();
            await Plain.DisposeAsync();
        }
    }

    /// <summary>A tokenizer folder: models/tiny's byte tokenizer plus a tokenizer_config.json holding a real chat template.</summary>
    public static string WriteChatTokenizer(string dir, string modelDir, string templateFile, string eos)
    {
        var tok = Path.Combine(dir, "tok-" + Path.GetFileNameWithoutExtension(templateFile));
        Directory.CreateDirectory(tok);
        File.Copy(Path.Combine(modelDir, "matq_tokenizer.json"), Path.Combine(tok, "matq_tokenizer.json"), overwrite: true);
        var template = File.ReadAllText(CliRunner.Fixture("chat-templates", templateFile));
        File.WriteAllText(Path.Combine(tok, "tokenizer_config.json"), JsonSerializer.Serialize(new { bos_token = "<s>", eos_token = eos, chat_template = template }));
        return tok;
    }

    private readonly Fixture _f;
    public ChatCompletionServerTests(Fixture f) => _f = f;

    private static readonly object[] Conversation =
    [
        new { role = "system", content = "You are terse." },
        new { role = "user", content = "The state of the" },
        new { role = "assistant", content = "Union is strong." },
        new { role = "user", content = "Fellow citizens" },
    ];

    private static async Task<(HttpStatusCode Status, JsonElement Json)> Post(HttpClient http, object body)
    {
        using var response = await http.PostAsync("v1/chat/completions", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static string Content(JsonElement json) => json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    /// <summary>The prompt text of the conversation as the template renders it (transformers' rendering of Qwen 2.5's template).</summary>
    private string Rendered()
    {
        var messages = JsonDocument.Parse(JsonSerializer.Serialize(Conversation)).RootElement.EnumerateArray().Select(m => (TemplateDict)TemplateValues.FromJson(m)!).ToList();
        return ChatTemplate.FromFolder(_f.TokenizerDir).Template!.Render(messages, addGenerationPrompt: true);
    }

    private string Generate(string prompt, int bits, int maxTokens)
    {
        var run = CliRunner.Run("generate", "--model", _f.Artifact, "--bits", $"{bits}", "--prompt", prompt, "--max-tokens", $"{maxTokens}", "--temperature", "0", "--threads", "1");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.StartsWith(prompt, run.Output, StringComparison.Ordinal);
        int end = run.Output.IndexOf("\npacked engine:", StringComparison.Ordinal);
        Assert.True(end > 0, run.Output);
        return run.Output[prompt.Length..end];
    }

    [Theory]
    [InlineData(8)]
    [InlineData(2)]
    public async Task A_greedy_reply_equals_matq_generate_on_the_rendered_conversation_at_the_requested_bits(int bits)
    {
        var (status, json) = await Post(_f.Http, new { model = "tiny8", messages = Conversation, max_tokens = 32, temperature = 0, bits });
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        Assert.Equal("chat.completion", json.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", json.GetProperty("id").GetString());
        var choice = json.GetProperty("choices")[0];
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var prompt = Rendered();
        Assert.StartsWith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nThe state of the<|im_end|>\n", prompt, StringComparison.Ordinal);
        Assert.EndsWith("<|im_start|>user\nFellow citizens<|im_end|>\n<|im_start|>assistant\n", prompt, StringComparison.Ordinal);
        Assert.Equal(Encoding.UTF8.GetByteCount(prompt), json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());   // byte tokenizer, no added BOS
        Assert.Equal(32, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(bits, json.GetProperty("matq").GetProperty("bits").GetInt32());
        Assert.Equal(Generate(prompt, bits, 32), Content(json));
    }

    [Fact]
    public async Task Bits_change_the_reply_and_a_stream_concatenates_to_the_non_stream_reply()
    {
        var (_, eight) = await Post(_f.Http, new { messages = Conversation, max_tokens = 40, temperature = 0, bits = 8 });
        var (_, two) = await Post(_f.Http, new { messages = Conversation, max_tokens = 40, temperature = 0, bits = 2 });
        Assert.NotEqual(Content(eight), Content(two));

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { messages = Conversation, max_tokens = 40, temperature = 0, bits = 2, stream = true, stream_options = new { include_usage = true } }),
                Encoding.UTF8, "application/json"),
        };
        using var response = await _f.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType!.ToString());
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.Clone()).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        var first = chunks[0].GetProperty("choices")[0].GetProperty("delta");
        Assert.Equal("assistant", first.GetProperty("role").GetString());
        var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).ToList();
        string text = string.Concat(withChoices.Select(c => c.GetProperty("choices")[0].GetProperty("delta"))
            .Where(d => d.TryGetProperty("content", out _)).Select(d => d.GetProperty("content").GetString()));
        Assert.Equal(Content(two), text);
        var last = withChoices[^1];
        Assert.Equal("length", last.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(2, last.GetProperty("matq").GetProperty("bits").GetInt32());
        Assert.Equal(40, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(0, chunks[^1].GetProperty("choices").GetArrayLength());
    }

    [Fact]
    public async Task Text_parts_are_joined_and_template_arguments_reach_the_template()
    {
        var parts = new object[] { new { role = "user", content = new object[] { new { type = "text", text = "The state" }, new { type = "text", text = "of the" } } } };
        var (s1, joined) = await Post(_f.Http, new { messages = parts, max_tokens = 8, temperature = 0 });
        var (s2, plain) = await Post(_f.Http, new { messages = new object[] { new { role = "user", content = "The state\nof the" } }, max_tokens = 8, temperature = 0 });
        Assert.True(s1 == HttpStatusCode.OK && s2 == HttpStatusCode.OK, joined.ToString() + plain);
        Assert.Equal(Content(plain), Content(joined));
        Assert.Equal(plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), joined.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        // max_tokens left out: the reply may run to the end of the context
        var (s3, open) = await Post(_f.Http, new { messages = parts, temperature = 0, chat_template_kwargs = new { enable_thinking = false } });
        Assert.True(s3 == HttpStatusCode.OK, open.ToString());
        Assert.Equal(_f.Engine.ContextLength, open.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public void End_of_turn_ids_of_generation_config_end_the_reply()
    {
        var conversation = new List<TemplateDict> { ChatTemplate.Message("user", "The state of the") };
        var greedy = new Matq.Runtime.Generation.SamplingOptions { Temperature = 0 };
        var open = ChatEngine.Open(_f.Engine, _f.TokenizerDir);
        Assert.Empty(open.Template!.EndIds);
        var free = _f.Engine.Run(open.Prepare(new ChatParameters { Messages = conversation, MaxTokens = 24, Sampling = greedy }));
        Assert.Equal("length", free.FinishReason);

        // the byte of the reply's 6th character ends the turn: the reply stops right after its first occurrence
        int end = free.Text[5];
        Assert.True(end < 128, free.Text);   // one byte = one id of the byte tokenizer
        var dir = Path.Combine(_f.Dir, "tok-with-generation-config");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(_f.TokenizerDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), $$"""{"eos_token_id": [{{end}}]}""");
        var chat = ChatEngine.Open(_f.Engine, dir);
        Assert.Equal([end], chat.Template!.EndIds);
        var stopped = _f.Engine.Run(chat.Prepare(new ChatParameters { Messages = conversation, MaxTokens = 24, Sampling = greedy }));
        Assert.Equal("stop", stopped.FinishReason);
        Assert.Equal(free.Text[..(free.Text.IndexOf((char)end) + 1)], stopped.Text);

        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"eos_token_id": [5, 70000]}""");
        var e = Assert.Throws<MatqException>(() => ChatEngine.Open(_f.Engine, dir));
        Assert.Contains("the end-of-turn id 70000 (generation_config.json eos_token_id) is outside the model's vocabulary", e.Message);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"eos_token_id": "x"}""");
        Assert.Contains("eos_token_id holds \"x\"; it must be a token id or a list of ids", Assert.Throws<MatqException>(() => ChatEngine.Open(_f.Engine, dir)).Message);
    }

    [Theory]
    [InlineData("""{"max_tokens": 4}""", "messages", "invalid_value", "messages is required")]
    [InlineData("""{"messages": "hi"}""", "messages", "invalid_value", "messages must be an array")]
    [InlineData("""{"messages": []}""", "messages", "invalid_value", "messages is empty")]
    [InlineData("""{"messages": [{"content": "hi"}]}""", "messages", "invalid_value", "messages[0].role is required")]
    [InlineData("""{"messages": [{"role": "user"}]}""", "messages", "invalid_value", "messages[0].content is required")]
    [InlineData("""{"messages": [{"role": "user", "content": 5}]}""", "messages", "invalid_value", "messages[0].content must be a string")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", "messages", "invalid_value", "matq serves text-only models")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "bits": 9}""", "bits", "invalid_value", "bits 9 cannot be served")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}""", "tool_choice", "invalid_value", "is not served")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "functions": []}""", "functions", "unknown_parameter", "unrecognized request argument 'functions'")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}""", "max_tokens", "context_length_exceeded", "the rendered conversation")]
    [InlineData("""[1]""", null, "invalid_json", "not an object")]
    public async Task Bad_requests_get_400_naming_the_field(string body, string? param, string code, string fragment)
    {
        using var response = await _f.Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json.ToString());
        var e = json.GetProperty("error");
        Assert.Equal(ApiException.InvalidRequest, e.GetProperty("type").GetString());
        Assert.Equal(param, e.GetProperty("param").ValueKind == JsonValueKind.Null ? null : e.GetProperty("param").GetString());
        Assert.Equal(code, e.GetProperty("code").GetString());
        Assert.Contains(fragment, e.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_model_without_a_chat_template_answers_400_with_the_fix_and_still_completes_text()
    {
        var (status, json) = await Post(_f.PlainHttp, new { messages = Conversation, max_tokens = 4 });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        var e = json.GetProperty("error");
        Assert.Equal("chat_template_missing", e.GetProperty("code").GetString());
        Assert.Contains("--template FILE", e.GetProperty("message").GetString());
        using var completion = await _f.PlainHttp.PostAsync("v1/completions", new StringContent("""{"prompt": "The state", "max_tokens": 4}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        using var get = await _f.PlainHttp.GetAsync("v1/chat/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
    }
}
