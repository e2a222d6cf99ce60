// Contract: a .matq artifact opened for serving without loading it: the header is read and validated as
// MatqArtifact.ReadMetadata does (layout, dtypes, shapes; a truncated file is refused there with one line, since the
// tensors must tile the data buffer up to the file's end), and each tensor is then read on demand, one at a time:
// quantized codes through a memory-mapped view of just that tensor (System.IO.MemoryMappedFiles; unmapped again when the
// view is disposed, so the mapped pages leave the process's resident set), float tensors into managed arrays in their
// stored dtype or widened to fp32. Every value check of MatqArtifact.Open runs on what is read (codes fit the master
// bits, scales finite and > 0, zeros finite, perm a permutation, floats finite), so an artifact either reader refuses
// is refused by both with the same kind of line, naming the file and the tensor.
using System.IO.MemoryMappedFiles;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Artifact;

/// <summary>The small parts of a quantized weight (scales, zeros, perm, side tensors), read and validated; the codes
/// stay in the file (<see cref="MappedMatqArtifact.MapCodes"/>).</summary>
public sealed record MatqQuantizedParts(MatqQuantizedEntry Entry, float[] Scales, float[] Zeros, int[]? Perm, IReadOnlyList<MatqSideTensor> SideTensors);

/// <summary>A read-only memory-mapped view of one tensor's bytes; dispose to unmap it.</summary>
public sealed unsafe class MappedTensorView : IDisposable
{
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _pointer;
    private readonly int _length;

    internal MappedTensorView(MemoryMappedFile map, SafetensorsTensorInfo t, string path)
    {
        if (t.ByteLength > int.MaxValue)
            throw new MatqException($"{path}: tensor {SafeText.Quote(t.Name)} holds {t.ByteLength} bytes, more than one mapped span can address (2 GiB)");
        _length = (int)t.ByteLength;
        if (_length == 0) return;   // CreateViewAccessor(offset, 0) would map to the end of the file
        _view = map.CreateViewAccessor(t.Begin, t.ByteLength, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + _view.PointerOffset;
    }

    public ReadOnlySpan<byte> Span
    {
        get
        {
            if (_length > 0 && _pointer is null) throw new ObjectDisposedException(nameof(MappedTensorView));
            return _length == 0 ? [] : new ReadOnlySpan<byte>(_pointer, _length);
        }
    }

    public void Dispose()
    {
        if (_view is null || _pointer is null) return;
        _pointer = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
    }
}

public sealed class MappedMatqArtifact : IDisposable
{
    private readonly SafetensorsFile _file;
    private readonly MemoryMappedFile _map;
    private readonly Dictionary<string, MatqQuantizedEntry> _quantized;
    private readonly Dictionary<string, SafetensorsTensorInfo> _floats;

    public string Path { get; }
    public MatqMetadata Metadata { get; }
    /// <summary>Quantized weights in metadata order.</summary>
    public IReadOnlyList<MatqQuantizedEntry> Quantized => Metadata.Quantized;
    /// <summary>The float tensors (F32/F16/BF16) in file order, as header entries (nothing read).</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Floats { get; }

