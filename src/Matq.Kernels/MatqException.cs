namespace Matq;

/// <summary>
/// A user-facing failure: bad input, a bad file, an unsupported option. Its Message is one line
/// that names the thing at fault and the fix; the CLI prints it and exits non-zero, without a stack trace.
/// Programming errors use the ordinary exception types instead.
/// </summary>
public class MatqException : Exception
{
    public MatqException(string message) : base(message) { }
    public MatqException(string message, Exception inner) : base(message, inner) { }
}
