// `--gpus N`'s launcher with stand-in ranks (/bin/sh scripts): every rank gets its rank, the world size and one
// rendezvous port; its lines come back prefixed; the first failing rank stops the others and its exit code is returned.
using System.Diagnostics;

namespace Matq.Cli.Tests.Verbs;

public sealed class RankLauncherTests
{
    private static (int Code, string Output, TimeSpan Took) Launch(int ranks, string script)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 300;
        var sw = Stopwatch.StartNew();
        int code = RankLauncher.Run(console, ranks, "/bin/sh", ["-c", script]);
        return (code, writer.ToString(), sw.Elapsed);
    }

    [Fact]
    public void Every_rank_gets_its_rank_the_world_size_and_one_rendezvous_and_its_lines_are_prefixed()
    {
        var (code, output, _) = Launch(3, "echo rank=$MATQ_RANK world=$MATQ_WORLD_SIZE at=$MATQ_MASTER_ADDR:$MATQ_MASTER_PORT; echo oops >&2");
        Assert.Equal(0, code);
        var ports = new HashSet<string>();
        for (int r = 0; r < 3; r++)
        {
            var line = output.Split('\n').Single(l => l.StartsWith($"[rank {r}] rank={r} world=3 at=127.0.0.1:", StringComparison.Ordinal));
            ports.Add(line.Split(':')[^1].Trim());
            Assert.Contains($"[rank {r}] oops", output);
        }
        Assert.Single(ports);
    }

    [Fact]
    public void The_first_failing_rank_stops_the_others_and_its_code_is_the_launchers()
    {
        // rank 1 fails at once; ranks 0 and 2 would sleep for a minute
        var (code, output, took) = Launch(3, "if [ \"$MATQ_RANK\" = 1 ]; then echo broken >&2; exit 7; fi; sleep 60; echo never");
        Assert.Equal(7, code);
        Assert.Contains("[rank 1] broken", output);
        Assert.Contains("rank 1 failed with exit code 7; the other ranks were stopped", output);
        Assert.DoesNotContain("never", output);
        Assert.True(took < TimeSpan.FromSeconds(45), $"the launcher waited {took.TotalSeconds:F0} s for ranks it should have stopped");
    }

    [Fact]
    public void Gpus_is_removed_from_the_ranks_command_line()
    {
        Assert.Equal(["train", "lm", "--out", "x", "--steps", "3"], RankLauncher.ArgumentsWithoutGpus(["train", "lm", "--gpus", "2", "--out", "x", "--gpus=4", "--steps", "3"]));
    }
}
