// IDX files (the MNIST container): big-endian int32 magic 0x00000803 + count, rows, cols then count·rows·cols
// unsigned bytes for images; magic 0x00000801 + count then count bytes for labels. Readers check all of it.
using System.Buffers.Binary;

namespace Matq.Data;

/// <summary>Header of an IDX file: dims = [count] for labels, [count, rows, cols] for images.</summary>
public sealed record IdxHeader(int Magic, int[] Dims, int HeaderBytes)
{
    public long PayloadBytes => Dims.Aggregate(1L, (a, d) => a * d);
}

/// <summary>Images as raw bytes, row-major [count, rows, cols].</summary>
public sealed record IdxImages(int Count, int Rows, int Cols, byte[] Pixels);

public static class Idx
{
    public const int ImagesMagic = 0x00000803;
    public const int LabelsMagic = 0x00000801;

    /// <summary>Reads and checks the header of <paramref name="path"/> against <paramref name="expectedMagic"/>
    /// and the file length, without reading the payload.</summary>
    public static IdxHeader ReadHeader(string path, int expectedMagic)
    {
        if (!File.Exists(path)) throw new MatqException($"IDX file {path} is missing: fetch the dataset again");
        using var f = File.OpenRead(path);
        return ReadHeader(f, path, expectedMagic);
    }

    static IdxHeader ReadHeader(FileStream f, string path, int expectedMagic)
    {
        int rank = expectedMagic & 0xFF;
        var head = new byte[4 + 4 * rank];
        if (f.ReadAtLeast(head.AsSpan(0, 4), 4, throwOnEndOfStream: false) < 4)
            throw new MatqException($"IDX file {path} is truncated ({f.Length} bytes, no magic number): fetch the dataset again");
        int magic = BinaryPrimitives.ReadInt32BigEndian(head);
        if (magic != expectedMagic)
            throw new MatqException(
                $"IDX file {path} has magic 0x{magic:X8}, expected 0x{expectedMagic:X8} ({Kind(expectedMagic)}): pass the right file or fetch the dataset again");
        if (f.ReadAtLeast(head.AsSpan(4), head.Length - 4, throwOnEndOfStream: false) < head.Length - 4)
            throw new MatqException($"IDX file {path} is truncated ({f.Length} bytes, shorter than its {head.Length}-byte header): fetch the dataset again");
        var dims = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(head.AsSpan(4 + 4 * i));
            if (dims[i] <= 0)
                throw new MatqException($"IDX file {path} has dimension {i} = {dims[i]}, expected > 0: fetch the dataset again");
        }
        var header = new IdxHeader(magic, dims, head.Length);
        long expected = head.Length + header.PayloadBytes;
        if (f.Length != expected)
            throw new MatqException(
                $"IDX file {path} is {f.Length} bytes but its header [{string.Join("×", dims)}] needs {expected}: " +
                (f.Length < expected ? "it is truncated, fetch the dataset again" : "it has trailing data, fetch the dataset again"));
        return header;
    }

    public static IdxImages ReadImages(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"IDX file {path} is missing: fetch the dataset again");
        using var f = File.OpenRead(path);
        var h = ReadHeader(f, path, ImagesMagic);
        var pixels = new byte[checked((int)h.PayloadBytes)];
        f.ReadExactly(pixels);
        return new IdxImages(h.Dims[0], h.Dims[1], h.Dims[2], pixels);
    }

    public static byte[] ReadLabels(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"IDX file {path} is missing: fetch the dataset again");
        using var f = File.OpenRead(path);
        var h = ReadHeader(f, path, LabelsMagic);
        var labels = new byte[h.Dims[0]];
        f.ReadExactly(labels);
        return labels;
    }

    /// <summary>Writes an IDX file; used for tests and for exporting subsets.</summary>
    public static void Write(string path, int magic, int[] dims, ReadOnlySpan<byte> payload)
    {
        if ((magic & 0xFF) != dims.Length) throw new ArgumentException("magic rank and dims disagree", nameof(dims));
        if (dims.Aggregate(1L, (a, d) => a * d) != payload.Length) throw new ArgumentException("payload size disagrees with dims", nameof(payload));
        using var f = File.Create(path);
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, magic);
        f.Write(word);
        foreach (var d in dims) { BinaryPrimitives.WriteInt32BigEndian(word, d); f.Write(word); }
        f.Write(payload);
    }

    static string Kind(int magic) => magic == ImagesMagic ? "unsigned-byte images, rank 3" : "unsigned-byte labels, rank 1";
}
