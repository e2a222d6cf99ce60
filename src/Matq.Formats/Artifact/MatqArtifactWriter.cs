// Builds a .matq artifact (a safetensors file; layout in MatqArtifact.cs) and writes it atomically. It refuses
// anything MatqArtifact.Open would refuse, so a written artifact always reads back.
using System.Runtime.InteropServices;
using System.Text.Json;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Artifact;

public sealed class MatqArtifactWriter : IDisposable
{
    private readonly SafetensorsWriter _st = new();
    // with SpillTo: tensor bytes appended here as they are added and streamed back at Write (deleted on dispose)
    private FileStream? _spill;
    private readonly List<MatqQuantizedEntry> _quantized = new();
    private readonly HashSet<string> _quantNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _stored = new(StringComparer.Ordinal);

    public string Algorithm { get; }
    public int MasterBits { get; }
    public int GroupSize { get; }
    public bool Symmetric { get; }
    public IReadOnlyList<int> TrainedBits { get; }
    /// <summary>The algorithm's configuration (a JSON object); empty object when unset.</summary>
    public JsonElement? AlgorithmConfig { get; set; }
    /// <summary>The HF config.json (a JSON object); see MatqMetadata.ParseObject to build it from text.</summary>
    public JsonElement? ModelConfig { get; set; }
    public MatqTokenizerRef? Tokenizer { get; set; }
    public string CreatedBy { get; set; } = "matq";
    public JsonElement? Extra { get; set; }

    /// <param name="groupSize">Default group size: -1 = per-channel, else input columns per group.</param>
    public MatqArtifactWriter(string algorithm, int masterBits, int groupSize, bool symmetric, IReadOnlyList<int> trainedBits)
    {
        _ = new MatqMetadata(algorithm, masterBits, groupSize, symmetric, trainedBits, []); // validates the fields now
        Algorithm = algorithm; MasterBits = masterBits; GroupSize = groupSize; Symmetric = symmetric; TrainedBits = trainedBits.ToArray();
    }

    /// <summary>
    /// From now on, keeps each added tensor's bytes in a hidden temp file beside <paramref name="artifactPath"/> rather than
    /// in memory, and streams them from there at <see cref="Write"/>: writing a model holds one tensor at a time (the disk
    /// needs room for the artifact twice until the write ends). The file is deleted when the writer is disposed.
    /// </summary>
    public void SpillTo(string artifactPath)
    {
        if (_spill is not null || _stored.Count > 0) throw new InvalidOperationException("SpillTo must come before the first tensor");
        var full = Path.GetFullPath(artifactPath);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            _spill = new FileStream(IO.AtomicFile.TempPath(full), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MatqException($"{artifactPath}: cannot create a temp file beside it ({e.Message.Split('\n')[0]}); check that the folder is writable");
        }
    }

    private void Store(string name, SafetensorsDtype dtype, long[] shape, byte[] data)
    {
        if (_spill is null) _st.Add(name, dtype, shape, data);
        else Stage(name, dtype, shape, data);
    }

    // Bytes that only need staging when spilling (group scales, zeros, perm): written from the caller's array, copied
    // only when the tensors are kept in memory (at g32 an 8B model's scales and zeros are 1.75 GB of copies otherwise).
    private void Store(string name, SafetensorsDtype dtype, long[] shape, ReadOnlySpan<byte> data)
    {
        if (_spill is null) _st.Add(name, dtype, shape, data.ToArray());
        else Stage(name, dtype, shape, data);
    }

    private void Stage(string name, SafetensorsDtype dtype, long[] shape, ReadOnlySpan<byte> data)
    {
        long offset = _spill!.Seek(0, SeekOrigin.End);
        try
        {
            _spill.Write(data);
        }
        catch (IOException e)
        {
            throw new MatqException($"cannot stage tensor {SafeText.Quote(name)} ({e.Message.Split('\n')[0]}); is the disk full?");
        }
        var spill = _spill;
        long length = data.Length;
        _st.AddStreamed(name, dtype, shape, () => ReadBack(spill, offset, length));
    }

