// `matq serve`'s HTTP endpoint, started in-process on a free port with an RTN int8 artifact of models/tiny, over real
// HTTP: a greedy completion equals `matq generate`'s text at the same bits; bits 2 and 8 both serve and report the
// precision actually used (layer bits, bytes) with different text; a stream's chunks concatenate to the non-stream text
// (greedy and seeded sampling), ending with a finish reason, usage and [DONE]; stop sequences cut the text; bad JSON,
// unknown bits, prompts/max_tokens past the context, oversized bodies, unknown routes and methods, text that is not
// Unicode (invalid UTF-8, lone surrogate escapes) get their status and an OpenAI-style error; headers or a body too slow
// get a JSON 408 with Retry-After, Kestrel's own header timeout included (raw TCP on 127.0.0.1); the admission gate
// answers 429 when slots and queue are full and serves queued requests in turn (driven by holding its slots, so
// deterministic); a client leaving mid-stream frees its slot.
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Matq.Cli.Serving;
using Matq.Runtime.Packed;
using Matq.Runtime.Serving;

namespace Matq.Cli.Tests.Serving;

public sealed class CompletionServerTests : IClassFixture<CompletionServerTests.Fixture>
{
    public sealed class Fixture : TempFolderFixture, IAsyncLifetime
    {
        public string Artifact { get; }
        public CompletionEngine Engine { get; }
        public CompletionServer Server { get; private set; } = null!;
        public HttpClient Http { get; private set; } = null!;

        public Fixture() : base("matq-serve-")
        {
            Artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
            Engine = CompletionEngine.Open(Artifact, new PackedServingOptions { Threads = 1, HeadBits = 8 });   // as `matq serve` (--head 8), so it serves what `matq generate` runs
        }

        public async Task InitializeAsync()
        {
            Server = await CompletionServer.StartAsync(Engine, new ServeOptions { Port = 0 });
            Http = new HttpClient { BaseAddress = Server.BaseAddress };
        }

        public async Task DisposeAsync()
        {
            Http.Dispose();
            await Server.DisposeAsync();
        }
    }

    private const string Prompt = "The state of the";
    private readonly Fixture _f;
    public CompletionServerTests(Fixture f) => _f = f;

    private static StringContent Body(object o) => new(JsonSerializer.Serialize(o), Encoding.UTF8, "application/json");

    private static async Task<(HttpStatusCode Status, JsonElement Json)> Post(HttpClient http, object body) => await Send(http, Body(body));

