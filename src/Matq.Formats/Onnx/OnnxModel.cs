// Contract: the subset of ONNX's IR (onnx.proto) that matq writes — model, graph, nodes, attributes, tensors with
// raw_data, typed value infos with fixed or symbolic dims — and its protobuf encoding. Field numbers follow onnx.proto:
//   ModelProto        ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7, opset_import 8, metadata_props 14
//   OperatorSetIdProto domain 1, version 2          StringStringEntryProto key 1, value 2
//   GraphProto        node 1, name 2, initializer 5, doc_string 10, input 11, output 12
//   NodeProto         input 1, output 2, name 3, op_type 4, attribute 5, domain 7
//   AttributeProto    name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7)
//   TensorProto       dims 1, data_type 2 (FLOAT 1, UINT8 2, INT64 7, FLOAT16 10, BFLOAT16 16), name 8, raw_data 9 (little-endian, row-major)
//   ValueInfoProto    name 1, type 2;  TypeProto tensor_type 1;  TypeProto.Tensor elem_type 1, shape 2
//   TensorShapeProto  dim 1;  Dimension dim_value 1, dim_param 2
// A model file is one protobuf message, so it must stay under 2 GiB (no external data here).
namespace Matq.Formats.Onnx;

/// <summary>TensorProto.DataType values used by matq.</summary>
public enum OnnxDataType { Float = 1, UInt8 = 2, Int8 = 3, Int32 = 6, Int64 = 7, Bool = 9, Float16 = 10, BFloat16 = 16 }

public sealed record OnnxTensor(string Name, OnnxDataType DataType, long[] Dims, byte[] RawData)
{
    public static OnnxTensor FromFloats(string name, long[] dims, ReadOnlySpan<float> values) =>
        new(name, OnnxDataType.Float, dims, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    public static OnnxTensor FromInt64(string name, long[] dims, ReadOnlySpan<long> values) =>
        new(name, OnnxDataType.Int64, dims, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    public static OnnxTensor FromBytes(string name, long[] dims, byte[] values) => new(name, OnnxDataType.UInt8, dims, values);

    public static int ElementSize(OnnxDataType t) => t switch
    {
        OnnxDataType.Float or OnnxDataType.Int32 => 4, OnnxDataType.Int64 => 8, OnnxDataType.Float16 or OnnxDataType.BFloat16 => 2, _ => 1,
    };

    internal void Validate()
    {
        long n = 1;
        foreach (var d in Dims)
        {
            if (d < 0) throw new MatqException($"ONNX tensor '{Name}' has a negative dimension in [{string.Join(", ", Dims)}]");
            n = checked(n * d);
        }
        if (n * ElementSize(DataType) != RawData.LongLength)
            throw new MatqException($"ONNX tensor '{Name}': {DataType}[{string.Join(", ", Dims)}] needs {n * ElementSize(DataType)} bytes, got {RawData.LongLength}");
    }

    internal ProtoWriter Encode()
    {
        Validate();
        var w = new ProtoWriter();
        foreach (var d in Dims) w.Int(1, d);
        w.Int(2, (int)DataType).String(8, Name).Bytes(9, RawData);
        return w;
    }
}

public enum OnnxAttributeType { Float = 1, Int = 2, String = 3, Tensor = 4, Floats = 6, Ints = 7 }

public sealed record OnnxAttribute(string Name, OnnxAttributeType Type, object Value)
{
    public static OnnxAttribute Of(string name, long value) => new(name, OnnxAttributeType.Int, value);
    public static OnnxAttribute Of(string name, float value) => new(name, OnnxAttributeType.Float, value);
    public static OnnxAttribute Of(string name, string value) => new(name, OnnxAttributeType.String, value);
    public static OnnxAttribute Of(string name, long[] values) => new(name, OnnxAttributeType.Ints, values);
    public static OnnxAttribute Of(string name, float[] values) => new(name, OnnxAttributeType.Floats, values);
    public static OnnxAttribute Of(string name, OnnxTensor value) => new(name, OnnxAttributeType.Tensor, value);

    internal ProtoWriter Encode()
    {
        var w = new ProtoWriter().String(1, Name);
        switch (Value)
        {
            case float f when Type == OnnxAttributeType.Float: w.Float(2, f); break;
            case long i when Type == OnnxAttributeType.Int: w.Int(3, i); break;
            case string s when Type == OnnxAttributeType.String: w.String(4, s); break;
            case OnnxTensor t when Type == OnnxAttributeType.Tensor: w.Message(5, t.Encode()); break;
            case float[] fs when Type == OnnxAttributeType.Floats: w.PackedFloats(7, fs); break;
            case long[] ls when Type == OnnxAttributeType.Ints: w.PackedInts(8, ls); break;
            default: throw new MatqException($"ONNX attribute '{Name}': value of type {Value?.GetType().Name} does not match {Type}");
        }
        return w.Int(20, (int)Type);
    }
}

public sealed record OnnxNode(string OpType, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, string Name,
    IReadOnlyList<OnnxAttribute> Attributes, string Domain = "")
{
    internal ProtoWriter Encode()
    {
        var w = new ProtoWriter();
        foreach (var i in Inputs) w.String(1, i);
        foreach (var o in Outputs) w.String(2, o);
        w.String(3, Name).String(4, OpType);
        foreach (var a in Attributes) w.Message(5, a.Encode());
        if (Domain.Length > 0) w.String(7, Domain);
        return w;
    }
}

/// <summary>A graph input/output: a tensor of one element type whose dims are numbers or symbolic names (null = unknown).</summary>
public sealed record OnnxValueInfo(string Name, OnnxDataType ElemType, IReadOnlyList<object?> Dims)
{
    internal ProtoWriter Encode()
    {
        var shape = new ProtoWriter();
        foreach (var d in Dims)
        {
            var dim = new ProtoWriter();
            switch (d)
            {
                case long v: dim.Int(1, v); break;
                case int v: dim.Int(1, v); break;
                case string s: dim.String(2, s); break;
                case null: break;
                default: throw new MatqException($"ONNX value '{Name}': dimension {d} must be a number or a name");
            }
            shape.Message(1, dim);
        }
        var tensorType = new ProtoWriter().Int(1, (int)ElemType).Message(2, shape);
        var type = new ProtoWriter().Message(1, tensorType);
        return new ProtoWriter().String(1, Name).Message(2, type);
    }
}

public sealed class OnnxGraph
{
    public string Name { get; }
    public List<OnnxNode> Nodes { get; } = new();
    public List<OnnxTensor> Initializers { get; } = new();
    public List<OnnxValueInfo> Inputs { get; } = new();
    public List<OnnxValueInfo> Outputs { get; } = new();
    public string DocString { get; set; } = "";

    public OnnxGraph(string name) => Name = name;

    /// <summary>Checks that names are unique and every node input is produced before use (topological order).</summary>
    public void Validate()
    {
        var known = new HashSet<string>(StringComparer.Ordinal) { "" }; // "" = an omitted optional input
        foreach (var i in Inputs) if (!known.Add(i.Name)) throw new MatqException($"ONNX graph '{Name}': value '{i.Name}' is defined twice");
        foreach (var t in Initializers) if (!known.Add(t.Name)) throw new MatqException($"ONNX graph '{Name}': initializer '{t.Name}' is defined twice");
        var nodeNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in Nodes)
        {
            if (!nodeNames.Add(n.Name)) throw new MatqException($"ONNX graph '{Name}': node name '{n.Name}' is used twice");
            foreach (var i in n.Inputs)
                if (!known.Contains(i)) throw new MatqException($"ONNX graph '{Name}': node '{n.Name}' ({n.OpType}) reads '{i}' before anything defines it");
            foreach (var o in n.Outputs)
                if (!known.Add(o)) throw new MatqException($"ONNX graph '{Name}': value '{o}' is produced twice");
        }
        foreach (var o in Outputs)
            if (!known.Contains(o.Name)) throw new MatqException($"ONNX graph '{Name}': output '{o.Name}' is never produced");
    }

    internal ProtoWriter Encode()
    {
        Validate();
        var w = new ProtoWriter();
        foreach (var n in Nodes) w.Message(1, n.Encode());
        w.String(2, Name);
        foreach (var t in Initializers) w.Message(5, t.Encode());
        if (DocString.Length > 0) w.String(10, DocString);
        foreach (var i in Inputs) w.Message(11, i.Encode());
        foreach (var o in Outputs) w.Message(12, o.Encode());
        return w;
    }
}

public sealed class OnnxModel
{
    /// <summary>IR version 8 goes with opset 17 (ONNX 1.12).</summary>
    public const long DefaultIrVersion = 8;
    public const long DefaultOpset = 17;
    public const string MicrosoftDomain = "com.microsoft";

