// Contract: appends ONNX nodes to an OnnxGraph in topological order with unique value and node names, and stores
// constants once (small int64/float constants are deduplicated by value). Each Op returns its output's name.
using System.Globalization;
using Matq.Formats.Onnx;

namespace Matq.Export;

internal sealed class OnnxGraphBuilder(OnnxGraph graph)
{
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public OnnxGraph Graph { get; } = graph;

    /// <summary>One node with one output named after <paramref name="hint"/> (made unique).</summary>
    public string Op(string opType, string hint, IReadOnlyList<string> inputs, params OnnxAttribute[] attributes) =>
        OpIn("", opType, hint, inputs, attributes);

    public string OpIn(string domain, string opType, string hint, IReadOnlyList<string> inputs, params OnnxAttribute[] attributes)
    {
        var output = Unique(hint);
        Graph.Nodes.Add(new OnnxNode(opType, inputs.ToArray(), [output], output + "/" + opType, attributes, domain));
        return output;
    }

    /// <summary>Adds an initializer under a unique name derived from its own.</summary>
    public string Initializer(OnnxTensor tensor)
    {
        var name = Unique(tensor.Name);
        Graph.Initializers.Add(tensor with { Name = name });
        return name;
    }

    /// <summary>
    /// A float32 weight stored in the file as <paramref name="storedAs"/> (F32, or F16/BF16 when that is how the source
    /// holds it, so the narrowing is exact) and Cast to float32 in the graph (ORT folds the Cast at load).
    /// </summary>
    public string FloatWeight(string name, long[] dims, float[] values, OnnxDataType storedAs)
    {
        switch (storedAs)
        {
            case OnnxDataType.Float:
                return Initializer(OnnxTensor.FromFloats(name, dims, values));
            case OnnxDataType.BFloat16:
                return Op("Cast", name + "/f32", [Initializer(new OnnxTensor(name, OnnxDataType.BFloat16, dims, Formats.Safetensors.SafetensorsDtypes.Float32ToBf16(values)))],
                    OnnxAttribute.Of("to", (long)OnnxDataType.Float));
            case OnnxDataType.Float16:
                var half = new byte[values.Length * 2];
                var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(half.AsSpan());
                for (int i = 0; i < values.Length; i++) dst[i] = (Half)values[i];
                return Op("Cast", name + "/f32", [Initializer(new OnnxTensor(name, OnnxDataType.Float16, dims, half))], OnnxAttribute.Of("to", (long)OnnxDataType.Float));
            default:
                throw new ArgumentException($"weights are stored as F32, F16 or BF16, not {storedAs}", nameof(storedAs));
        }
    }

    /// <summary>An int64 constant [values.Length] (or a scalar when <paramref name="scalar"/>), shared by every use.</summary>
    public string Int64s(bool scalar, params long[] values)
    {
        var key = (scalar ? "s64:" : "i64:") + string.Join(",", values);
        if (_constants.TryGetValue(key, out var name)) return name;
        name = Initializer(OnnxTensor.FromInt64("const_i64_" + string.Join("_", values.Select(v => v.ToString(CultureInfo.InvariantCulture).Replace('-', 'm'))),
            scalar ? [] : [values.Length], values));
        _constants[key] = name;
        return name;
    }

    public string Int64s(params long[] values) => Int64s(false, values);

    /// <summary>A float scalar constant, shared by every use.</summary>
    public string Scalar(float value)
    {
        var key = "f32:" + BitConverter.SingleToInt32Bits(value).ToString(CultureInfo.InvariantCulture);
        if (_constants.TryGetValue(key, out var name)) return name;
        name = Initializer(OnnxTensor.FromFloats("const_f32", [], [value]));
        _constants[key] = name;
        return name;
    }

    /// <summary>An arbitrary shared initializer, built once per key.</summary>
    public string Shared(string key, Func<OnnxTensor> build)
    {
        if (_constants.TryGetValue(key, out var name)) return name;
        name = Initializer(build());
        _constants[key] = name;
        return name;
    }

    /// <summary>Claims a fixed name (a graph input) so no generated value takes it.</summary>
    public void Reserve(string name)
    {
        if (!_names.Add(name)) throw new InvalidOperationException($"ONNX value name '{name}' is already taken");
    }

    private string Unique(string hint)
    {
        if (_names.Add(hint)) return hint;
        for (int i = 1; ; i++)
        {
            var name = $"{hint}_{i}";
            if (_names.Add(name)) return name;
        }
    }
}