    private static async Task<(HttpStatusCode Status, JsonElement Json)> Send(HttpClient http, HttpContent content, string path = "v1/completions")
    {
        using var response = await http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static string Text(JsonElement completion) => completion.GetProperty("choices")[0].GetProperty("text").GetString()!;

    /// <summary>Asserts an OpenAI error body: message, type, param and code.</summary>
    private static string AssertError(HttpStatusCode want, (HttpStatusCode Status, JsonElement Json) got, string? param, string code)
    {
        Assert.True(want == got.Status, $"{got.Status}: {got.Json}");
        var e = got.Json.GetProperty("error");
        var message = e.GetProperty("message").GetString()!;
        Assert.False(string.IsNullOrWhiteSpace(message));
        Assert.Equal(want == HttpStatusCode.TooManyRequests ? ApiException.RateLimit : ApiException.InvalidRequest, e.GetProperty("type").GetString());
        Assert.Equal(param, e.GetProperty("param").ValueKind == JsonValueKind.Null ? null : e.GetProperty("param").GetString());
        Assert.Equal(code, e.GetProperty("code").GetString());
        return message;
    }

    /// <summary>`matq generate`'s continuation (its output is the prompt, the continuation, then the engine line).</summary>
    private string Generate(int bits, int maxTokens, params string[] sampling)
    {
        var run = CliRunner.Run(["generate", "--model", _f.Artifact, "--bits", $"{bits}", "--prompt", Prompt,
            "--max-tokens", $"{maxTokens}", "--threads", "1", .. sampling.Length > 0 ? sampling : ["--temperature", "0"]]);
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.StartsWith(Prompt, run.Output);
        int end = run.Output.IndexOf("\npacked engine:", StringComparison.Ordinal);
        Assert.True(end > 0, run.Output);
        return run.Output[Prompt.Length..end];
    }

    [Theory]
    [InlineData(8)]
    [InlineData(2)]
    public async Task A_greedy_completion_equals_matq_generate_at_the_same_bits(int bits)
    {
        var (status, json) = await Post(_f.Http, new { model = "tiny8", prompt = Prompt, max_tokens = 40, temperature = 0, bits });
        Assert.True(status == HttpStatusCode.OK, json.ToString());
        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", json.GetProperty("id").GetString());
        Assert.Equal("tiny8", json.GetProperty("model").GetString());
        Assert.True(json.GetProperty("created").GetInt64() > 1_600_000_000);
        var choice = json.GetProperty("choices")[0];
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var usage = json.GetProperty("usage");
        Assert.Equal(Prompt.Length, usage.GetProperty("prompt_tokens").GetInt32());   // byte tokenizer
        Assert.Equal(40, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(Prompt.Length + 40, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal(Generate(bits, 40), Text(json));
        Assert.Equal(40, Encoding.UTF8.GetByteCount(Text(json)));
    }

    [Fact]
    public async Task A_seeded_sampled_completion_equals_matq_generate_with_the_same_sampling()
    {
        var (status, json) = await Post(_f.Http, new { prompt = Prompt, max_tokens = 40, temperature = 0.9, top_p = 0.9, top_k = 20, seed = 11, bits = 3 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(Generate(3, 40, "--temperature", "0.9", "--top-p", "0.9", "--top-k", "20", "--seed", "11"), Text(json));
        var (_, other) = await Post(_f.Http, new { prompt = Prompt, max_tokens = 40, temperature = 0.9, top_p = 0.9, top_k = 20, seed = 12, bits = 3 });
        Assert.NotEqual(Text(json), Text(other));
    }

    [Fact]
    public async Task Bits_2_and_8_both_serve_and_report_the_precision_actually_used()
    {
        var eight = await Post(_f.Http, new { prompt = Prompt, max_tokens = 48, temperature = 0, bits = 8 });
        var two = await Post(_f.Http, new { prompt = Prompt, max_tokens = 48, temperature = 0, bits = 2 });
        var byDefault = await Post(_f.Http, new { prompt = Prompt, max_tokens = 48, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, eight.Status);
        Assert.Equal(HttpStatusCode.OK, two.Status);
        JsonElement M(JsonElement j) => j.GetProperty("matq");
        Assert.Equal(8, M(eight.Json).GetProperty("bits").GetInt32());
        Assert.Equal(8.0, M(eight.Json).GetProperty("mean_layer_bits").GetDouble());
        Assert.Equal(2, M(two.Json).GetProperty("bits").GetInt32());
        Assert.Equal(2.0, M(two.Json).GetProperty("mean_layer_bits").GetDouble());
        Assert.True(M(two.Json).GetProperty("weight_bytes").GetInt64() < M(eight.Json).GetProperty("weight_bytes").GetInt64());
        Assert.NotEqual(Text(eight.Json), Text(two.Json));   // int2 slices of this tiny model continue differently
        Assert.Equal(Text(eight.Json), Text(byDefault.Json));  // the default is the master bits

        using var health = JsonDocument.Parse(await _f.Http.GetStringAsync("health"));
        var cached = health.RootElement.GetProperty("cached_precisions").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("2", cached);
        Assert.Contains("8", cached);
        using var models = JsonDocument.Parse(await _f.Http.GetStringAsync("v1/models"));
        var model = models.RootElement.GetProperty("data")[0];
        Assert.Equal("list", models.RootElement.GetProperty("object").GetString());
        Assert.Equal("tiny8", model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.Equal(8, model.GetProperty("matq").GetProperty("master_bits").GetInt32());
        Assert.Equal(256, model.GetProperty("matq").GetProperty("context_length").GetInt32());
        Assert.Equal(HttpStatusCode.OK, (await _f.Http.GetAsync("v1/models/tiny8")).StatusCode);
    }

    /// <summary>POSTs a stream request; returns the data payloads in order (the last is [DONE]).</summary>
    private static async Task<List<string>> Events(HttpClient http, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = Body(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        return events.Select(e => e["data: ".Length..]).ToList();
    }

    [Theory]
    [InlineData(0.0, 1.0, 1)]
    [InlineData(0.9, 0.95, 7)]
    public async Task Stream_chunks_concatenate_to_the_non_stream_text(double temperature, double topP, int seed)
    {
        var request = new { prompt = Prompt, max_tokens = 60, temperature, top_p = topP, seed, bits = 4 };
        var (status, whole) = await Post(_f.Http, request);
        Assert.Equal(HttpStatusCode.OK, status);
        var events = await Events(_f.Http, new { prompt = Prompt, max_tokens = 60, temperature, top_p = topP, seed, bits = 4, stream = true, stream_options = new { include_usage = true } });

        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        var usageChunk = chunks[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        Assert.Equal(60, usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var textChunks = chunks[..^1];
        Assert.True(textChunks.Count > 2);
        Assert.All(textChunks, c => Assert.Equal("text_completion", c.GetProperty("object").GetString()));
        Assert.Single(textChunks.Select(c => c.GetProperty("id").GetString()).Distinct());
        Assert.All(textChunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        Assert.Equal("length", textChunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(4, textChunks[^1].GetProperty("matq").GetProperty("bits").GetInt32());
        Assert.Equal(Text(whole), string.Concat(textChunks.Select(Text)));
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_text_before_it_with_finish_reason_stop()
    {
        var (_, full) = await Post(_f.Http, new { prompt = Prompt, max_tokens = 60, temperature = 0 });
        var text = Text(full);
        var stop = text.Substring(12, 3);
        int cut = text.IndexOf(stop, StringComparison.Ordinal);
        var (status, stopped) = await Post(_f.Http, new { prompt = Prompt, max_tokens = 60, temperature = 0, stop = new[] { "zzzz", stop } });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(text[..cut], Text(stopped));
        Assert.Equal("stop", stopped.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(cut + stop.Length, stopped.GetProperty("usage").GetProperty("completion_tokens").GetInt32());   // bytes up to the stop's end

        var events = await Events(_f.Http, new { prompt = Prompt, max_tokens = 60, temperature = 0, stop, stream = true });
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        Assert.Equal(text[..cut], string.Concat(chunks.Select(Text)));
        Assert.Equal("stop", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Bad_requests_get_their_status_and_an_openai_error()
    {
        var http = _f.Http;
        AssertError(HttpStatusCode.BadRequest, await Send(http, new StringContent("{\"prompt\": \"a\",", Encoding.UTF8, "application/json")), null, "invalid_json");
        AssertError(HttpStatusCode.BadRequest, await Send(http, new StringContent("[1, 2]", Encoding.UTF8, "application/json")), null, "invalid_json");
        var m = AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", bits = 9 }), "bits", "invalid_value");
        Assert.Contains("serves bits 1..8", m);
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", bits = 0 }), "bits", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", bits = "two" }), "bits", "invalid_value");
        m = AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = new string('a', 300) }), "prompt", "context_length_exceeded");
        Assert.Contains("300 tokens, longer than the model's context of 256 tokens", m);
        m = AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = new string('a', 200), max_tokens = 100 }), "max_tokens", "context_length_exceeded");
        Assert.Contains("set max_tokens to at most 56", m);
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { max_tokens = 4 }), "prompt", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", n = 2 }), "n", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", temperature = 3 }), "temperature", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", top_p = 0 }), "top_p", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", stop = new[] { "" } }), "stop", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", logprobs = 2 }), "logprobs", "invalid_value");
        AssertError(HttpStatusCode.BadRequest, await Post(http, new { prompt = "a", frobnicate = true }), "frobnicate", "unknown_parameter");
        AssertError(HttpStatusCode.NotFound, await Post(http, new { prompt = "a", model = "gpt-4" }), "model", "model_not_found");

        using var get = await http.GetAsync("v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        Assert.Contains("POST", get.Content.Headers.Allow);
        AssertError(HttpStatusCode.MethodNotAllowed, (get.StatusCode, JsonDocument.Parse(await get.Content.ReadAsStringAsync()).RootElement.Clone()), null, "method_not_allowed");
        AssertError(HttpStatusCode.MethodNotAllowed, await Send(http, Body(new { }), "health"), null, "method_not_allowed");
        using var unknown = await http.GetAsync("v2/chat");
        AssertError(HttpStatusCode.NotFound, (unknown.StatusCode, JsonDocument.Parse(await unknown.Content.ReadAsStringAsync()).RootElement.Clone()), null, "unknown_url");
        using var otherModel = await http.GetAsync("v1/models/gpt-4");
        Assert.Equal(HttpStatusCode.NotFound, otherModel.StatusCode);
    }

    private static ByteArrayContent Raw(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static byte[] Bytes(params object[] parts) =>
        parts.SelectMany(p => p is string s ? Encoding.UTF8.GetBytes(s) : (byte[])p).ToArray();

    [Fact]
    public async Task Text_that_is_not_unicode_gets_400_naming_where_it_is()
    {
        var http = _f.Http;
        // Latin-1 é (0xE9) inside the prompt
        var m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"caf", new byte[] { 0xE9 }, "\", \"max_tokens\": 2}"))), "prompt", "invalid_encoding");
        Assert.Equal("the request body is not valid UTF-8: the value of prompt holds the byte 0xE9 at byte offset 15, which is not part of a UTF-8 character; "
            + "send the JSON as UTF-8 text (JSON requires it)", m);
        // a truncated sequence in a key, and in the second stop sequence
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"a\", \"x", new byte[] { 0xC3 }, "\": 1}"))), null, "invalid_encoding");
        Assert.Contains("not valid UTF-8: a key of the request object holds the byte 0xC3", m);
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"a\", \"stop\": [\"x\", \"", new byte[] { 0xFF }, "\"]}"))), "stop", "invalid_encoding");
        Assert.Contains("the value of stop[1] holds the byte 0xFF", m);
        // a surrogate code point written as UTF-8 (CESU-style ED A0 80) is not UTF-8 either
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"", new byte[] { 0xED, 0xA0, 0x80 }, "\"}"))), "prompt", "invalid_encoding");
        Assert.Contains("the byte 0xED", m);

        // lone surrogate escapes: in the prompt, in a key, low before high, high at the end
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"ab\\ud800c\"}"))), "prompt", "invalid_encoding");
        Assert.StartsWith("the request body holds text that is not Unicode: the value of prompt holds the escape \\ud800 at byte offset 14, a lone UTF-16 high surrogate", m);
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"a\", \"\\udc00\": 1}"))), null, "invalid_encoding");
        Assert.Contains("a key of the request object holds the escape \\udc00 at byte offset 17, a lone UTF-16 low surrogate", m);
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"\\ude00\\ud83d\"}"))), "prompt", "invalid_encoding");
        Assert.Contains("\\ude00", m);
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"a\", \"stream_options\": {\"include_usage\\ud83d\": true}}"))), null, "invalid_encoding");
        Assert.Contains("a key inside stream_options holds the escape \\ud83d", m);
        m = AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes("{\"prompt\": \"a\", \"model\": \"\\ud800\"}"))), "model", "invalid_encoding");

        // bytes that are not UTF-8 outside any string are not JSON at all
        AssertError(HttpStatusCode.BadRequest, await Send(http, Raw(Bytes(new byte[] { 0xFF, 0xFE }, "{\"prompt\": \"a\"}"))), null, "invalid_json");
        // a surrogate pair, escaped or as UTF-8, is one character and is served
        Assert.Equal(HttpStatusCode.OK, (await Send(http, Raw(Bytes("{\"prompt\": \"\\ud83d\\ude00 \u00e9\", \"max_tokens\": 1}")))).Status);
        Assert.Equal(HttpStatusCode.OK, (await Post(http, new { prompt = "\U0001F600 é", max_tokens = 1 })).Status);
    }

    [Fact]
    public async Task An_oversized_body_gets_413_whether_its_length_is_declared_or_chunked()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, MaxBodyBytes = 2048 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        // Expect: 100-continue, so the client waits for the answer instead of racing the server's close with the body
        // (without it, a write of the refused body can hit the closed socket: "Broken pipe", seen about 1 run in 6)
        using var declared = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = Body(new { prompt = new string('a', 4000), max_tokens = 1 }) };
        declared.Headers.ExpectContinue = true;
        using var refused = await http.SendAsync(declared);
        var m = AssertError(HttpStatusCode.RequestEntityTooLarge, (refused.StatusCode, JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.Clone()), null, "request_too_large");
        Assert.Contains("limit of 2048 bytes", m);

        // no Content-Length: the body is counted as it arrives
        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { prompt = new string('a', 4000) }))));
        chunked.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("request_too_large", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());

        // just under the limit is served
        var (status, _) = await Post(http, new { prompt = new string('a', 100), max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, status);
    }

    /// <summary>Sends <paramref name="parts"/> over raw TCP to 127.0.0.1, pausing between them, and reads until the server
    /// closes (bounded: 30 s); returns the status line, the headers (lower-case names) and the body.</summary>
    private static async Task<(string Status, Dictionary<string, string> Headers, string Body)> RawExchange(int port, params string[] parts)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = tcp.GetStream();
        foreach (var part in parts)
        {
            await stream.WriteAsync(Encoding.ASCII.GetBytes(part), timeout.Token);
            await stream.FlushAsync(timeout.Token);
        }
        var received = new MemoryStream();
        try
        {
            await stream.CopyToAsync(received, timeout.Token);   // the server answers, then closes the connection
        }
        catch (IOException) { }   // a reset after the response still leaves what arrived
        Assert.False(timeout.IsCancellationRequested, "the server never closed the connection");
        var text = Encoding.UTF8.GetString(received.ToArray());
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(end > 0, $"no complete response head: '{text}'");
        var lines = text[..end].Split("\r\n");
        var headers = lines[1..].Select(l => l.Split(':', 2)).ToDictionary(kv => kv[0].Trim().ToLowerInvariant(), kv => kv[1].Trim());
        return (lines[0], headers, text[(end + 4)..]);
    }

    private static void AssertJsonTimeout((string Status, Dictionary<string, string> Headers, string Body) r, string mentions)
    {
        Assert.StartsWith("HTTP/1.1 408 ", r.Status);
        Assert.StartsWith("application/json", r.Headers["content-type"]);
        Assert.Equal("1", r.Headers["retry-after"]);
        Assert.Equal(Encoding.UTF8.GetByteCount(r.Body).ToString(), r.Headers["content-length"]);
        var m = AssertError(HttpStatusCode.RequestTimeout, (HttpStatusCode.RequestTimeout, JsonDocument.Parse(r.Body).RootElement.Clone()), null, "request_timeout");
        Assert.Contains(mentions, m);
    }

    [Fact]
    public async Task A_client_sending_its_headers_too_slowly_gets_a_json_408()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, HeadersTimeout = TimeSpan.FromSeconds(1) });
        // the request line and one header, then nothing: Kestrel times the headers out before the application sees them
        var r = await RawExchange(server.Port, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        AssertJsonTimeout(r, "the request headers did not all arrive within 1 s");
        Assert.Equal("close", r.Headers["connection"]);

        // the server still serves, and whole requests on a connection keep their own answers
        var ok = await RawExchange(server.Port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 ", ok.Status);
        Assert.Equal("ok", JsonDocument.Parse(ok.Body).RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Kestrels_own_400_and_431_carry_the_json_error_body()
    {
        // both are answered by Kestrel before the application sees a request; they used to have an empty body
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0 });
        var bad = await RawExchange(server.Port, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Without Colon\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 400 ", bad.Status);
        Assert.StartsWith("application/json", bad.Headers["content-type"]);
        Assert.Equal(Encoding.UTF8.GetByteCount(bad.Body).ToString(), bad.Headers["content-length"]);
        Assert.Contains("not valid HTTP/1.1", AssertError(HttpStatusCode.BadRequest, (HttpStatusCode.BadRequest, JsonDocument.Parse(bad.Body).RootElement.Clone()), null, "malformed_request"));

        var huge = await RawExchange(server.Port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + new string('a', 40_000) + "\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 431 ", huge.Status);
        Assert.Contains("request_headers_too_large", huge.Body, StringComparison.Ordinal);
        Assert.False(huge.Headers.ContainsKey("retry-after"));
    }

    [Fact]
    public async Task A_client_sending_its_body_too_slowly_gets_a_json_408()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, BodyGracePeriod = TimeSpan.FromSeconds(1.5) });
        var r = await RawExchange(server.Port,
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": ");
        AssertJsonTimeout(r, "the request body arrived too slowly");
    }

    [Fact]
    public void Timeouts_out_of_range_are_refused()
    {
        Assert.Throws<MatqException>(() => new ServeOptions { HeadersTimeout = TimeSpan.Zero }.Validate());
        Assert.Throws<MatqException>(() => new ServeOptions { BodyGracePeriod = TimeSpan.FromSeconds(1) }.Validate());
    }

    private static async Task<JsonElement> Health(HttpClient http) => JsonDocument.Parse(await http.GetStringAsync("health")).RootElement.Clone();

    /// <summary>Polls /health until <paramref name="ready"/> holds (a state to reach, not a timing; fails after 60 s).</summary>
    private static async Task WaitFor(HttpClient http, Func<JsonElement, bool> ready)
    {
        for (var until = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < until; await Task.Delay(20))
            if (ready(await Health(http))) return;
        Assert.Fail("the server never reached the expected state: " + await Health(http));
    }

    [Fact]
    public async Task Full_slots_and_queue_get_429_and_queued_requests_are_served_in_turn()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, MaxConcurrency = 1, MaxQueue = 1 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var request = new { prompt = Prompt, max_tokens = 8, temperature = 0 };
        var (_, alone) = await Post(http, request);

        var held = await server.Admission.TryEnterAsync();   // the one slot is taken
        Assert.NotNull(held);
        var queued = Post(http, request);
        await WaitFor(http, h => h.GetProperty("queued").GetInt32() == 1 && h.GetProperty("active").GetInt32() == 1);
        using (var busy = await http.PostAsync("v1/completions", Body(request)))   // slot and queue full
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, busy.StatusCode);
            Assert.NotNull(busy.Headers.RetryAfter);
            AssertError(HttpStatusCode.TooManyRequests, (busy.StatusCode, JsonDocument.Parse(await busy.Content.ReadAsStringAsync()).RootElement.Clone()), null, "rate_limit_exceeded");
        }
        Assert.False(queued.IsCompleted);
        held!.Dispose();
        var (status, json) = await queued;
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(Text(alone), Text(json));
        await WaitFor(http, h => h.GetProperty("active").GetInt32() == 0 && h.GetProperty("queued").GetInt32() == 0);

        // with no queue, a held slot means 429 at once
        await using var noQueue = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, MaxConcurrency = 1, MaxQueue = 0 });
        using var http2 = new HttpClient { BaseAddress = noQueue.BaseAddress };
        using (await noQueue.Admission.TryEnterAsync())
            AssertError(HttpStatusCode.TooManyRequests, await Post(http2, request), null, "rate_limit_exceeded");
        Assert.Equal(HttpStatusCode.OK, (await Post(http2, request)).Status);
    }

    [Fact]
    public async Task Concurrent_requests_beyond_the_slots_wait_and_all_complete()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, MaxConcurrency = 2, MaxQueue = 8 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var bits = new[] { 8, 2, 8, 4, 2, 8 };
        var results = await Task.WhenAll(bits.Select(b => Post(http, new { prompt = Prompt, max_tokens = 24, temperature = 0, bits = b })));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        for (int i = 0; i < bits.Length; i++)
            for (int j = 0; j < bits.Length; j++)
                if (bits[i] == bits[j]) Assert.Equal(Text(results[i].Json), Text(results[j].Json));   // sessions are not shared mid-request
    }

    [Fact]
    public async Task A_client_leaving_mid_stream_frees_its_slot()
    {
        await using var server = await CompletionServer.StartAsync(_f.Engine, new ServeOptions { Port = 0, MaxConcurrency = 1, MaxQueue = 0 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = Body(new { prompt = "a", max_tokens = 250, stream = true }) })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: {", await reader.ReadLineAsync());
        }   // disconnect
        await WaitFor(http, h => h.GetProperty("active").GetInt32() == 0);
        Assert.Equal(HttpStatusCode.OK, (await Post(http, new { prompt = "a", max_tokens = 2 })).Status);
    }
}

