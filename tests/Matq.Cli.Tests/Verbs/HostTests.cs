namespace Matq.Cli.Tests.Verbs;

/// <summary>What every verb shares: help, usage errors and user errors as one line with the right exit code.</summary>
public class HostTests
{
    [Fact]
    public void RootHelpListsVerbs()
    {
        var run = CliRunner.Run("--help");
        Assert.Equal(0, run.ExitCode);
        foreach (var verb in new[] { "data", "inspect", "device" })
            Assert.Contains(verb, run.Output);
    }

    [Fact]
    public void HelpNamesTheCommandMatq()
    {
        // the dotnet tool's command is `matq`: help names it so, not the assembly (Matq.Cli)
        var run = CliRunner.Run("--help");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("Usage:\n  matq [command] [options]", run.Output.Replace("\r", ""), StringComparison.Ordinal);
        Assert.DoesNotContain("Matq.Cli", run.Output, StringComparison.Ordinal);
        var verb = CliRunner.Run("quantize", "--help");
        Assert.Contains("matq quantize [options]", verb.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("inspect")]
    [InlineData("device")]
    [InlineData("data", "fetch")]
    public void EveryVerbHasHelpWithExamples(params string[] verb)
    {
        var run = CliRunner.Run([.. verb, "--help"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("Examples:", run.Output);
    }

    [Fact]
    public void UnknownVerbIsOneLineUsageError()
    {
        var run = CliRunner.Run("frobnicate");
        Assert.Equal(2, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.StartsWith("error:", run.Lines[0]);
        Assert.Contains("frobnicate", run.Lines[0]);
    }

    [Fact]
    public void UnknownOptionIsOneLineUsageError()
    {
        var run = CliRunner.Run("inspect", "x", "--bogus");
        Assert.Equal(2, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("--bogus", run.Lines[0]);
    }

    [Fact]
    public void CudaWithoutCudaIsOneLineFailure()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MATQ_TORCH_LIB")))
            throw new InvalidOperationException("this test checks the no-CUDA message; unset MATQ_TORCH_LIB to run it");
        var run = CliRunner.Run("device", "--device", "cuda");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("--device cuda: CUDA is not available", run.Lines[0]);
    }

    [Fact]
    public void BadDeviceNameIsOneLineFailure()
    {
        var run = CliRunner.Run("device", "--device", "tpu");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("'tpu'", run.Lines[0]);
    }

    [Theory]
    [InlineData("8,4,2", new[] { 8, 4, 2 })]
    [InlineData(" 3 ", new[] { 3 })]
    public void BitsParse(string text, int[] expected) => Assert.Equal(expected, Common.CommonOptions.ParseBits(text));

    [Theory]
    [InlineData("0")]
    [InlineData("9")]
    [InlineData("4,x")]
    [InlineData("")]
    public void BadBitsNameTheOption(string text)
    {
        var e = Assert.Throws<MatqException>(() => Common.CommonOptions.ParseBits(text));
        Assert.Contains("--bits", e.Message);
    }
}
