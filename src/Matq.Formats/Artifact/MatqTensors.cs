// Records for the tensors of a .matq artifact; constructors validate shapes and values (MatqException naming
// the tensor). Dequantize() is the reference that defines how codes, scales, zeros and perm combine.
using Matq.Formats.Safetensors;

namespace Matq.Formats.Artifact;

/// <summary>
/// An optional side tensor of a quantized weight W, stored as W.&lt;Suffix&gt; with any dtype; e.g. for
/// extra-precision MatQuant the overflow bucket (positions and extra bits of the few codes that need them).
/// </summary>
public sealed record MatqSideTensor
{
    public string Suffix { get; }
    public SafetensorsDtype Dtype { get; }
    public long[] Shape { get; }
    public byte[] Data { get; }

    public MatqSideTensor(string suffix, SafetensorsDtype dtype, long[] shape, byte[] data)
    {
        long numel = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new MatqException($"side tensor {SafeText.Quote(suffix)}: negative dimension in shape [{string.Join(", ", shape)}]");
            numel = d == 0 || numel <= long.MaxValue / 16 / d ? numel * d : throw new MatqException($"side tensor {SafeText.Quote(suffix)}: shape too large");
        }
        if (numel * SafetensorsDtypes.SizeOf(dtype) != data.Length)
            throw new MatqException($"side tensor {SafeText.Quote(suffix)}: {SafetensorsDtypes.ToName(dtype)}[{string.Join(", ", shape)}] needs {numel * SafetensorsDtypes.SizeOf(dtype)} bytes, got {data.Length}");
        if (SafetensorsDtypes.IsFloat(dtype))
            MatqFloatTensor.CheckFinite(SafetensorsDtypes.ToFloat32(dtype, data, suffix), $"side tensor {SafeText.Quote(suffix)}");
        Suffix = suffix; Dtype = dtype; Shape = (long[])shape.Clone(); Data = data;
    }
}

/// <summary>
/// One quantized linear weight W [OutFeatures, InFeatures] with c-bit master codes.
/// Layout (all row-major): Codes U8 [out, in], Scales/Zeros F32 [out, GroupCount], Perm I32 [in] or null.
/// Stored column k of a row holds original input column Perm[k] (identity without Perm); groups are formed
/// over stored columns: column k belongs to group k / GroupWidth. Dequantized value:
///   W[o, Perm[k]] = Scales[o, k/g] * (Codes[o, k] - Zeros[o, k/g])
/// Zeros are F32 because some algorithms produce fractional zero points; symmetric quantizers store 2^(c-1).
/// </summary>
public sealed record MatqQuantizedTensor
{
    public MatqQuantizedEntry Entry { get; }
    public byte[] Codes { get; }
    public float[] Scales { get; }
    public float[] Zeros { get; }
    public int[]? Perm { get; }
    public IReadOnlyList<MatqSideTensor> SideTensors { get; }

    public string Name => Entry.Name;
    public int OutFeatures => Entry.OutFeatures;
    public int InFeatures => Entry.InFeatures;
    public int GroupSize => Entry.GroupSize;
    public int GroupWidth => Entry.GroupWidth;
    public int GroupCount => Entry.GroupCount;

    public MatqQuantizedTensor(string name, int outFeatures, int inFeatures, int groupSize, byte[] codes, float[] scales, float[] zeros,
        int[]? perm = null, IReadOnlyList<MatqSideTensor>? sideTensors = null)
    {
        var sides = (sideTensors ?? []).ToArray();
        Entry = new MatqQuantizedEntry(name, outFeatures, inFeatures, groupSize, perm is not null, sides.Select(s => s.Suffix).ToArray());
        long cells = (long)outFeatures * inFeatures;
        if (codes.LongLength != cells)
            throw new MatqException($"quantized tensor {SafeText.Quote(name)}: codes hold {codes.LongLength} values, shape [{outFeatures}, {inFeatures}] needs {cells}");
        ValidateParts(Entry, scales, zeros, perm);
        Codes = codes; Scales = scales; Zeros = zeros; Perm = perm; SideTensors = sides;
    }

