// Contract: writes a decoder of any family (OnnxLlamaGraph; opset 17 + com.microsoft 1) as one ONNX file, atomically:
//   float model (HF folder or .safetensors + config.json) → every linear is a MatMul with Wᵀ [in, out] float32;
//   .matq artifact at r bits                              → every quantized linear is a MatMulNBits at r bits (see
//                                                            OnnxQuantizedLinear: exact, never re-quantized); the artifact's
//                                                            embedding and float linears keep their stored width (f32, or
//                                                            bf16/f16 + Cast, exact), norms and biases are float32;
//                                                            a quantized embedding (quantize --embedding-bits) is
//                                                            dequantized at r bits into a float32 Gather table (as the
//                                                            torch engine serves it; a tied head multiplies by it).
// The graph has no KV cache: input_ids [batch, sequence] → logits [batch, sequence, vocab]. Metadata props record the
// source, bits and algorithm. Bits ORT does not run and group sizes MatMulNBits blocks cannot tile are refused with one
// MatqException before anything is written.
using Matq.Formats.Artifact;
using Matq.Formats.Onnx;
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using static TorchSharp.torch;

namespace Matq.Export;

/// <summary>What an ONNX export wrote: bits (null = float model), per-linear details, the file size.</summary>
public sealed record OnnxExportReport(string Path, int? Bits, int FloatLinears, IReadOnlyList<OnnxLinearReport> Quantized, long Bytes)
{
    public int Corrected => Quantized.Count(q => q.ZeroPointCorrection);
    public int Permuted => Quantized.Count(q => q.Permuted);
    public IReadOnlyList<int> BlockSizes => Quantized.Select(q => q.BlockSize).Distinct().Order().ToArray();
}

public static class OnnxExporter
{
    /// <summary>
    /// Exports <paramref name="modelPath"/> to <paramref name="outPath"/>. For a .matq, <paramref name="bits"/> (null =
    /// master bits) picks the served slice; for a float model it must be null.
    /// </summary>
    public static OnnxExportReport Export(string modelPath, int? bits, string outPath)
    {
        if (string.IsNullOrWhiteSpace(outPath)) throw new MatqException("--out is empty: give the ONNX file to write, e.g. out/model.onnx");
        var model = Build(modelPath, bits, out var quantized, out var floatLinears, out var servedBits);
        model.Write(outPath);
        return new OnnxExportReport(outPath, servedBits, floatLinears, quantized, new FileInfo(outPath).Length);
    }