/// <summary>`matq serve --batch 4`: concurrent requests decoded together give each request the text it gets alone
/// (int8 activations: a batched step's rows are the lone decode's, bit for bit), streamed or not, at two precisions at once.</summary>
public sealed class BatchedCompletionServerTests : TempFolderFixture
{
    public BatchedCompletionServerTests() : base("matq-serve-batch-") { }

    [Fact]
    public async Task Concurrent_requests_decoded_together_get_the_texts_they_get_alone()
    {
        var artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
        var options = new PackedServingOptions { Threads = 1, HeadBits = 8 };
        var alone = CompletionEngine.Open(artifact, options);
        var batched = CompletionEngine.Open(artifact, options, maxBatch: 4);
        Assert.Equal(4, batched.MaxBatch);
        await using var server = await CompletionServer.StartAsync(batched, new ServeOptions { Port = 0, MaxConcurrency = 4 });
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var requests = new[]
        {
            new { prompt = "The state of the", max_tokens = 12, bits = 8, temperature = 0.0, seed = 1 },
            new { prompt = "Our nation", max_tokens = 7, bits = 8, temperature = 0.9, seed = 5 },
            new { prompt = "We the people of", max_tokens = 15, bits = 4, temperature = 0.0, seed = 1 },
            new { prompt = "Tonight", max_tokens = 10, bits = 8, temperature = 0.0, seed = 1 },
        };
        string Expected(int i)
        {
            var r = requests[i];
            var p = alone.Prepare(new CompletionParameters
            {
                Prompt = r.prompt, MaxTokens = r.max_tokens, Bits = r.bits,
                Sampling = new Matq.Runtime.Generation.SamplingOptions { Temperature = r.temperature, Seed = r.seed, TopK = 0, TopP = 1 },   // the server's defaults
            });
            return alone.Run(p).Text;
        }
        var responses = await Task.WhenAll(requests.Select(async r =>
        {
            using var response = await http.PostAsync("v1/completions", new StringContent(JsonSerializer.Serialize(r), Encoding.UTF8, "application/json"));
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
            return json.GetProperty("choices")[0].GetProperty("text").GetString()!;
        }));
        for (int i = 0; i < requests.Length; i++) Assert.Equal(Expected(i), responses[i]);
        // the requests went through the batching decoder (whether two of them overlapped depends on their arrival, so
        // decoding together is asserted in BatchedDecodeTests, where the sequences are submitted at once)
        Assert.True(batched.DecoderOf(batched.Precisions.Get(8))!.Steps > 0);
    }