    private static IEnumerable<ReadOnlyMemory<byte>> ReadBack(FileStream spill, long offset, long length) =>
        IO.StagedRanges.Pieces(spill.SafeFileHandle, offset, length, "the staged tensor data");

    public void Dispose() => _spill?.Dispose();

    /// <summary>Adds W from its parts: codes U8 [out*in], scales/zeros [out*ceil(in/g)], optional perm [in]; g defaults to GroupSize.</summary>
    public MatqArtifactWriter AddQuantized(string name, int outFeatures, int inFeatures, byte[] codes, float[] scales, float[] zeros,
        int? groupSize = null, int[]? perm = null) =>
        AddQuantized(new MatqQuantizedTensor(name, outFeatures, inFeatures, groupSize ?? GroupSize, codes, scales, zeros, perm));

    public MatqArtifactWriter AddQuantized(MatqQuantizedTensor t)
    {
        t.ValidateCodes(MasterBits);
        var e = t.Entry;
        var names = ClaimNames(e);
        Store(e.CodesName, SafetensorsDtype.U8, [e.OutFeatures, e.InFeatures], t.Codes);
        StoreParts(e, t.Scales, t.Zeros, t.Perm);
        foreach (var s in t.SideTensors) Store(e.SideName(s.Suffix), s.Dtype, s.Shape, s.Data);
        Claimed(e, names);
        return this;
    }

    /// <summary>
    /// Adds W whose codes (U8 [out, in], stored column order) are produced at <see cref="Write"/> by <paramref name="codes"/>,
    /// piece by piece, straight into the artifact (e.g. read from a resume checkpoint): neither held nor staged. Scales,
    /// zeros and perm are checked now; the codes' range (&lt; 2^master bits) and count as they stream, and a bad piece
    /// fails the write with nothing written.
    /// </summary>
    public MatqArtifactWriter AddQuantizedStreamed(string name, int outFeatures, int inFeatures, int groupSize, float[] scales, float[] zeros,
        int[]? perm, Func<IEnumerable<ReadOnlyMemory<byte>>> codes)
    {
        ArgumentNullException.ThrowIfNull(codes);
        var e = new MatqQuantizedEntry(name, outFeatures, inFeatures, groupSize, perm is not null, []);
        MatqQuantizedTensor.ValidateParts(e, scales, zeros, perm);
        var names = ClaimNames(e);
        int bits = MasterBits;
        _st.AddStreamed(e.CodesName, SafetensorsDtype.U8, [outFeatures, inFeatures], () => MatqQuantizedTensor.CheckedCodes(e, bits, codes()));
        StoreParts(e, scales, zeros, perm);
        Claimed(e, names);
        return this;
    }

