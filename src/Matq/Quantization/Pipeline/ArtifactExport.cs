// Contract: writes a QuantizationResult plus the model's remaining tensors as a .matq artifact (atomic), and copies
// the model's tokenizer files beside it into "<stem>.tokenizer/", which the metadata's tokenizer reference names.
//
// Layout written for out/tiny-rtn4.matq from an HF folder holding tokenizer.json + tokenizer_config.json:
//   out/tiny-rtn4.matq                          quantized weights (codes/scales/zeros[/perm]) + every other tensor as
//                                               float in the model's dtype (F32, BF16 or F16), metadata JSON; with
//                                               config.EmbeddingBits the embedding too is codes/scales/zeros (a tied
//                                               head then has no tensor of its own: readers take it from the embedding)
//   out/tiny-rtn4.tokenizer/tokenizer.json      copies of the tokenizer files; metadata tokenizer =
//   out/tiny-rtn4.tokenizer/tokenizer_config.json   {kind: "hf-tokenizer-json", files: ["tiny-rtn4.tokenizer/tokenizer.json", ...]}
// Files are relative to the artifact's folder, so artifact + folder move together. The tokenizer folder is staged
// after the artifact's own atomic write succeeded, filled hidden and swapped in whole.
using Matq.Formats.Artifact;
using Matq.Runtime.Tokenizers;

namespace Matq.Quantization.Pipeline;

/// <summary>What <see cref="ArtifactExport.Write"/> produced: the artifact, its size, and the tokenizer copy (if any).</summary>
public sealed record ArtifactExportResult(string Path, long Bytes, string? TokenizerFolder, string? TokenizerKind)
{
    /// <summary>The embedding's quantization (config.EmbeddingBits set): its shape, bits and weight MSE; null when it stays float.</summary>
    public LayerReport? Embedding { get; init; }
}

/// <summary>A float (non-quantized) model tensor as the artifact stores it: dtype F32, F16 or BF16 and its bytes.</summary>
public delegate (SafetensorsDtype Dtype, byte[] Data) FloatTensorSource(string name, long[] shape);

/// <summary>A reader of a model tensor's stored bytes in place (e.g. LlamaBlockStream.StoredReader), or null where there is none.</summary>
public delegate (SafetensorsDtype Dtype, StoredBytesReader Read)? StoredTensorReader(string name);

