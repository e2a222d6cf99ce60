// Contract: what an algorithm emits per linear — HF module name, uint8 codes [out, in], float32 scales/zeros
// [out, nGroups], optional act-order perm [in], and a LayerReport — and the whole run's QuantizationResult.
using Matq.Runtime.Cuda;
using System.Text.Json.Nodes;
using Matq.Formats.Artifact;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization.Pipeline;

/// <summary>
/// Per-layer numbers: WeightMse = mean((W − Ŵ)²) over the layer at the master bits; HessianError* = tr(ΔW H ΔWᵀ)
/// style errors before (plain RTN) and after the algorithm's solve, for second-order methods only; Seconds of work.
/// </summary>
public sealed record LayerReport(
    string Name,
    int OutFeatures,
    int InFeatures,
    int Bits,
    double WeightMse,
    double? HessianErrorBefore,
    double? HessianErrorAfter,
    double Seconds);

/// <summary>
/// One quantized linear in the artifact's layout (all row-major): Codes [out, in] in stored column order,
/// Scales/Zeros [out, ceil(in/g)], Perm [in] or null (stored column k = original column Perm[k]); groups are
/// taken over stored columns. GroupSize is -1 for per-channel. Ŵ[o, Perm[k]] = Scales[o, k/g]·(Codes[o, k] − Zeros[o, k/g]).
/// </summary>
public sealed record QuantizedLinearResult
{
    public string Name { get; }
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int GroupSize { get; }
    /// <summary>The codes; for a result whose codes were offloaded to disk (<see cref="WithOffloadedCodes"/>), read anew
    /// on each access, so a run holds one layer's codes at a time rather than the model's.</summary>
    public byte[] Codes => _codes ?? _loadCodes!();
    private readonly byte[]? _codes;
    private readonly Func<byte[]>? _loadCodes;
    public float[] Scales { get; }
    public float[] Zeros { get; }
    public int[]? Perm { get; }
    public LayerReport Report { get; }

    public QuantizedLinearResult(string name, int outFeatures, int inFeatures, int groupSize, byte[] codes, float[] scales, float[] zeros,
        int[]? perm, LayerReport report)
    {
        if (name.EndsWith(".weight", StringComparison.Ordinal))
            throw new ArgumentException($"'{name}': give the HF module name (without .weight)", nameof(name));
        // the artifact record validates shapes, scale positivity, finiteness and the permutation
        _ = new MatqQuantizedTensor(name + ".weight", outFeatures, inFeatures, groupSize, codes, scales, zeros, perm);
        Name = name; OutFeatures = outFeatures; InFeatures = inFeatures; GroupSize = groupSize;
        _codes = codes; Scales = scales; Zeros = zeros; Perm = perm; Report = report ?? throw new ArgumentNullException(nameof(report));
    }

    /// <summary>For a result offloaded with a piece reader: its codes in pieces, read as they are consumed (the artifact
    /// writer streams them into the file without holding the layer's codes); null otherwise.</summary>
    public Func<IEnumerable<ReadOnlyMemory<byte>>>? CodePieces { get; }

    private QuantizedLinearResult(QuantizedLinearResult r, Func<byte[]> loadCodes, Func<IEnumerable<ReadOnlyMemory<byte>>>? codePieces)
    {
        Name = r.Name; OutFeatures = r.OutFeatures; InFeatures = r.InFeatures; GroupSize = r.GroupSize;
        _loadCodes = loadCodes; CodePieces = codePieces; Scales = r.Scales; Zeros = r.Zeros; Perm = r.Perm; Report = r.Report;
    }

    /// <summary>This result with its codes dropped from memory and read back by <paramref name="loadCodes"/> (e.g. from the
    /// resume checkpoint, which holds them byte for byte) whenever they are used.</summary>
    public QuantizedLinearResult WithOffloadedCodes(Func<byte[]> loadCodes, Func<IEnumerable<ReadOnlyMemory<byte>>>? codePieces = null) =>
        new(this, loadCodes ?? throw new ArgumentNullException(nameof(loadCodes)), codePieces);

    /// <summary>Builds the result from tensors: codes uint8 [out, in], scales/zeros [out, nGroups] (any float dtype, any device).</summary>
    public static QuantizedLinearResult FromTensors(string name, Tensor codes, Tensor scales, Tensor zeros, int groupSize, int[]? perm, LayerReport report)
    {
        int o = checked((int)codes.shape[0]), i = checked((int)codes.shape[1]);
        return new QuantizedLinearResult(name, o, i, groupSize,
            HostCopy.ToArray<byte>(codes.to(ScalarType.Byte)),
            HostCopy.ToArray<float>(scales.to(ScalarType.Float32)),
            HostCopy.ToArray<float>(zeros.to(ScalarType.Float32)), perm, report);
    }

