// Runs `matq quantize` alone (no dataset cache: a test that touches it fails) on models/tiny with calibration from a
// local text file; shared by the quantize and --resume tests.
using Matq.Data;
using Matq.Quantization.Pipeline;

namespace Matq.Cli.Tests.Verbs;

internal static class QuantizeVerbHarness
{
    /// <summary>Runs the verb; <paramref name="observe"/> sees every quantization event (a throw from it ends the run as a kill would).</summary>
    public static (int Code, string Output) Run(string[] args, Action<QuantizationEvent>? observe = null)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 400;
        Func<DataStore> noData = () => throw new InvalidOperationException("the verb touched the dataset cache");
        var root = new RootCommand("test");
        root.Subcommands.Add(new QuantizeVerb(console, noData, observe).Build());
        int code = CliHost.Run(root, args, console);
        return (code, writer.ToString());
    }

    /// <summary>models/tiny, found above the test binaries.</summary>
    public static string TinyModel()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "models", "tiny", "config.json"))) dir = Path.GetDirectoryName(dir);
        return dir is null ? throw new DirectoryNotFoundException("models/tiny not found above " + AppContext.BaseDirectory) : Path.Combine(dir, "models", "tiny");
    }

    /// <summary>A small calibration text in <paramref name="dir"/> (written once).</summary>
    public static string CalibText(string dir)
    {
        var path = Path.Combine(dir, "calib.txt");
        if (!File.Exists(path))
            File.WriteAllText(path, string.Concat(Enumerable.Repeat("We the people of the United States, in order to form a more perfect union. ", 20)));
        return path;
    }
}
