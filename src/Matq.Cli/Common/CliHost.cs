// Runs a parsed command line: parse errors and MatqExceptions become one red line and a non-zero exit code
// (2 = usage, 1 = failure); unexpected exceptions keep their stack trace because they are bugs.
using System.CommandLine;
using Spectre.Console;

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
            console.MarkupLine($"[red]error:[/] {Markup.Escape(error.Message)} (see matq --help)");
            return UsageError;
        }
        var output = new ConsoleWriter(console);
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = output, EnableDefaultExceptionHandler = false });
        }
        catch (MatqException e)
        {
            console.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            return Failure;
        }
        catch (OperationCanceledException)
        {
            console.MarkupLine("[yellow]cancelled[/]");
            return Failure;
        }
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
