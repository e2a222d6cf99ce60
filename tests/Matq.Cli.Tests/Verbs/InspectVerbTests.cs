namespace Matq.Cli.Tests.Verbs;

public class InspectVerbTests
{
    [Fact]
    public void InspectsHfFixtureFolder()
    {
        var run = CliRunner.Run("inspect", CliRunner.Fixture("tiny-llama"), "--tensors", "-1");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("HfCheckpoint", run.Output);
        Assert.Contains("model.layers.1.mlp.down_proj.weight", run.Output);
        Assert.Contains("[64, 176]", run.Output);
        Assert.Contains("F32", run.Output);
    }

    [Fact]
    public void MissingPathIsOneLine()
    {
        var run = CliRunner.Run("inspect", "/nonexistent/model");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("/nonexistent/model", run.Lines[0]);
    }

    [Fact]
    public void TruncatedFileIsOneLine()
    {
        var src = File.ReadAllBytes(CliRunner.Fixture("tiny-qwen2", "model.safetensors"));
        var path = Path.Combine(Path.GetTempPath(), $"matq-cli-{Guid.NewGuid():N}.safetensors");
        try
        {
            File.WriteAllBytes(path, src[..(src.Length / 2)]);
            var run = CliRunner.Run("inspect", path);
            Assert.Equal(1, run.ExitCode);
            Assert.Single(run.Lines);
            Assert.Contains(path, run.Lines[0]);
        }
        finally { File.Delete(path); }
    }
}
