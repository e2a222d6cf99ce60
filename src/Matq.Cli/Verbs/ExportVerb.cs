// `matq export`: writes a model for other runtimes —
//   gguf  a .matq as llama.cpp GGUF, --type f32|f16|q8_0|q4_0|q4_1|q2_k..q6_k (lossless where the block type expresses our codes)
//   onnx  a .matq at --bits 2|4|8 (quantized linears as com.microsoft MatMulNBits, exact) or an HF model as float32;
//         --verify runs the file in ONNX Runtime and compares its logits with matq's
//   hf    a .matq at --bits r as an HF folder of dequantized f32|bf16|f16 weights + config + tokenizer
// An unsupported combination is refused with one line listing what is supported.
using System.Globalization;
using Matq.Export;

namespace Matq.Cli.Verbs;

public sealed class ExportVerb(IAnsiConsole console) : Verb<ExportSettings>(console, "export",
    "Export to GGUF (llama.cpp), ONNX (ONNX Runtime, MatMulNBits; no KV cache: input_ids -> logits for the whole sequence) or an HF folder",
    "matq export --format gguf --model small.matq --type q4_1 --out small-q4_1.gguf",
    "matq export --format gguf --model models/small --type q8_0 --embed-type f16 --out small-q8_0.gguf   (an HF folder)",
    "matq export --format onnx --model tiny.matq --bits 4 --out tiny-4bit.onnx --verify",
    "matq export --format onnx --model models/tiny --out tiny-f32.onnx",
    "matq export --format hf --model tiny.matq --bits 3 --type bf16 --out tiny-3bit",
    "matq export --format hf --model tiny.matq --bits 4 --out tiny-3bit --force   (replaces the folder)")
{
    private readonly Option<string> _format = new("--format") { Description = "Output format: gguf, onnx or hf", Required = true, HelpName = "gguf|onnx|hf" };
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _out = CommonOptions.Out();
    private readonly Option<string?> _bits = new("--bits")
    {
        Description = "onnx/hf: serve the .matq at this many bits (default: its master bits); onnx runs 2, 4 or 8",
        HelpName = "B",
    };
    private readonly Option<string?> _type = new("--type")
    {
        Description = "gguf: f32, f16, q8_0, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k (default q4_1; k-quants from the r-bit slice, exact where the group grid allows); hf: f32, bf16, f16 (default f32)",
        HelpName = "TYPE",
    };
    private readonly Option<string?> _embedType = new("--embed-type")
    {
        Description = "gguf: type of the token embedding and output head (default q8_0 when --type is a 32-block type, q6_k for a k-quant, as llama.cpp's quantizer; else --type)",
        HelpName = "TYPE",
    };
    private readonly Option<bool> _force = new("--force")
    {
        Description = "hf: replace an existing --out folder (without it an existing folder is refused)",
    };
    private readonly Option<bool> _verify = new("--verify")
    {
        Description = "onnx: run the written file in ONNX Runtime on a seeded batch and print max |Δlogits| against matq's own forward",
    };

    protected override IEnumerable<Option> Options => [_format, _model, _out, _bits, _type, _embedType, _force, _verify];

    protected override ExportSettings Read(ParseResult r) => new(r.GetValue(_format)!.ToLowerInvariant(), r.GetValue(_model)!, r.GetValue(_out)!, r.GetValue(_bits),
        r.GetValue(_type), r.GetValue(_embedType), r.GetValue(_force), r.GetValue(_verify));

    protected override int Run(ExportSettings s)
    {
        var (model, output) = (s.Model, s.Out);
        switch (s.Format)
        {
            case "gguf":
                return Gguf(model, s.GgufType, s.GgufEmbedType, output, fromHf: Directory.Exists(model));
            case "onnx":
                return Onnx(model, s.OneBits, output, s.Verify);
            default:
                var dtype = s.HfType;
                var hf = Matq.Export.HfExporter.Export(model, s.OneBits, output, dtype);
                Console.MarkupLine(Markup.Escape($"wrote {hf.Folder}: {hf.Bits}-bit weights dequantized to {dtype}, {hf.Files.Count} files ({string.Join(", ", hf.Files.Select(Path.GetFileName))})"));
                if (hf.TokenizerNote is not null) Console.MarkupLine(Markup.Escape("note: " + hf.TokenizerNote));
                return 0;
        }
    }

    private int Gguf(string model, Formats.Gguf.GgmlType type, Formats.Gguf.GgmlType? embed, string output, bool fromHf)
    {
        var report = fromHf ? GgufExporter.ExportFloat(model, type, output, embed) : GgufExporter.Export(model, type, output, embed);
        Console.MarkupLine(Markup.Escape($"wrote {output} ({type}): {report.Lossless} weights lossless (codes copied, scales rounded to fp16), " +
                                         $"{report.Requantized} quantized from values, {report.Float} float tensors"));
        foreach (var n in report.Notes) Console.MarkupLine(Markup.Escape("note: " + n));
        return 0;
    }

    private int Onnx(string model, int? bits, string output, bool verify)
    {
        var report = OnnxExporter.Export(model, bits, output);
        var what = report.Bits is int r
            ? $"{r}-bit com.microsoft MatMulNBits for {report.Quantized.Count} linears (block {string.Join("/", report.BlockSizes)}; " +
              $"{report.Corrected} with the exact zero-point correction, {report.Permuted} with an act-order Gather), {report.FloatLinears} float MatMul"
            : $"float32, {report.FloatLinears} MatMul linears";
        Console.MarkupLine(Markup.Escape($"wrote {output} ({what}): {report.Bytes:N0} bytes"));
        Console.MarkupLine(Markup.Escape("note: no KV cache: input_ids [batch, sequence] -> logits [batch, sequence, vocab], each call recomputes the whole sequence"));
        if (!verify) return 0;

        using var opened = report.Bits is null ? ModelSource.Open(model) : ModelSource.Open(model, report.Bits);
        const int batch = 2, seq = 16;
        var ids = OnnxVerifier.SampleIds(opened.Model.Config.VocabSize, batch, Math.Min(seq, opened.Model.Config.MaxPositionEmbeddings), seed: 1234);
        var check = OnnxVerifier.Compare(output, opened.Model, ids, batch, ids.Length / batch);
        var table = new Table().AddColumns("model", "bits", "file bytes", "ids", "max |Δlogit| ORT vs matq", "max |logit|", "relative");
        table.AddRow(Markup.Escape(Path.GetFileName(model.TrimEnd(Path.DirectorySeparatorChar))), report.Bits?.ToString(CultureInfo.InvariantCulture) ?? "f32",
            report.Bytes.ToString("N0", CultureInfo.InvariantCulture), $"{check.Batch}×{check.Sequence}",
            check.MaxAbsDiff.ToString("E2", CultureInfo.InvariantCulture), check.MaxAbsLogit.ToString("F3", CultureInfo.InvariantCulture),
            check.Relative.ToString("E2", CultureInfo.InvariantCulture));
        Console.Write(table);
        return 0;
    }
}