    /// <summary>The checks of the constructor on scales, zeros and perm, for readers that keep the codes elsewhere (a
    /// memory-mapped artifact): scales finite and &gt; 0, zeros finite, perm a permutation of 0..in−1.</summary>
    public static void ValidateParts(MatqQuantizedEntry e, ReadOnlySpan<float> scales, ReadOnlySpan<float> zeros, ReadOnlySpan<int> perm)
    {
        ArgumentNullException.ThrowIfNull(e);
        long groups = (long)e.OutFeatures * e.GroupCount;
        if ((long)scales.Length != groups || (long)zeros.Length != groups)
            throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: scales hold {(long)scales.Length} and zeros {(long)zeros.Length} values, [out, ceil(in/g)] = [{e.OutFeatures}, {e.GroupCount}] needs {groups}");
        for (int i = 0; i < scales.Length; i++)
        {
            if (!float.IsFinite(scales[i]) || scales[i] <= 0)
                throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: scale {scales[i]} at [{i / e.GroupCount}, {i % e.GroupCount}] must be finite and > 0");
        }
        for (int i = 0; i < zeros.Length; i++)
        {
            if (!float.IsFinite(zeros[i]))
                throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: zero point {zeros[i]} at [{i / e.GroupCount}, {i % e.GroupCount}] must be finite");
        }
        if (!perm.IsEmpty || e.HasPerm)
        {
            if (perm.Length != e.InFeatures)
                throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: perm holds {perm.Length} entries, in_features is {e.InFeatures}");
            var seen = new bool[e.InFeatures];
            foreach (var p in perm)
            {
                if ((uint)p >= (uint)e.InFeatures || seen[p])
                    throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: perm is not a permutation of 0..{e.InFeatures - 1} (entry {p} is out of range or repeated)");
                seen[p] = true;
            }
        }
    }

    /// <summary>Throws when a code of <paramref name="codes"/> does not fit <paramref name="masterBits"/> bits (the check of <see cref="ValidateCodes(int)"/>).</summary>
    /// <paramref name="offset"/>: where <paramref name="codes"/> starts in the tensor's codes (a piece of a stream), for the position named.
    public static void ValidateCodes(string name, int inFeatures, ReadOnlySpan<byte> codes, int masterBits, long offset = 0)
    {
        if (masterBits is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(masterBits), masterBits, "master bits must be in 1..8");
        if (masterBits == 8) return; // every byte fits
        int i = codes.IndexOfAnyInRange((byte)(1 << masterBits), (byte)255);
        if (i >= 0)
            throw new MatqException($"quantized tensor {SafeText.Quote(name)}: code {codes[i]} at [{(offset + i) / inFeatures}, {(offset + i) % inFeatures}] does not fit master_bits = {masterBits} (codes must be < {1 << masterBits})");
    }

    /// <summary>The codes of <paramref name="e"/> (U8 [out, in]) as they stream in <paramref name="pieces"/>, each piece
    /// checked as it passes: codes &lt; 2^<paramref name="masterBits"/> (positions named in the whole tensor), and exactly
    /// out·in of them in all (a longer stream fails at the piece that overruns, a shorter one at its end).</summary>
    public static IEnumerable<ReadOnlyMemory<byte>> CheckedCodes(MatqQuantizedEntry e, int masterBits, IEnumerable<ReadOnlyMemory<byte>> pieces)
    {
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(pieces);
        long cells = (long)e.OutFeatures * e.InFeatures, at = 0;
        foreach (var piece in pieces)
        {
            if (at + piece.Length > cells)
                throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: its codes hold more than the {cells} values of [{e.OutFeatures}, {e.InFeatures}]");
            ValidateCodes(e.Name, e.InFeatures, piece.Span, masterBits, at);
            at += piece.Length;
            yield return piece;
        }
        if (at != cells)
            throw new MatqException($"quantized tensor {SafeText.Quote(e.Name)}: its codes hold {at} values, [{e.OutFeatures}, {e.InFeatures}] needs {cells}");
    }

