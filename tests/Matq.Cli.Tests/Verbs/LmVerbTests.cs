// User mistakes on `train lm`, `eval` and `generate` end as one MatqException line and exit code 1, before any
// dataset is fetched or model loaded (the injected DataStore factory fails the test if it is touched).
using Matq.Data;

namespace Matq.Cli.Tests.Verbs;

public sealed class LmVerbTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-verbs-").FullName;

    private static (int Code, string Output) Run(params string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        Func<DataStore> noData = () => throw new InvalidOperationException("the verb touched the dataset cache");
        var root = new RootCommand("test");
        var train = new Command("train", "train");
        train.Subcommands.Add(new TrainLmVerb(console, noData).Build());
        root.Subcommands.Add(train);
        root.Subcommands.Add(new EvalVerb(console, noData).Build());
        root.Subcommands.Add(new GenerateVerb(console).Build());
        int code = CliHost.Run(root, args, console);
        return (code, writer.ToString());
    }

    [Theory]
    [InlineData("0", null, null, "--gpus 0: give 1 or more")]
    [InlineData("3", "8", null, "the batch of 8 rows does not split over 3 ranks")]
    [InlineData("2", "8", "5", "--max-minutes with --gpus is not implemented")]
    public void TrainLmGpusMistakesAreOneLine(string gpus, string? batch, string? minutes, string expected)
    {
        var args = new List<string> { "train", "lm", "--preset", "tiny", "--out", Path.Combine(_dir, "dp"), "--gpus", gpus, "--device", "cpu" };
        if (batch is not null) args.AddRange(["--batch", batch]);
        if (minutes is not null) args.AddRange(["--max-minutes", minutes]);
        var (code, output) = Run([.. args]);
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains(expected, output);
        Assert.False(Directory.Exists(Path.Combine(_dir, "dp")));
    }

    [Fact]
    public void EvalWithAMissingModelFolderSaysSo()
    {
        var missing = Path.Combine(_dir, "nope");
        var (code, output) = Run("eval", "--model", missing, "--data", "sotu-validation");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains($"--model {missing} does not exist", output);
        Assert.DoesNotContain("   at ", output);   // no stack trace
    }

    [Fact]
    public void EvalWithABadDataNameListsTheValidNames()
    {
        var (code, output) = Run("eval", "--model", _dir, "--data", "sotu-tset");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--data 'sotu-tset' is neither a dataset", output);
        Assert.Contains("sotu-test", output);
    }

    [Fact]
    public void EvalWithAFolderThatIsNoModelSaysWhatIsMissing()
    {
        File.WriteAllText(Path.Combine(_dir, "text.txt"), "hello world");
        var (code, output) = Run("eval", "--model", _dir, "--data", Path.Combine(_dir, "text.txt"), "--device", "cpu");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("has no config.json", output);
    }

    [Fact]
    public void EvalRejectsAStrideLongerThanTheContext()
    {
        var (code, output) = Run("eval", "--model", _dir, "--context", "64", "--stride", "65");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--stride 65 is out of range", output);
    }

    [Fact]
    public void GenerateWithAMissingModelSaysSo()
    {
        var (code, output) = Run("generate", "--model", Path.Combine(_dir, "nope"), "--prompt", "hi");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("does not exist", output);
    }

    [Fact]
    public void GenerateRejectsANegativeTemperature()
    {
        var (code, output) = Run("generate", "--model", _dir, "--prompt", "hi", "--temperature", "-1");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--temperature -1 is out of range", output);
    }

    [Fact]
    public void TrainWithAnUnknownPresetListsThePresets()
    {
        var (code, output) = Run("train", "lm", "--preset", "huge", "--out", _dir);
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("unknown preset 'huge'", output);
        Assert.Contains("tiny", output);
    }

    [Fact]
    public void ResumeWithoutACheckpointSaysSo()
    {
        var (code, output) = Run("train", "lm", "--preset", "tiny", "--out", _dir, "--resume", "--device", "cpu");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--resume: no checkpoint", output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