    private List<string> ClaimNames(MatqQuantizedEntry e)
    {
        var names = new List<string> { e.CodesName, e.ScalesName, e.ZerosName };
        if (e.HasPerm) names.Add(e.PermName);
        names.AddRange(e.SideSuffixes.Select(e.SideName));
        if (_stored.Contains(e.Name) || _quantNames.Contains(e.Name))
            throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)} was already added (as float or quantized)");
        foreach (var n in names)
        {
            if (_stored.Contains(n) || _quantNames.Contains(n))
                throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: its tensor name {SafeText.Quote(n)} is already taken");
        }
        return names;
    }

    private void StoreParts(MatqQuantizedEntry e, float[] scales, float[] zeros, int[]? perm)
    {
        long o = e.OutFeatures, g = e.GroupCount;
        Store(e.ScalesName, SafetensorsDtype.F32, [o, g], MemoryMarshal.AsBytes(scales.AsSpan()));
        Store(e.ZerosName, SafetensorsDtype.F32, [o, g], MemoryMarshal.AsBytes(zeros.AsSpan()));
        if (perm is not null) Store(e.PermName, SafetensorsDtype.I32, [e.InFeatures], MemoryMarshal.AsBytes(perm.AsSpan()));
    }

    private void Claimed(MatqQuantizedEntry e, List<string> names)
    {
        _quantNames.Add(e.Name);
        foreach (var n in names) _stored.Add(n);
        _quantized.Add(e);
    }

    /// <summary>Adds a float tensor from fp32 values, stored as F32, F16 or BF16 (narrowing must stay finite).</summary>
    public MatqArtifactWriter AddFloat(string name, long[] shape, ReadOnlySpan<float> values, SafetensorsDtype storeAs = SafetensorsDtype.F32)
    {
        _ = new MatqFloatTensor(name, shape, storeAs, values.ToArray()); // shape, dtype and finiteness
        byte[] data = storeAs switch
        {
            SafetensorsDtype.F32 => MemoryMarshal.AsBytes(values).ToArray(),
            SafetensorsDtype.BF16 => SafetensorsDtypes.Float32ToBf16(values),
            _ => NarrowToF16(values),
        };
        return AddFloatRaw(name, storeAs, shape, data);
    }

    /// <summary>Adds a float tensor from its stored bytes, untouched (e.g. a bf16 norm copied from the HF checkpoint).</summary>
    public MatqArtifactWriter AddFloatRaw(string name, SafetensorsDtype dtype, long[] shape, byte[] data)
    {
        if (!SafetensorsDtypes.IsFloat(dtype) || dtype == SafetensorsDtype.F64)
            throw new MatqException($"float tensor {SafeText.Quote(name)} has dtype {SafetensorsDtypes.ToName(dtype)}; a .matq stores float tensors as F32, F16 or BF16");
        long bytes = SafetensorsDtypes.SizeOf(dtype);
        foreach (var d in shape) bytes = d < 0 ? -1 : checked(bytes * d);
        if (bytes != data.LongLength)
            throw new MatqException($"float tensor {SafeText.Quote(name)}: {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] needs {bytes} bytes, got {data.LongLength}");
        if (string.IsNullOrWhiteSpace(name) || name == "__metadata__")
            throw new MatqException($"float tensor name {SafeText.Quote(name)} is empty or reserved");
        // finiteness, checked in slices: an 8B model's embedding would otherwise be widened to fp32 whole (2 GiB)
        MatqFloatTensor.CheckFiniteRaw(dtype, data, $"float tensor {SafeText.Quote(name)}");
        if (name.EndsWith(".qcodes", StringComparison.Ordinal))
            throw new MatqException($"float tensor {SafeText.Quote(name)}: names ending in .qcodes are reserved for quantized codes");
        if (_stored.Contains(name) || _quantNames.Contains(name))
            throw new MatqException($"float tensor {SafeText.Quote(name)}: the name is already taken by another tensor");
        Store(name, dtype, shape, data);
        _stored.Add(name);
        return this;
    }

    private static byte[] NarrowToF16(ReadOnlySpan<float> values)
    {
        var data = new byte[values.Length * 2];
        var dst = MemoryMarshal.Cast<byte, Half>(data.AsSpan());
        for (int i = 0; i < values.Length; i++) dst[i] = (Half)values[i];
        return data;
    }

    /// <summary>The metadata as it will be written (validated).</summary>
    public MatqMetadata BuildMetadata() => new(Algorithm, MasterBits, GroupSize, Symmetric, TrainedBits, _quantized,
        AlgorithmConfig, ModelConfig, Tokenizer, CreatedBy, Extra);

    /// <summary>Writes the artifact via temp file + rename; on failure any previous file at <paramref name="path"/> is intact.</summary>
    public void Write(string path)
    {
        var md = BuildMetadata();
        _st.Metadata.Clear();
        _st.Metadata[MatqMetadata.Key] = md.ToJson();
        foreach (var (k, v) in MatqArtifact.FlatKeys(md)) _st.Metadata[k] = v;
        _st.Write(path);
    }
}
