// Contract: where a block-streamed method without a resume checkpoint (rtn) puts its finished linears' codes, so a run
// holds one linear's codes at a time instead of the model's (1 byte per weight: 7 GB for an 8B model). A hidden temp
// file beside the artifact (AtomicFile's temp name, so a killed run's file is cleaned by the next write of the same
// artifact), append-only; each offloaded result reads its bytes back by offset, whole or in pieces (which the artifact
// writer streams into the file); the file is deleted on dispose.
using Matq.Formats.IO;

namespace Matq.Quantization.Pipeline;

public sealed class CodeSpill : IDisposable
{
    private readonly FileStream _file;
    private readonly Lock _gate = new();

    /// <summary>Creates the spill file beside <paramref name="artifactPath"/> (its folder is created if missing).</summary>
    public CodeSpill(string artifactPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(artifactPath);
        var full = System.IO.Path.GetFullPath(artifactPath);
        Path = AtomicFile.TempPath(full);
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
            _file = new FileStream(Path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MatqException($"{artifactPath}: cannot create a temp file beside it for the finished codes ({e.Message.Split('\n')[0]}); check that the folder is writable");
        }
    }

    /// <summary>The spill file (hidden, beside the artifact).</summary>
    public string Path { get; }

    /// <summary>Bytes written so far.</summary>
    public long Length
    {
        get { lock (_gate) return _file.Length; }
    }

    /// <summary><paramref name="result"/> with its codes written here and dropped from memory; they are read back, byte for
    /// byte, on each use of <see cref="QuantizedLinearResult.Codes"/>.</summary>
    public QuantizedLinearResult Offload(QuantizedLinearResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var codes = result.Codes;
        long offset;
        lock (_gate)
        {
            offset = _file.Seek(0, SeekOrigin.End);
            try
            {
                _file.Write(codes);
                _file.Flush();
            }
            catch (IOException e)
            {
                throw new MatqException($"cannot stage the codes of {result.Name} in {Path} ({e.Message.Split('\n')[0]}); is the disk full?");
            }
        }
        int length = codes.Length;
        return result.WithOffloadedCodes(() => Read(offset, length), () => Pieces(offset, length));
    }

    private byte[] Read(long offset, int length)
    {
        var buffer = new byte[length];
        StagedRanges.ReadExactly(_file.SafeFileHandle, buffer, offset, $"{Path}: the staged codes");
        return buffer;
    }

    // The codes in pieces through one reused buffer: the artifact writer streams them from here into the file (no
    // layer-sized array per linear: at the end of an 8B run those arrays piled up as 7 GB of uncollected large objects
    // before the GC ran, and each was staged once more in the writer's own temp file).
    private IEnumerable<ReadOnlyMemory<byte>> Pieces(long offset, int length) =>
        StagedRanges.Pieces(_file.SafeFileHandle, offset, length, $"{Path}: the staged codes");

    public void Dispose() => _file.Dispose();
}
