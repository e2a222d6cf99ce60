// The settings records' Validate() where it checks something the verbs did not check before their work started: each
// mistake is one line naming the option, raised before a dataset fetch, an artifact read or torch.
using Matq.Runtime.Generation;
using Matq.Runtime.Plans;

namespace Matq.Cli.Tests.Verbs;

public class VerbSettingsTests
{
    [Fact]
    public void Device_checks_the_size_before_resolving_the_device()
    {
        // cuda is a valid request; resolving it would load torch (and fail on a machine without CUDA): the size error comes first
        var e = Assert.Throws<MatqException>(() => new DeviceSettings("cuda", 8).Validate());
        Assert.Contains("--size 8 is out of range", e.Message);
        Assert.Contains("--device 'tpu' is not a device", Assert.Throws<MatqException>(() => new DeviceSettings("tpu", 2048).Validate()).Message);
        new DeviceSettings("cpu", 2048).Validate();
    }

    [Fact]
    public void Generate_refuses_an_unknown_device_whichever_engine_runs()
    {
        // a .matq on the packed engine never resolved --device, so a typo there went unnoticed
        GenerateSettings Settings(string device) => new(CliRunner.Fixture("tiny-llama"), "Fellow", 4, new SamplingOptions(), device, new ServingRequest(),
            "packed", -1, "8", "int8");
        Assert.Contains("--device 'tpu' is not a device", Assert.Throws<MatqException>(() => Settings("tpu").Validate()).Message);
        Settings("auto").Validate();
    }

    [Fact]
    public void Plan_names_the_missing_option_before_reading_the_artifact()
    {
        // config.json is no artifact: reading it would fail; the missing --avg-bits is the line the user gets
        var notAnArtifact = CliRunner.Fixture("tiny-llama", "config.json");
        var outPath = Path.Combine(Path.GetTempPath(), $"matq-plan-{Guid.NewGuid():N}.json");
        var run = CliRunner.Run("plan", "--model", notAnArtifact, "--strategy", "budget", "--out", outPath);
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("--strategy budget needs --avg-bits B", run.Lines[0]);
        Assert.Contains("--strategy uniform needs --bits R",
            Assert.Throws<MatqException>(() => new PlanSettings(notAnArtifact, "uniform", null, null, null, "sotu-validation", outPath, "cpu", 1, null).Validate()).Message);
        Assert.Contains("'9' is not supported: bit-widths must be integers in 1..8",
            Assert.Throws<MatqException>(() => new PlanSettings(notAnArtifact, "pyramid", null, 3.5, "9", "sotu-validation", outPath, "cpu", 1, null).Validate()).Message);
        Assert.False(File.Exists(outPath));
    }

    [Fact]
    public void Demo_checks_its_options_before_fetching_data()
    {
        var model = CliRunner.Fixture("tiny-llama");
        Assert.Contains("--max-tokens 999 is too small", Assert.Throws<MatqException>(() => new DemoSettings(model, "cpu", 999, 1).Validate()).Message);
        Assert.Contains("--device 'tpu' is not a device", Assert.Throws<MatqException>(() => new DemoSettings(model, "tpu", 4000, 1).Validate()).Message);
        new DemoSettings(model, "cpu", 4000, 1).Validate();
    }

    [Fact]
    public void Data_fetch_checks_the_name_and_the_offline_folder_first()
    {
        Assert.Contains("unknown dataset 'nope'", Assert.Throws<MatqException>(() => new DataFetchSettings("nope", null, false).Validate()).Message);
        Assert.Contains("--from folder /nonexistent/matq-downloads does not exist",
            Assert.Throws<MatqException>(() => new DataFetchSettings("sotu", "/nonexistent/matq-downloads", false).Validate()).Message);
        new DataFetchSettings("all", null, false).Validate();
    }

    [Fact]
    public void Inspect_refuses_a_tensor_count_below_minus_one()
    {
        var run = CliRunner.Run("inspect", CliRunner.Fixture("tiny-llama"), "--tensors", "-2");
        Assert.Equal(1, run.ExitCode);
        Assert.Single(run.Lines);
        Assert.Contains("--tensors -2 is out of range", run.Lines[0]);
        Assert.Equal(0, CliRunner.Run("inspect", CliRunner.Fixture("tiny-llama"), "--tensors", "-1").ExitCode);
    }
}
