// `matq chat` with piped stdin on an RTN int8 artifact of models/tiny whose tokenizer folder carries Phi-3's real chat
// template: each line is a user turn, each greedy reply equals `matq generate`'s continuation of the conversation as the
// template renders it (the history includes the earlier replies), /bits switches the precision for later replies, a
// model without a template is one line naming the fix, and a conversation the template refuses (raise_exception) is one
// error line and exit code 1.
using Matq.Cli.Tests.Serving;
using Matq.Runtime.Chat;

namespace Matq.Cli.Tests.Verbs;

public sealed class ChatVerbTests : IClassFixture<PackedRuntimeVerbTests.TinyArtifact>
{
    private readonly PackedRuntimeVerbTests.TinyArtifact _a;
    public ChatVerbTests(PackedRuntimeVerbTests.TinyArtifact a) => _a = a;

    private static CliRun Chat(string stdin, params string[] args)
    {
        var writer = new StringWriter();
        var console = CliRunner.Console(writer);
        var root = new RootCommand("matq") { new ChatVerb(console, new StringReader(stdin)).Build() };
        int code = CliHost.Run(root, ["chat", .. args, "--threads", "1"], console);
        return new CliRun(code, writer.ToString());
    }

    private string Generate(string prompt, int bits)
    {
        var run = CliRunner.Run("generate", "--model", _a.Path, "--bits", $"{bits}", "--prompt", prompt, "--max-tokens", "24", "--temperature", "0", "--threads", "1");
        Assert.True(run.ExitCode == 0, run.Output);
        int end = run.Output.IndexOf("\npacked engine:", StringComparison.Ordinal);
        Assert.True(run.Output.StartsWith(prompt, StringComparison.Ordinal) && end > 0, run.Output);
        return run.Output[prompt.Length..end];
    }

    private string Tokenizer(string template) => ChatCompletionServerTests.WriteChatTokenizer(_a.Dir, _a.ModelDir, template, "<|endoftext|>");

    [Fact]
    public void Piped_turns_get_the_replies_generate_gives_for_the_rendered_conversation()
    {
        var tok = Tokenizer("microsoft-Phi-3-mini-4k-instruct.jinja");
        var template = ChatTemplate.FromFolder(tok).Template!;
        var run = Chat("The state of the\n\n/bits 2\nFellow citizens\n", "--model", _a.Path, "--tokenizer", tok, "--max-tokens", "24", "--temperature", "0");
        Assert.True(run.ExitCode == 0, run.Output);

        var u1 = ChatTemplate.Message("user", "The state of the");
        var first = template.Render([u1], addGenerationPrompt: true);
        Assert.Equal("<|user|>\nThe state of the<|end|>\n<|assistant|>\n", first);
        string reply1 = Generate(first, 8);
        Assert.Contains(reply1 + "\n[24 tokens, length, 8 bits, ", run.Output);
        Assert.Contains("serving the next replies at 2 bits", run.Output);
        var second = template.Render([u1, ChatTemplate.Message("assistant", reply1), ChatTemplate.Message("user", "Fellow citizens")], addGenerationPrompt: true);
        string reply2 = Generate(second, 2);
        Assert.Contains(reply2 + "\n[24 tokens, length, 2 bits, ", run.Output);
        Assert.NotEqual(Generate(second, 8), reply2);
    }

    [Fact]
    public void A_model_without_a_template_is_one_line_naming_the_fix()
    {
        var run = Chat("hello\n", "--model", _a.Path);
        Assert.Equal(1, run.ExitCode);
        var line = Assert.Single(run.Lines);
        Assert.StartsWith("error: ", line);
        Assert.Contains("has no chat template", line);
        Assert.Contains("pass --template FILE", line);

        var missing = Chat("hello\n", "--model", _a.Path, "--template", Path.Combine(_a.Dir, "nope.jinja"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("--template", Assert.Single(missing.Lines));

        var floatModel = Chat("hello\n", "--model", _a.ModelDir);
        Assert.Equal(1, floatModel.ExitCode);
        Assert.Contains("is not a .matq artifact", Assert.Single(floatModel.Lines));
    }

    [Fact]
    public void A_refused_conversation_is_one_error_line_and_exit_code_1()
    {
        var template = CliRunner.Fixture("chat-templates", "google-gemma-7b-it.jinja");
        var run = Chat("hello\n", "--model", _a.Path, "--template", template, "--system", "Be brief.", "--temperature", "0", "--max-tokens", "4");
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("error: the model's chat template refuses this conversation: System role not supported", run.Output);
        Assert.DoesNotContain("tokens, ", run.Output);   // no reply was generated

        var ok = Chat("hello\n", "--model", _a.Path, "--template", template, "--temperature", "0", "--max-tokens", "4");
        Assert.True(ok.ExitCode == 0, ok.Output);
        Assert.Contains("[4 tokens, length, 8 bits, ", ok.Output);
    }
}