    /// <summary>Throws when a code does not fit in <paramref name="masterBits"/> bits (codes must be &lt; 2^c).</summary>
    public void ValidateCodes(int masterBits) => ValidateCodes(Name, InFeatures, Codes, masterBits);

    /// <summary>Reference dequantization to fp32 [out, in] in the original column order.</summary>
    public float[] Dequantize()
    {
        int n = InFeatures, g = GroupWidth, groups = GroupCount;
        var w = new float[(long)OutFeatures * n];
        for (int o = 0; o < OutFeatures; o++)
        {
            for (int k = 0; k < n; k++)
            {
                int gi = o * groups + k / g;
                int col = Perm is null ? k : Perm[k];
                w[(long)o * n + col] = Scales[gi] * (Codes[(long)o * n + k] - Zeros[gi]);
            }
        }
        return w;
    }
}

/// <summary>A tensor kept in floating point (norms, embeddings, biases), widened to fp32; StoredDtype is F32, F16 or BF16.</summary>
public sealed record MatqFloatTensor
{
    public string Name { get; }
    public long[] Shape { get; }
    public SafetensorsDtype StoredDtype { get; }
    public float[] Values { get; }

    public MatqFloatTensor(string name, long[] shape, SafetensorsDtype storedDtype, float[] values)
    {
        if (string.IsNullOrWhiteSpace(name) || name == "__metadata__")
            throw new MatqException($"float tensor name {SafeText.Quote(name)} is empty or reserved");
        if (storedDtype is not (SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16))
            throw new MatqException($"float tensor {SafeText.Quote(name)} has dtype {SafetensorsDtypes.ToName(storedDtype)}; a .matq stores float tensors as F32, F16 or BF16");
        long numel = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new MatqException($"float tensor {SafeText.Quote(name)}: negative dimension in shape [{string.Join(", ", shape)}]");
            numel = d == 0 || numel <= long.MaxValue / d ? numel * d : long.MaxValue;
        }
        if (numel != values.LongLength)
            throw new MatqException($"float tensor {SafeText.Quote(name)}: shape [{string.Join(", ", shape)}] needs {numel} values, got {values.LongLength}");
        CheckFinite(values, $"float tensor {SafeText.Quote(name)}");
        Name = name; Shape = (long[])shape.Clone(); StoredDtype = storedDtype; Values = values;
    }

    internal static void CheckFinite(ReadOnlySpan<float> values, string what, long offset = 0)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new MatqException($"{what} holds {values[i]} at flat index {offset + i}; NaN and Inf are not allowed (the model is corrupt or a value overflowed its dtype)");
        }
    }

    /// <summary><see cref="CheckFinite"/> on stored bytes of any float dtype, widened a slice at a time (no fp32 copy of the whole tensor).</summary>
    internal static void CheckFiniteRaw(SafetensorsDtype dtype, ReadOnlySpan<byte> data, string what)
    {
        int size = SafetensorsDtypes.SizeOf(dtype), slice = (1 << 16) * size;
        if (dtype is not (SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16))
        {
            for (int at = 0; at < data.Length; at += slice)
                CheckFinite(SafetensorsDtypes.ToFloat32(dtype, data.Slice(at, Math.Min(slice, data.Length - at)), what), what, at / size);
            return;
        }
        // one reused slice buffer: checking a 1 GB embedding must not leave a GB of widened slices to the collector
        var buffer = new float[1 << 16];
        for (int at = 0; at < data.Length; at += slice)
        {
            var raw = data.Slice(at, Math.Min(slice, data.Length - at));
            var values = buffer.AsSpan(0, raw.Length / size);
            SafetensorsDtypes.ToFloat32(dtype, raw, values);
            CheckFinite(values, what, at / size);
        }
    }
}
