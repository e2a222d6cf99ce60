// Contract: gives the 408 that Kestrel itself sends (request headers slower than RequestHeadersTimeout, or a body it
// timed out while no application code answered) the server's OpenAI-style JSON error body, keeping its status line and
// headers. Every other byte Kestrel writes passes through unchanged.
//
// Why a connection middleware: when the headers time out, Kestrel answers "408 Request Timeout", Content-Length: 0 and
// closes the connection before any request reaches the application, so no HTTP middleware, endpoint or exception handler
// runs, and Kestrel has no setting or hook for that response's body (its maintainers: "this category of errors is not
// customisable", aspnet/KestrelHttpServer#2947). Connection middleware (ListenOptions.Use) is Kestrel's supported
// extension point below HTTP: it sees the bytes Kestrel writes to the socket. This one holds each flush's bytes and, when
// they are a whole response head "HTTP/1.1 408 ...", Content-Length: 0, replaces them with the same head plus a JSON
// body. That shape is unambiguous here: Kestrel writes a response head only at the start of a flush (the previous
// response is flushed before the next request is read), a body chunk never starts with "HTTP/1.1 " (it is JSON, an
// SSE event or a chunk-size line), and the application never answers an error without a JSON body.
using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;

namespace Matq.Cli.Serving;

internal static class KestrelErrorBody
{
    private static readonly byte[] HeadPrefix = "HTTP/1.1 "u8.ToArray();
    private static readonly byte[] EndOfHead = "\r\n\r\n"u8.ToArray();

    /// <summary>Connection middleware: the transport's output goes through <see cref="RewritingWriter"/>.</summary>
    /// <summary>Statuses Kestrel answers by itself, without a body, before the application sees a request: a malformed
    /// request line or header (400), headers slower than RequestHeadersTimeout (408), headers over the size limit (431).</summary>
    public static readonly IReadOnlyList<int> KestrelStatuses = [400, 408, 431];

    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(Func<int, byte[]?> bodyFor) => next => async connection =>
    {
        var transport = connection.Transport;
        var writer = new RewritingWriter(transport.Output, bodyFor);
        connection.Transport = new DuplexPipe(transport.Input, writer);
        try
        {
            await next(connection).ConfigureAwait(false);
        }
        finally
        {
            connection.Transport = transport;
        }
    };

    /// <summary>The bytes to send instead of <paramref name="written"/>: a bodyless 400/408/431 head gets the JSON body
    /// <paramref name="bodyFor"/> gives for its status; else null (passed on unchanged).</summary>
    internal static byte[]? Rewrite(ReadOnlySpan<byte> written, Func<int, byte[]?> bodyFor)
    {
        if (!written.StartsWith(HeadPrefix) || written.Length < HeadPrefix.Length + 4 || written[HeadPrefix.Length + 3] != (byte)' '
            || !written.EndsWith(EndOfHead) || written.IndexOf(EndOfHead) != written.Length - EndOfHead.Length)
            return null;
        if (!int.TryParse(written.Slice(HeadPrefix.Length, 3), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int status)
            || !KestrelStatuses.Contains(status))
            return null;
        var lines = Encoding.ASCII.GetString(written[..^EndOfHead.Length]).Split("\r\n");
        if (!lines.Any(l => l.Equals("Content-Length: 0", StringComparison.OrdinalIgnoreCase))) return null;
        if (bodyFor(status) is not { } body) return null;
        var head = new StringBuilder();
        foreach (var line in lines)
            if (!line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase)) head.Append(line).Append("\r\n");
        head.Append("Content-Type: application/json; charset=utf-8\r\n");
        if (status == 408) head.Append("Retry-After: 1\r\n");
        head.Append("Content-Length: ").Append(body.Length).Append("\r\n\r\n");
        return [.. Encoding.ASCII.GetBytes(head.ToString()), .. body];
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    /// <summary>Holds what Kestrel writes until it flushes or completes, then passes it on (rewritten if it is that 408).</summary>
    private sealed class RewritingWriter(PipeWriter inner, Func<int, byte[]?> bodyFor) : PipeWriter
    {
        private readonly ArrayBufferWriter<byte> _pending = new(4096);
        private readonly Lock _lock = new();

        public override Memory<byte> GetMemory(int sizeHint = 0) => _pending.GetMemory(sizeHint);
        public override Span<byte> GetSpan(int sizeHint = 0) => _pending.GetSpan(sizeHint);
        public override void Advance(int bytes) => _pending.Advance(bytes);
        public override bool CanGetUnflushedBytes => true;
        public override long UnflushedBytes => _pending.WrittenCount;
        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        private void PassOn()
        {
            lock (_lock)
            {
                if (_pending.WrittenCount == 0) return;
                var written = _pending.WrittenSpan;
                if (Rewrite(written, bodyFor) is byte[] rewritten) inner.Write(rewritten);
                else inner.Write(written);
                _pending.ResetWrittenCount();
            }
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            PassOn();
            return inner.FlushAsync(cancellationToken);
        }

        public override void Complete(Exception? exception = null)
        {
            if (exception is null) PassOn();
            inner.Complete(exception);
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            if (exception is null) PassOn();
            await inner.CompleteAsync(exception).ConfigureAwait(false);
        }
    }
}