    [Fact]
    public void A_served_context_bounds_the_requests_and_sizes_each_sessions_cache()
    {
        var artifact = CliRunner.QuantizeRtn8(Path.Combine(Dir, "tiny8.matq"));
        var full = CompletionEngine.Open(artifact, new PackedServingOptions { Threads = 1 });
        var engine = CompletionEngine.Open(artifact, new PackedServingOptions { Threads = 1, ContextLength = 24 });
        Assert.Equal(24, engine.ContextLength);
        Assert.True(full.ContextLength > 24);
        using (var lease = engine.Precisions.Default.Rent())
        {
            Assert.Equal(24, lease.Session.ContextLength);
            using var fullLease = full.Precisions.Default.Rent();
            Assert.Equal(fullLease.Session.CacheBytes * 24 / full.ContextLength, lease.Session.CacheBytes);
        }
        var e = Assert.Throws<CompletionArgumentException>(() => engine.Prepare(new CompletionParameters { Prompt = "The state of the", MaxTokens = 30 }));
        Assert.Equal("max_tokens", e.Param);
        Assert.Contains("context of 24 tokens", e.Message);
        Assert.InRange(engine.Run(engine.Prepare(new CompletionParameters { Prompt = "The state of the", MaxTokens = 8 })).CompletionTokens, 1, 8);   // 16 prompt tokens + 8 = 24
        var huge = CompletionEngine.Open(artifact, new PackedServingOptions { Threads = 1, ContextLength = 1 << 20 });
        Assert.Equal(full.ContextLength, huge.ContextLength);          // never past the model's own
    }
}