    /// <summary>The artifact's name for this weight: "&lt;module&gt;.weight".</summary>
    /// <summary>The result as bytes, to hand it to the other ranks of a layer-parallel run (<see cref="FromBytes"/> reads it back).</summary>
    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms))
        {
            w.Write(Name); w.Write(OutFeatures); w.Write(InFeatures); w.Write(GroupSize);
            w.Write(System.Text.Json.JsonSerializer.Serialize(Report, ReportJson));
            w.Write(Perm?.Length ?? -1);
            foreach (var p in Perm ?? []) w.Write(p);
            var codes = Codes;
            w.Write(codes.Length); w.Write(codes);
            w.Write(Scales.Length); w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Scales.AsSpan()));
            w.Write(Zeros.Length); w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Zeros.AsSpan()));
        }
        return ms.ToArray();
    }

    public static QuantizedLinearResult FromBytes(byte[] bytes)
    {
        using var r = new BinaryReader(new MemoryStream(bytes));
        string name = r.ReadString();
        int rows = r.ReadInt32(), cols = r.ReadInt32(), group = r.ReadInt32();
        var report = System.Text.Json.JsonSerializer.Deserialize<LayerReport>(r.ReadString(), ReportJson)!;
        int permLength = r.ReadInt32();
        int[]? perm = permLength < 0 ? null : Enumerable.Range(0, permLength).Select(_ => r.ReadInt32()).ToArray();
        var codes = r.ReadBytes(r.ReadInt32());
        float[] Floats() => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(r.ReadBytes(4 * r.ReadInt32())).ToArray();
        var scales = Floats();
        var zeros = Floats();
        return new QuantizedLinearResult(name, rows, cols, group, codes, scales, zeros, perm, report);
    }

    /// <summary>How a LayerReport is stored as JSON (its Hessian errors may be NaN): the checkpoint's form too.</summary>
    internal static readonly System.Text.Json.JsonSerializerOptions ReportJson = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public string WeightName => Name + ".weight";

    public int GroupWidth => GroupSize == -1 ? InFeatures : GroupSize;
    public int GroupCount => (InFeatures + GroupWidth - 1) / GroupWidth;

    public MatqQuantizedTensor ToArtifactTensor() =>
        new(WeightName, OutFeatures, InFeatures, GroupSize, Codes, Scales, Zeros, Perm);

    /// <summary>Ŵ float32 [out, in] in the original column order (stored-order groups, then the perm undone).</summary>
    public Tensor Dequantize(Device? device = null)
    {
        using var scope = NewDisposeScope();
        var codes = tensor(Codes, new long[] { OutFeatures, InFeatures }, device: device);
        var scales = tensor(Scales, new long[] { OutFeatures, GroupCount }, device: device);
        var zeros = tensor(Zeros, new long[] { OutFeatures, GroupCount }, device: device);
        var w = TensorAffineQuantizer.Dequantize(codes, scales, zeros, GroupWidth);
        return UndoPerm(w, Perm).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Dequantize"/> a row chunk at a time (at most <paramref name="chunkValues"/> values, whole rows): for each,
    /// <paramref name="chunk"/>(first row, rows, Ŵ rows fp32 on <paramref name="device"/>) runs in its own dispose scope;
    /// returning false stops. The codes are read once (an offloaded result reads its file at each use of Codes).
    /// </summary>
    public void ForEachRowChunk(Device? device, long chunkValues, Func<long, long, Tensor, bool> chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        var codes = Codes;
        int g = GroupCount;
        long step = Math.Max(1, chunkValues / Math.Max(1, InFeatures));
        for (long row = 0; row < OutFeatures; row += step)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(step, OutFeatures - row);
            var c = tensor(codes.AsSpan(checked((int)(row * InFeatures)), checked((int)(count * InFeatures))).ToArray(), new long[] { count, InFeatures }, device: device);
            var a = tensor(Scales.AsSpan(checked((int)(row * g)), checked((int)(count * g))).ToArray(), new long[] { count, g }, device: device);
            var z = tensor(Zeros.AsSpan(checked((int)(row * g)), checked((int)(count * g))).ToArray(), new long[] { count, g }, device: device);
            if (!chunk(row, count, UndoPerm(TensorAffineQuantizer.Dequantize(c, a, z, GroupWidth), Perm))) return;
        }
    }

    /// <summary>W [out, in] in stored column order → original order: W[:, perm[k]] = stored[:, k].</summary>
    public static Tensor UndoPerm(Tensor stored, int[]? perm)
    {
        if (perm is null) return stored;
        using var p = tensor(perm.Select(x => (long)x).ToArray(), dtype: ScalarType.Int64, device: stored.device);
        using var inverse = p.argsort();
        return stored.index_select(1, inverse);
    }
}

/// <summary>The outcome of a run: the config, the algorithm's name, settings and trained bits, every layer, wall time.</summary>
public sealed record QuantizationResult(
    QuantizationConfig Config,
    string Algorithm,
    JsonObject AlgorithmSettings,
    IReadOnlyList<int> TrainedBits,
    IReadOnlyList<QuantizedLinearResult> Layers,
    double Seconds)
{
    public int MasterBits => Config.Bits;

    /// <summary>The artifact's algorithm_config: the common fields plus the algorithm's own settings under "settings".</summary>
    public JsonObject AlgorithmConfigJson()
    {
        var o = new JsonObject();
        foreach (var (k, v) in Config.Describe())
            o[k] = v switch
            {
                null => null,
                IReadOnlyList<string> list => new JsonArray(list.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()),
                string s => JsonValue.Create(s),
                int i => JsonValue.Create(i),
                bool b => JsonValue.Create(b),
                _ => JsonValue.Create(v.ToString()),
            };
        var options = new JsonObject();
        foreach (var (k, v) in Config.Options.OrderBy(kv => kv.Key, StringComparer.Ordinal)) options[k] = v;
        o["options"] = options;
        o["settings"] = JsonNode.Parse(AlgorithmSettings.ToJsonString());
        return o;
    }
}