    public OnnxGraph Graph { get; }
    public long IrVersion { get; init; } = DefaultIrVersion;
    /// <summary>Operator sets: "" (the default ONNX domain) → version, plus e.g. com.microsoft → 1.</summary>
    public Dictionary<string, long> Opsets { get; } = new(StringComparer.Ordinal) { [""] = DefaultOpset };
    public string ProducerName { get; init; } = "matq";
    public string ProducerVersion { get; init; } = "";
    public string DocString { get; init; } = "";
    public List<KeyValuePair<string, string>> Metadata { get; } = new();

    public OnnxModel(OnnxGraph graph) => Graph = graph;

    public byte[] ToBytes()
    {
        var w = new ProtoWriter().Int(1, IrVersion).String(2, ProducerName);
        if (ProducerVersion.Length > 0) w.String(3, ProducerVersion);
        if (DocString.Length > 0) w.String(6, DocString);
        var graph = Graph.Encode();
        if (graph.Length >= int.MaxValue - 4096)
            throw new MatqException($"the ONNX graph is {graph.Length / (1 << 20)} MiB; a single-file ONNX model must stay under 2 GiB (protobuf's limit): export fewer bits or a smaller model");
        w.Message(7, graph);
        foreach (var (domain, version) in Opsets)
        {
            var o = new ProtoWriter();
            if (domain.Length > 0) o.String(1, domain);
            w.Message(8, o.Int(2, version));
        }
        foreach (var (k, v) in Metadata) w.Message(14, new ProtoWriter().String(1, k).String(2, v));
        return w.ToArray();
    }

    /// <summary>Writes the model via temp file + rename; on failure an existing file at <paramref name="path"/> is intact.</summary>
    public void Write(string path)
    {
        var bytes = ToBytes();
        Matq.Formats.IO.AtomicFile.WriteAllBytes(path, bytes);
    }
}