    private MappedMatqArtifact(string path, SafetensorsFile file, MemoryMappedFile map, MatqMetadata metadata, List<SafetensorsTensorInfo> floats)
    {
        Path = path; _file = file; _map = map; Metadata = metadata; Floats = floats;
        _quantized = metadata.Quantized.ToDictionary(q => q.Name, StringComparer.Ordinal);
        _floats = floats.ToDictionary(f => f.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens <paramref name="path"/>, validates its header and maps it read-only; no tensor data is read.</summary>
    public static MappedMatqArtifact Open(string path)
    {
        var f = SafetensorsFile.Open(path);   // a truncated file is refused here: tensors must tile the data up to its end
        try
        {
            var md = MatqArtifact.ReadMetadata(f);
            var floats = MatqArtifact.FloatTensors(f, md).ToList();
            MemoryMappedFile map;
            var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            try
            {
                map = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            }
            catch (IOException e)
            {
                handle.Dispose();
                throw new MatqException($"{path}: cannot memory-map the artifact ({SafeText.Escape(e.Message.Split('\n')[0])})");
            }
            return new MappedMatqArtifact(path, f, map, md, floats);
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    public bool TryGetQuantized(string name, out MatqQuantizedEntry entry) => _quantized.TryGetValue(name, out entry!);
    public bool TryGetFloat(string name, out SafetensorsTensorInfo info) => _floats.TryGetValue(name, out info!);

    public SafetensorsTensorInfo GetFloatInfo(string name) => _floats.TryGetValue(name, out var t) ? t
        : throw new MatqException($"{Path}: {SafeText.Quote(name)} is not a float tensor of this artifact");

    /// <summary>Reads and validates a quantized weight's scales, zeros, perm and side tensors (not its codes).</summary>
    public MatqQuantizedParts ReadParts(MatqQuantizedEntry e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return MatqArtifact.Prefixed(Path, () =>
        {
            var sides = e.SideSuffixes.Select(s =>
            {
                var info = _file.Get(e.SideName(s));
                return new MatqSideTensor(s, info.Dtype, info.Shape, _file.ReadBytes(info.Name));
            }).ToArray();
            var scales = _file.ReadFloat32(e.ScalesName);
            var zeros = _file.ReadFloat32(e.ZerosName);
            int[]? perm = e.HasPerm ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(_file.ReadBytes(e.PermName)).ToArray() : null;
            MatqQuantizedTensor.ValidateParts(e, scales, zeros, perm);
            return new MatqQuantizedParts(e, scales, zeros, perm, sides);
        });
    }

    /// <summary>
    /// Maps a quantized weight's codes U8 [out, in] and checks that they fit the master bits; the caller disposes the
    /// view once it has consumed them (the pages then leave the resident set).
    /// </summary>
    public MappedTensorView MapCodes(MatqQuantizedEntry e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var view = new MappedTensorView(_map, _file.Get(e.CodesName), Path);
        try
        {
            MatqArtifact.Prefixed(Path, () => { MatqQuantizedTensor.ValidateCodes(e.Name, e.InFeatures, view.Span, Metadata.MasterBits); return 0; });
            return view;
        }
        catch
        {
            view.Dispose();
            throw;
        }
    }

    /// <summary>A float tensor widened to fp32, checked finite (what MatqArtifact holds as its Values).</summary>
    public float[] ReadFloat32(string name)
    {
        GetFloatInfo(name);
        var values = _file.ReadFloat32(name);
        MatqArtifact.Prefixed(Path, () => { MatqFloatTensor.CheckFinite(values, $"float tensor {SafeText.Quote(name)}"); return 0; });
        return values;
    }

    /// <summary>A float tensor's bytes as stored (F32, F16 or BF16), checked finite a slice at a time (no fp32 copy).</summary>
    public byte[] ReadStored(string name, out SafetensorsDtype dtype)
    {
        var info = GetFloatInfo(name);
        dtype = info.Dtype;
        var raw = _file.ReadBytes(name);
        var d = dtype;
        MatqArtifact.Prefixed(Path, () => { MatqFloatTensor.CheckFiniteRaw(d, raw, $"float tensor {SafeText.Quote(name)}"); return 0; });
        return raw;
    }

    /// <summary>
    /// Rows <paramref name="firstRow"/>..firstRow+rows−1 of a 2-D float tensor widened to fp32 into <paramref name="dst"/>
    /// (positioned reads of just those rows, checked finite), for consumers that go through a table a block of rows at a
    /// time (an lm_head quantized at load) without holding it.
    /// </summary>
    public void ReadRows(string name, int firstRow, int rows, Span<float> dst)
    {
        var info = GetFloatInfo(name);
        if (info.Shape.Length != 2 || firstRow < 0 || rows < 0 || firstRow + rows > info.Shape[0])
            throw new ArgumentOutOfRangeException(nameof(firstRow), $"rows {firstRow}..{firstRow + rows - 1} of {SafeText.Quote(name)} {info.ShapeText}");
        int cols = (int)info.Shape[1], size = SafetensorsDtypes.SizeOf(info.Dtype);
        long offset = (long)firstRow * cols * size;
        int bytes = checked(rows * cols * size);
        var values = dst[..(rows * cols)];
        var pool = System.Buffers.ArrayPool<byte>.Shared;
        var buffer = pool.Rent(bytes);
        try
        {
            _file.ReadRange(info, offset, buffer.AsSpan(0, bytes));
            SafetensorsDtypes.ToFloat32(info.Dtype, buffer.AsSpan(0, bytes), values);
        }
        finally
        {
            pool.Return(buffer);
        }
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new MatqException($"{Path}: float tensor {SafeText.Quote(name)} holds {values[i]} at flat index {offset / size + i}; NaN and Inf are not allowed (the model is corrupt or a value overflowed its dtype)");
    }

    public void Dispose()
    {
        _map.Dispose();
        _file.Dispose();
    }
}
