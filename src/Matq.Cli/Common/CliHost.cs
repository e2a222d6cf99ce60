// Runs a parsed command line: parse errors and MatqExceptions become one red line and a non-zero exit code
// (2 = usage, 1 = failure); unexpected exceptions keep their stack trace because they are bugs.

namespace Matq.Cli.Common;

public static class CliHost
{
    public const int UsageError = 2;
    public const int Failure = 1;

    public static int Run(RootCommand root, string[] args, IAnsiConsole console)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // "Unrecognized command or argument 'x'" says more than the "Required command was not provided" that comes with it.
            var error = parse.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)) ?? parse.Errors[0];
            Error(console, OneLine(error.Message) + " (see matq --help)");
            return UsageError;
        }
        var output = new ConsoleWriter(console);
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = output, EnableDefaultExceptionHandler = false });
        }
        catch (MatqException e)
        {
            Error(console, OneLine(e.Message));
            return Failure;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Every writer checks its paths first; this is the last guard, so a file-system failure is still one line.
            Error(console, OneLine(e.Message) + " (a file-system error: check the paths given, permissions and free space)");
            return Failure;
        }
        catch (OperationCanceledException)
        {
            console.MarkupLine("[yellow]cancelled[/]");
            return Failure;
        }
    }

    // "error: MESSAGE" as one line: the message bypasses Spectre's word wrap (a terminal wraps it; a log keeps it whole).
    private static void Error(IAnsiConsole console, string message)
    {
        console.Markup("[red]error:[/] ");
        var writer = console.Profile.Out.Writer;
        writer.WriteLine(message);
        writer.Flush();
    }

    /// <summary>Longest error line printed; longer messages (e.g. quoting a crafted file's text) are cut.</summary>
    public const int MaxErrorChars = 1000;

    /// <summary>
    /// An error message made safe for a terminal: the characters SafeText calls unsafe (ESC, NUL, CR, LF, C1 codes, Unicode
    /// direction overrides, lone surrogates; the backslash excepted) appear as visible \xNN / \uNNNN escapes, and the line is cut at <see cref="MaxErrorChars"/>.
    /// Messages often quote untrusted text (tensor names, file contents, request bodies), so this is the last guard.
    /// </summary>
    public static string OneLine(string message)
    {
        var sb = new System.Text.StringBuilder(Math.Min(message.Length, MaxErrorChars) + 16);
        int i = 0;
        for (; i < message.Length && sb.Length < MaxErrorChars; i++)
        {
            char ch = message[i];
            if (char.IsHighSurrogate(ch) && i + 1 < message.Length && char.IsLowSurrogate(message[i + 1])) sb.Append(ch).Append(message[++i]);
            // the backslash stays: messages already hold SafeText's escapes, which must not be escaped twice
            else if (ch != '\\' && SafeText.IsUnsafe(ch)) sb.Append(SafeText.Visible(ch));
            else sb.Append(ch);
        }
        if (i < message.Length) sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"… ({message.Length - i} more characters)");
        return sb.ToString();
    }

    /// <summary>Routes System.CommandLine's help text into the injected console.</summary>
    private sealed class ConsoleWriter(IAnsiConsole console) : TextWriter
    {
        private readonly System.Text.StringBuilder _line = new();
        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;
        public override void Write(char value)
        {
            if (value == '\n') { console.WriteLine(_line.ToString()); _line.Clear(); }
            else if (value != '\r') _line.Append(value);
        }
        public override void Flush()
        {
            if (_line.Length > 0) { console.Write(_line.ToString()); _line.Clear(); }
        }
    }
}
