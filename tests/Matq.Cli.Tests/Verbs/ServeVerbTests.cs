// `matq serve` as a verb: with --port 0 it prints the bound address, answers over HTTP at its --bits default and stops
// cleanly (exit 0, "stopped") when its stop token fires (Ctrl+C/SIGTERM in a terminal); a float HF folder is RTN-quantized
// to int8 at start and serves the same greedy text as the int8 artifact of it; bad options and a port in use are one
// line with exit code 1 before anything listens; a plan made by `matq plan` for the artifact is its default precision.
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Matq.Cli.Serving;

namespace Matq.Cli.Tests.Verbs;

public sealed class ServeVerbTests : IClassFixture<PackedRuntimeVerbTests.TinyArtifact>
{
    private readonly PackedRuntimeVerbTests.TinyArtifact _a;
    public ServeVerbTests(PackedRuntimeVerbTests.TinyArtifact a) => _a = a;

    private sealed record Running(Task<int> Exit, Func<string> Output, CancellationTokenSource Stop, HttpClient Http) : IDisposable
    {
        public void Dispose()
        {
            Stop.Cancel();
            Http.Dispose();
        }
    }

    /// <summary>Runs `matq serve ARGS --port 0` on a worker thread until it prints its address (or exits: then fails).</summary>
    private static async Task<Running> Start(params string[] args)
    {
        var writer = new StringWriter();
        var sync = TextWriter.Synchronized(writer);
        var console = CliRunner.Console(sync);
        var stop = new CancellationTokenSource();
        var root = new RootCommand("matq") { new ServeVerb(console, stop.Token).Build() };
        string Output() { lock (sync) return writer.ToString(); }
        var exit = Task.Run(() => CliHost.Run(root, ["serve", .. args, "--port", "0", "--threads", "1"], console));
        for (var until = DateTime.UtcNow.AddSeconds(120); DateTime.UtcNow < until && !exit.IsCompleted; await Task.Delay(20))
        {
            var m = Regex.Match(Output(), @"listening on http://127\.0\.0\.1:(\d+)");
            if (m.Success) return new Running(exit, Output, stop, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{m.Groups[1].Value}/") });
        }
        stop.Cancel();
        throw new InvalidOperationException("matq serve did not start: " + Output());
    }

    private static async Task<JsonElement> Complete(HttpClient http, object body)
    {
        using var response = await http.PostAsync("v1/completions", new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task Serves_an_artifact_at_its_default_bits_and_stops_cleanly()
    {
        using var run = await Start("--model", _a.Path, "--bits", "4", "--max-precisions", "2");
        Assert.Contains("\"bits\" picks 1..8", run.Output());
        Assert.Contains("at most 2 kept", run.Output());
        using (var health = await run.Http.GetAsync("health")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        var json = await Complete(run.Http, new { model = "tiny8", prompt = "Fellow citizens", max_tokens = 8, temperature = 0 });
        Assert.Equal(4, json.GetProperty("matq").GetProperty("bits").GetInt32());

        run.Stop.Cancel();
        Assert.Equal(0, await run.Exit.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("POST /v1/completions 200 bits=4", run.Output());
        Assert.Contains("stopped", run.Output());
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => run.Http.GetAsync("health"));   // nothing listens any more
    }

    [Fact]
    public async Task A_plan_made_for_the_artifact_is_the_default_precision()
    {
        var plan = Path.Combine(_a.Dir, "serve-plan.json");
        var made = CliRunner.Run("plan", "--model", _a.Path, "--strategy", "uniform", "--bits", "3", "--out", plan);
        Assert.True(made.ExitCode == 0, made.Output);
        using var run = await Start("--model", _a.Path, "--plan", plan);
        Assert.Contains("default plan (3.00 bits/weight)", run.Output());
        var json = await Complete(run.Http, new { model = "tiny8", prompt = "Fellow citizens", max_tokens = 4, temperature = 0 });
        Assert.True(json.GetProperty("matq").GetProperty("plan").GetBoolean());
        Assert.Equal(3.0, json.GetProperty("matq").GetProperty("mean_layer_bits").GetDouble(), 9);
        run.Stop.Cancel();
        Assert.Equal(0, await run.Exit.WaitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Chat_completions_use_the_template_file_and_answer_400_without_one()
    {
        using (var run = await Start("--model", _a.Path, "--template", CliRunner.Fixture("chat-templates", "google-gemma-3-it.jinja")))
        {
            Assert.Contains("chat: the template of ", run.Output());
            using var response = await run.Http.PostAsync("v1/chat/completions", new StringContent(
                """{"messages": [{"role": "user", "content": "The state of the"}], "max_tokens": 6, "temperature": 0, "bits": 3}""", Encoding.UTF8, "application/json"));
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.True(response.StatusCode == HttpStatusCode.OK, json.ToString());
            // Gemma 3's rendering: "<start_of_turn>user\nThe state of the<end_of_turn>\n<start_of_turn>model\n" (bos_token undefined: no config)
            Assert.Equal("<start_of_turn>user\nThe state of the<end_of_turn>\n<start_of_turn>model\n".Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
            Assert.Equal(3, json.GetProperty("matq").GetProperty("bits").GetInt32());
            run.Stop.Cancel();
            Assert.Equal(0, await run.Exit.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Contains("POST /v1/chat/completions 200 bits=3", run.Output());
        }
        using (var plain = await Start("--model", _a.Path))
        {
            Assert.Contains("chat: /v1/chat/completions answers 400 until the model has a chat template", plain.Output());
            using var response = await plain.Http.PostAsync("v1/chat/completions", new StringContent("""{"messages": [{"role": "user", "content": "hi"}]}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("pass --template FILE", await response.Content.ReadAsStringAsync());
            plain.Stop.Cancel();
            Assert.Equal(0, await plain.Exit.WaitAsync(TimeSpan.FromSeconds(60)));
        }
    }

    [Fact]
    public async Task A_float_model_folder_is_quantized_to_int8_at_start_and_serves_the_artifact_text()
    {
        using var run = await Start("--model", _a.ModelDir, "--group", "32");
        Assert.Contains("quantizing it with RTN to an int8 master (groups of 32)", run.Output());
        using var models = JsonDocument.Parse(await run.Http.GetStringAsync("v1/models"));
        Assert.Equal("tiny-rtn8", models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());
        var served = await Complete(run.Http, new { prompt = "The state of the", max_tokens = 24, temperature = 0, bits = 3 });

        var generated = CliRunner.Run("generate", "--model", _a.Path, "--bits", "3", "--prompt", "The state of the", "--temperature", "0",
            "--max-tokens", "24", "--threads", "1");
        Assert.Equal(0, generated.ExitCode);
        Assert.Contains("The state of the" + served.GetProperty("choices")[0].GetProperty("text").GetString() + "\npacked engine:", generated.Output);
        run.Stop.Cancel();
        Assert.Equal(0, await run.Exit.WaitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task Bad_options_and_a_port_in_use_are_one_line_and_exit_code_1()
    {
        (string[] Args, string Message)[] cases =
        [
            (["--model", _a.Path, "--port", "70000"], "--port 70000 is out of range"),
            (["--model", _a.Path, "--max-concurrency", "0"], "--max-concurrency 0 is out of range"),
            (["--model", _a.Path, "--max-queue", "-1"], "--max-queue -1 is out of range"),
            (["--model", _a.Path, "--max-body-bytes", "10"], "--max-body-bytes 10 is too small"),
            (["--model", _a.Path, "--max-precisions", "0"], "--max-precisions 0 is out of range"),
            (["--model", _a.Path, "--batch", "0"], "--batch 0 is out of range: 1..32"),
            (["--model", _a.Path, "--batch", "33"], "--batch 33 is out of range: 1..32"),
            (["--model", _a.Path, "--context", "0"], "--context 0 is out of range"),
            (["--model", _a.Path, "--bits", "9"], "--bits 9 is out of range"),
            (["--model", _a.Path, "--activations", "int8,fp32"], "--activations takes one value"),
            (["--model", Path.Combine(_a.Dir, "missing.matq")], "does not exist"),
        ];
        foreach (var (args, message) in cases)
        {
            var run = CliRunner.Run(["serve", .. args]);
            Assert.True(run.ExitCode == 1, run.Output);
            Assert.Contains(message, run.Output);
            Assert.DoesNotContain("   at ", run.Output);
        }

        var engine = Matq.Runtime.Serving.CompletionEngine.Open(_a.Path);
        await using var taken = await CompletionServer.StartAsync(engine, new ServeOptions { Port = 0 });
        var busy = CliRunner.Run("serve", "--model", _a.Path, "--port", $"{taken.Port}");
        Assert.Equal(1, busy.ExitCode);
        Assert.Contains($"cannot listen on 127.0.0.1:{taken.Port}", busy.Output);
    }
}