public static class ArtifactExport
{
    /// <summary>"&lt;dir&gt;/&lt;stem&gt;.tokenizer" for an artifact path "&lt;dir&gt;/&lt;stem&gt;.matq".</summary>
    public static string TokenizerFolderFor(string artifactPath) =>
        System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(artifactPath))!,
            System.IO.Path.GetFileNameWithoutExtension(artifactPath) + ".tokenizer");

    private const long LargeTensorBytes = 64L << 20;

    /// <summary>
    /// Writes <paramref name="path"/>. <paramref name="tokenizerFolder"/> is the folder holding the model's tokenizer
    /// files (usually the HF model folder); null or a folder without tokenizer files writes no tokenizer reference.
    /// <paramref name="floats"/> supplies the float tensors (e.g. <see cref="InSourceDtypes"/>, or a block stream's source
    /// bytes); null = the model's parameters in the model dtype. With config.EmbeddingBits the embedding is taken from the same
    /// source and stored as master codes (<see cref="EmbeddingQuantizer"/>, rows widened a slice at a time); with
    /// <paramref name="stored"/> its rows are read in place, so the table is never held whole.
    /// </summary>
    public static ArtifactExportResult Write(QuantizationResult result, LlamaForCausalLM model, string path, string? tokenizerFolder = null,
        FloatTensorSource? floats = null, StoredTensorReader? stored = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(model);
        if (string.IsNullOrWhiteSpace(path)) throw new MatqException("--out is empty: give the artifact path, e.g. out/model-rtn4.matq");
        var config = result.Config;
        using var writer = new MatqArtifactWriter(result.Algorithm, config.Bits, config.GroupSize, config.Symmetric, result.TrainedBits)
        {
            AlgorithmConfig = MatqMetadata.ParseObject(result.AlgorithmConfigJson().ToJsonString(), "algorithm_config"),
            ModelConfig = MatqMetadata.ParseObject(HfLlamaConfig.ToJson(model.Config, HfDtypeName(model.Dtype)), "model_config"),
        };

        writer.SpillTo(path);   // one tensor in memory at a time, whatever the model's size
        var expected = LlamaTensors.Expected(model.Config).ToDictionary(e => e.Name, e => e.Shape, StringComparer.Ordinal);
        var quantized = new HashSet<string>(StringComparer.Ordinal);
        foreach (var layer in result.Layers)
        {
            if (!expected.TryGetValue(layer.WeightName, out var shape))
                throw new MatqException($"cannot export '{layer.Name}': the model has no tensor '{layer.WeightName}'");
            if (shape[0] != layer.OutFeatures || shape[1] != layer.InFeatures)
                throw new MatqException($"cannot export '{layer.Name}': quantized as [{layer.OutFeatures}, {layer.InFeatures}], the model's weight is {LlamaTensors.ShapeText(shape)}");
            if (layer.CodePieces is { } pieces)   // offloaded to the resume checkpoint: streamed from there into the file
                writer.AddQuantizedStreamed(layer.WeightName, layer.OutFeatures, layer.InFeatures, layer.GroupSize, layer.Scales, layer.Zeros, layer.Perm, pieces);
            else writer.AddQuantized(layer.ToArtifactTensor());
            quantized.Add(layer.WeightName);
        }
        var (storeType, storeDtype) = StoredType(model.Dtype);
        string? floatDtype = null;
        LayerReport? embeddingReport = null;
        foreach (var (name, shape) in LlamaTensors.Expected(model.Config))
        {
            if (quantized.Contains(name)) continue;
            if (name == EmbeddingName && config.EmbeddingBits is not null)
            {
                // the table in its stored dtype (a bf16 checkpoint: 2 bytes a weight), quantized a slice of rows at a time:
                // read in place where the source allows, else from its bytes
                int rows = checked((int)shape[0]), cols = checked((int)shape[1]);
                MatqQuantizedTensor q;
                LayerReport report;
                if (stored?.Invoke(name) is var (rowDtype, read))
                    (q, report) = EmbeddingQuantizer.Quantize(name, rowDtype, read, rows, cols, config);
                else
                {
                    var (dtype, data) = floats is not null ? floats(name, shape) : ModelBytes(model, name, storeType, storeDtype);
                    (q, report) = EmbeddingQuantizer.Quantize(name, dtype, data, rows, cols, config);
                }
                writer.AddQuantized(q);
                embeddingReport = report;
                continue;
            }
            if (floats is not null)
            {
                var (dtype, data) = floats(name, shape);
                writer.AddFloatRaw(name, dtype, shape, data);
                floatDtype ??= HfDtypeName(dtype);
                // an 8B model's embedding and head are 1 GB each in bf16: staged now, collected now, not left to pile up
                // with the other large arrays until the GC's next full collection (issue 19's host peak)
                if (data.LongLength >= LargeTensorBytes) { data = null; GC.Collect(); }
                continue;
            }
            var (_, bytes) = ModelBytes(model, name, storeType, storeDtype);
            writer.AddFloatRaw(name, storeDtype, shape, bytes);
        }
        writer.Extra = MatqMetadata.ParseObject(Reports(result, embeddingReport).ToJsonString(), "extra");

        if (floatDtype is not null)   // torch_dtype says what the float tensors are stored as
            writer.ModelConfig = MatqMetadata.ParseObject(HfLlamaConfig.ToJson(model.Config, floatDtype), "model_config");

        // The tokenizer files are copied into a hidden folder first, then the artifact is written (atomically), then the
        // folder is swapped in: a failure at any step leaves the previous artifact and tokenizer folder as they were.
        var (kind, present) = tokenizerFolder is null ? (null, Array.Empty<string>()) : FindTokenizer(tokenizerFolder);
        string? final = kind is null ? null : TokenizerFolderFor(path);
        AtomicFile.CleanStale(TokenizerFolderFor(path));   // a killed earlier write's staging/aside folders, even if none is written now
        if (final is null) writer.Write(path);
        else
        {
            writer.Tokenizer = new MatqTokenizerRef(kind!, present.Select(f => System.IO.Path.GetFileName(final) + "/" + f).ToArray());
            AtomicFile.WriteFolder(final, staged =>
            {
                foreach (var f in present) File.Copy(System.IO.Path.Combine(tokenizerFolder!, f), System.IO.Path.Combine(staged, f));
            }, beforeSwap: () => writer.Write(path));
        }
        return new ArtifactExportResult(System.IO.Path.GetFullPath(path), new FileInfo(path).Length, final, kind) { Embedding = embeddingReport };
    }

    /// <summary>The HF name of the token embedding table [vocab, hidden].</summary>
    public const string EmbeddingName = "model.embed_tokens.weight";

    private static (SafetensorsDtype, byte[]) ModelBytes(LlamaForCausalLM model, string name, ScalarType storeType, SafetensorsDtype storeDtype)
    {
        using var scope = NewDisposeScope();
        var p = model.get_parameter(name)
            ?? throw new MatqException($"cannot export '{name}': the model has no such parameter (was its module swapped and not restored?)");
        return (storeDtype, p.detach().to(storeType, CPU).contiguous().bytes.ToArray());
    }

    /// <summary>Float tensors of a resident model stored in each one's checkpoint dtype (<paramref name="dtypes"/>, e.g.
    /// LlamaLoader.SourceDtypes): a bf16 checkpoint quantized in fp32 keeps bf16 embeddings, norms and head; F64 and
    /// tensors the map lacks are stored in the model dtype (F32 for F64).</summary>
    public static FloatTensorSource InSourceDtypes(LlamaForCausalLM model, IReadOnlyDictionary<string, SafetensorsDtype> dtypes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(dtypes);
        return (name, shape) =>
        {
            var (type, dtype) = dtypes.TryGetValue(name, out var d) && d is SafetensorsDtype.BF16 or SafetensorsDtype.F16 or SafetensorsDtype.F32
                ? (d switch { SafetensorsDtype.BF16 => ScalarType.BFloat16, SafetensorsDtype.F16 => ScalarType.Float16, _ => ScalarType.Float32 }, d)
                : StoredType(model.Dtype);
            using var scope = NewDisposeScope();
            var p = model.get_parameter(name)
                ?? throw new MatqException($"cannot export '{name}': the model has no such parameter (was its module swapped and not restored?)");
            return (dtype, p.detach().to(type, CPU).contiguous().bytes.ToArray());
        };
    }

    /// <summary>The artifact's size, about (tensor data; the header is small; writing stages it beside the output, so the
    /// disk needs twice this until the write ends): per selected linear its codes (1 byte per
    /// weight), fp32 scales and zeros per group and an int32 permutation row; every other tensor in its stored dtype
    /// (<paramref name="floatDtypes"/>, else the model's).</summary>
    public static long EstimateBytes(LlamaForCausalLM model, QuantizationConfig config, IReadOnlyDictionary<string, SafetensorsDtype>? floatDtypes = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var quantized = LinearSelection.Select(model, config).Select(s => s.Name + ".weight").ToHashSet(StringComparer.Ordinal);
        int modelSize = SafetensorsDtypes.SizeOf(StoredType(model.Dtype).Item2);
        long total = 0;
        foreach (var (name, shape) in LlamaTensors.Expected(model.Config))
        {
            long n = shape.Aggregate(1L, (a, b) => checked(a * b));
            if (quantized.Contains(name) || name == EmbeddingName && config.EmbeddingBits is not null)
            {
                long cols = shape[1], groups = config.GroupSize <= 0 ? 1 : (cols + config.GroupSize - 1) / config.GroupSize;
                total += n + shape[0] * groups * 8 + cols * 4;
            }
            else total += n * (floatDtypes is not null && floatDtypes.TryGetValue(name, out var d) && d is not SafetensorsDtype.F64 ? SafetensorsDtypes.SizeOf(d) : modelSize);
        }
        return total;
    }

    // The recognised tokenizer files in the source folder and their kind; (null, []) when none fits.
    private static (string? Kind, string[] Files) FindTokenizer(string source)
    {
        if (!Directory.Exists(source))
            throw new MatqException($"tokenizer folder '{source}' does not exist; give the model folder that holds the tokenizer files");
        var present = TokenizerFiles.Names.Where(f => File.Exists(System.IO.Path.Combine(source, f))).ToArray();
        string? kind = TokenizerFiles.DetectKind(present);
        return kind is null ? (null, []) : (kind, present);
    }

    private static (ScalarType, SafetensorsDtype) StoredType(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => (ScalarType.BFloat16, SafetensorsDtype.BF16),
        ScalarType.Float16 => (ScalarType.Float16, SafetensorsDtype.F16),
        _ => (ScalarType.Float32, SafetensorsDtype.F32),
    };

    private static string HfDtypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

    private static string HfDtypeName(SafetensorsDtype t) => t switch
    {
        SafetensorsDtype.BF16 => "bfloat16",
        SafetensorsDtype.F16 => "float16",
        _ => "float32",
    };

    // extra = {"seconds": total, "layers": [{name, shape, bits, weight_mse, hessian_error_before/after, seconds}]}; a quantized
// embedding is the last entry (name model.embed_tokens)
    private static JsonObject Reports(QuantizationResult result, LayerReport? embedding)
    {
        var layers = new JsonArray();
        foreach (var r in result.Layers.Select(l => l.Report).Concat(embedding is null ? [] : [embedding]))
        {
            layers.Add(new JsonObject
            {
                ["name"] = r.Name,
                ["shape"] = new JsonArray(r.OutFeatures, r.InFeatures),
                ["bits"] = r.Bits,
                ["weight_mse"] = r.WeightMse,
                ["hessian_error_before"] = r.HessianErrorBefore,
                ["hessian_error_after"] = r.HessianErrorAfter,
                ["seconds"] = Math.Round(r.Seconds, 4),
            });
        }
        return new JsonObject { ["seconds"] = Math.Round(result.Seconds, 3), ["layers"] = layers };
    }
}
