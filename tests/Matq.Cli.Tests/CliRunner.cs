// Runs the real `matq` command tree against an in-memory console and returns what a user would see.

namespace Matq.Cli.Tests;

public sealed record CliRun(int ExitCode, string Output)
{
    public string[] Lines => Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()).ToArray();
}

public static class CliRunner
{
    public static CliRun Run(params string[] args)
    {
        var writer = new StringWriter();
        int code = Program.Run(args, Console(writer));
        return new CliRun(code, writer.ToString());
    }

    /// <summary>A plain console (no ANSI, no colors, not interactive, 240 columns) writing to <paramref name="writer"/>.</summary>
    public static IAnsiConsole Console(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 240;
        return console;
    }

    public static string Fixture(params string[] parts)
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
        return Path.Combine([dir, "tests", "fixtures", .. parts]);
    }

    /// <summary>The repository's models/tiny folder (a small trained float model with a byte tokenizer).</summary>
    public static string TinyModel() => Path.Combine(Fixture(), "..", "..", "models", "tiny");

    /// <summary>
    /// Quantizes <paramref name="model"/> (default models/tiny) with RTN to int8, groups of 32, on the CPU, into
    /// <paramref name="outPath"/>, plus <paramref name="extra"/> options; throws with the output when it fails.
    /// </summary>
    public static string QuantizeRtn8(string outPath, string? model = null, params string[] extra)
    {
        var run = Run(["quantize", "--model", model ?? TinyModel(), "--method", "rtn", "--bits", "8", "--group", "32", "--device", "cpu", "--out", outPath, .. extra]);
        if (run.ExitCode != 0) throw new InvalidOperationException(run.Output);
        return outPath;
    }
}
