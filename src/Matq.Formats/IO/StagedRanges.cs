// Contract: reading back a byte range that matq itself staged in a temp file (the artifact writer's spill, quantize's code
// spill): whole into a caller's span, or as pieces of at most 4 MiB through one reused buffer, so a consumer that streams
// never holds the range. A range that ends early is an IOException naming what was staged.
using Microsoft.Win32.SafeHandles;

namespace Matq.Formats.IO;

public static class StagedRanges
{
    /// <summary>Largest piece <see cref="Pieces"/> yields.</summary>
    public const int PieceBytes = 4 << 20;

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/> of the file.</summary>
    public static void ReadExactly(SafeFileHandle file, Span<byte> destination, long offset, string what)
    {
        for (int done = 0; done < destination.Length;)
        {
            int n = RandomAccess.Read(file, destination[done..], offset + done);
            if (n <= 0) throw new IOException($"{what} ended early");
            done += n;
        }
    }

    /// <summary><paramref name="length"/> bytes from <paramref name="offset"/>, in pieces valid until the next one is asked for.</summary>
    public static IEnumerable<ReadOnlyMemory<byte>> Pieces(SafeFileHandle file, long offset, long length, string what)
    {
        var buffer = new byte[(int)Math.Min(length, PieceBytes)];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(buffer.Length, length - done);
            ReadExactly(file, buffer.AsSpan(0, n), offset + done, what);
            done += n;
            yield return buffer.AsMemory(0, n);
        }
    }
}