/// <summary>What `export` was asked: the option values as typed (--format lower-cased); <see cref="Validate"/> checks the format and
/// which options it takes, --bits, --type, --embed-type, the input and --out (one line per mistake) before any export work.</summary>
public sealed record ExportSettings(string Format, string Model, string Out, string? Bits, string? Type, string? EmbedType, bool Force, bool Verify) : IVerbSettings
{
    private const string Supported =
        "supported: gguf [--type f32|f16|q8_0|q4_0|q4_1] from a .matq; onnx [--bits 2|4|8] from a .matq, or float32 from an HF model; " +
        "hf [--bits 1..8] [--type f32|bf16|f16] from a .matq; gguf also from an HF model folder, and --embed-type TYPE for the embedding and head";

    /// <summary>--bits as one bit-width (null: the artifact's master bits).</summary>
    public int? OneBits => Bits is null ? null : ParseOneBits(Bits);

    public Formats.Gguf.GgmlType GgufType => GgufExporter.ParseType(Type ?? "q4_1");

    public Formats.Gguf.GgmlType? GgufEmbedType => EmbedType is null ? null : GgufExporter.ParseType(EmbedType);

    public Formats.Safetensors.SafetensorsDtype HfType => Matq.Export.HfExporter.ParseType(Type ?? "f32");

    public void Validate()
    {
        int? bits = OneBits;
        if (Format is not ("gguf" or "onnx" or "hf"))
            throw new MatqException($"--format {Format} is not supported; {Supported}");
        if (Verify && Format != "onnx") throw new MatqException($"--verify is for --format onnx; {Supported}");
        if (EmbedType is not null && Format != "gguf") throw new MatqException($"--embed-type is for --format gguf; {Supported}");
        if (Force && Format != "hf") throw new MatqException($"--force is for --format hf (a folder); gguf and onnx replace a file atomically");
        // Before any work: the output must not be (or lie in, or contain) the input or its tokenizer folder, and must be writable.
        string[] inputs = [Model, ArtifactExport.TokenizerFolderFor(Model)];
        if (Format == "hf") OutputPaths.CheckFolder(Out, "--out", Force, inputs);
        else OutputPaths.CheckFile(Out, "--out", inputs);
        switch (Format)
        {
            case "gguf":
                if (bits is not null) throw new MatqException($"--format gguf takes no --bits (--type picks it); {Supported}");
                _ = GgufType;
                _ = GgufEmbedType;
                if (!Directory.Exists(Model)) RequireArtifact(Model, "GGUF");
                break;
            case "onnx":
                if (Type is not null) throw new MatqException($"--format onnx takes no --type (--bits picks it); {Supported}");
                break;
            default:
                RequireArtifact(Model, "HF");
                _ = HfType;
                break;
        }
    }

    private static int ParseOneBits(string text)
    {
        var bits = CommonOptions.ParseBits(text);
        if (bits.Length != 1) throw new MatqException($"--bits {text}: export writes one bit-width per file; give one, e.g. --bits 4");
        return bits[0];
    }

    private static void RequireArtifact(string model, string format)
    {
        if (!File.Exists(model) || Formats.Gguf.GgufFile.HasMagic(model) || !model.EndsWith(".matq", StringComparison.OrdinalIgnoreCase) && Directory.Exists(model))
            throw new MatqException(format == "GGUF"
                ? $"{model}: GGUF export reads a .matq artifact or an HF model folder ({Supported})"
                : $"{model}: {format} export reads a .matq artifact; quantize an HF model first with `matq quantize` ({Supported})");
    }
}