    /// <summary>The ONNX model in memory (what <see cref="Export"/> writes).</summary>
    public static OnnxModel Build(string modelPath, int? bits, out IReadOnlyList<OnnxLinearReport> quantized, out int floatLinears, out int? servedBits)
    {
        if (string.IsNullOrWhiteSpace(modelPath)) throw new MatqException("--model is empty: give an HF model folder, a .safetensors file or a .matq artifact");
        if (File.Exists(modelPath) && IsArtifact(modelPath))
            return FromArtifact(MatqArtifact.Open(modelPath), bits, out quantized, out floatLinears, out servedBits);
        if (bits is not null)
            throw new MatqException($"--bits {bits} applies to .matq artifacts; {modelPath} is a float model (quantize it first with `matq quantize`, or leave --bits out)");
        using var opened = ModelSource.Open(modelPath);
        var m = opened.Model;
        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var (name, _) in LlamaTensors.Expected(m.Config))
        {
            using var scope = NewDisposeScope();
            var p = m.get_parameter(name) ?? throw new MatqException($"{modelPath}: the model has no parameter '{name}'");
            weights[name] = p.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        }
        int linears = 0;
        var graph = OnnxLlamaGraph.Build(m.Config, Stem(modelPath), n => weights[n], (g, module, x) =>
        {
            linears++;
            return FloatLinear(g, module, x, weights[module + ".weight"], m.Config);
        });
        quantized = [];
        floatLinears = linears;
        servedBits = null;
        return Wrap(graph, m.Config, modelPath, null, null);
    }

    private static OnnxModel FromArtifact(MatqArtifact a, int? bits, out IReadOnlyList<OnnxLinearReport> quantized, out int floatLinears, out int? servedBits)
    {
        var config = ArtifactSource.ModelConfig(a);
        int c = a.Metadata.MasterBits, r = bits ?? c;
        OnnxQuantizedLinear.CheckBits(r, c);
        const string embedName = "model.embed_tokens.weight";
        foreach (var q in a.Quantized.Where(q => q.Name != embedName)) OnnxQuantizedLinear.BlockSize(q); // refuse untileable groups before building anything
        bool quantizedEmbedding = a.TryGetQuantized(embedName, out var qe);
        float[] Floats(string n)
        {
            if (n != embedName || !quantizedEmbedding) return a.GetFloat(n).Values;
            var (wq, _) = QuantizedModelLoader.ServedWeight(qe, c, r, extraPrecision: false);
            using (wq) return wq.contiguous().data<float>().ToArray();
        }
        var reports = new List<OnnxLinearReport>();
        int linears = 0;
        var graph = OnnxLlamaGraph.Build(config, Stem(a.Path), Floats, (g, module, x) =>
        {
            if (a.TryGetQuantized(module + ".weight", out var q))
            {
                var y = OnnxQuantizedLinear.Emit(g, q, c, r, x, module, out var report);
                reports.Add(report);
                return y;
            }
            linears++;
            var f = a.GetFloat(module + ".weight");
            return FloatLinear(g, module, x, f.Values, config, Stored(f.StoredDtype));
        }, quantizedEmbedding ? OnnxDataType.Float : Stored(a.GetFloat(embedName).StoredDtype));
        quantized = reports;
        floatLinears = linears;
        servedBits = r;
        return Wrap(graph, config, a.Path, r, a.Metadata);
    }

    // y = x·Wᵀ with Wᵀ [in, out] stored transposed for MatMul (in the source's float width)
    private static string FloatLinear(OnnxGraphBuilder g, string module, string x, float[] w, LlamaConfig c, OnnxDataType storedAs = OnnxDataType.Float)
    {
        var shape = LlamaTensors.Expected(c).First(e => e.Name == module + ".weight").Shape;
        int outF = (int)shape[0], inF = (int)shape[1];
        var wt = new float[w.Length];
        for (int o = 0; o < outF; o++)
            for (int i = 0; i < inF; i++) wt[(long)i * outF + o] = w[(long)o * inF + i];
        return g.Op("MatMul", module + "/out", [x, g.FloatWeight(module + ".weight_t", [inF, outF], wt, storedAs)]);
    }

    private static OnnxDataType Stored(Formats.Safetensors.SafetensorsDtype dtype) => dtype switch
    {
        Formats.Safetensors.SafetensorsDtype.BF16 => OnnxDataType.BFloat16,
        Formats.Safetensors.SafetensorsDtype.F16 => OnnxDataType.Float16,
        _ => OnnxDataType.Float,
    };

    private static OnnxModel Wrap(OnnxGraph graph, LlamaConfig c, string source, int? bits, MatqMetadata? md)
    {
        graph.DocString = $"{c.Family} decoder exported by matq; no KV cache: input_ids [batch, sequence] -> logits [batch, sequence, vocab]";
        var model = new OnnxModel(graph)
        {
            ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "",
            DocString = bits is null ? "float32 weights" : $"weights served at {bits} bits via com.microsoft MatMulNBits",
        };
        if (bits is not null) model.Opsets[OnnxModel.MicrosoftDomain] = 1;
        model.Metadata.Add(new("matq.source", Path.GetFileName(Path.GetFullPath(source).TrimEnd(Path.DirectorySeparatorChar))));
        model.Metadata.Add(new("matq.bits", bits?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "float32"));
        model.Metadata.Add(new("matq.kv_cache", "none"));
        model.Metadata.Add(new("matq.max_sequence", c.MaxPositionEmbeddings.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        if (md is not null)
        {
            model.Metadata.Add(new("matq.algorithm", md.Algorithm));
            model.Metadata.Add(new("matq.master_bits", md.MasterBits.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            model.Metadata.Add(new("matq.group_size", md.GroupSize.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        return model;
    }

    private static bool IsArtifact(string path)
    {
        if (Formats.Gguf.GgufFile.HasMagic(path)) return false;
        try
        {
            using var f = Formats.Safetensors.SafetensorsFile.Open(path);
            return MatqArtifact.IsArtifact(f);
        }
        catch (MatqException) { return false; }
    }

    private static string Stem(string path) => Path.GetFileNameWithoutExtension(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar));
}
