// Contract: writes a .matq artifact served at r bits as a plain HF model folder — config.json + model.safetensors with
// ŵ_r = α(S(q, r)·2^(c−r) − z) dequantized to f32/bf16/f16 (perm undone) + the artifact's tokenizer files — so any
// HF-compatible runtime loads the r-bit model as floats. The folder is staged (hidden) beside the target and swapped in whole at the end.
using Matq.Formats.Safetensors;
using Matq.Loading;
using Matq.Runtime.Loading;

namespace Matq.Export;

public sealed record HfExportReport(string Folder, int Bits, SafetensorsDtype Dtype, IReadOnlyList<string> Files, string? TokenizerNote);

public static class HfExporter
{
    public static readonly IReadOnlyList<string> Types = ["f32", "bf16", "f16"];

    public static SafetensorsDtype ParseType(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "float32" => SafetensorsDtype.F32, "bf16" or "bfloat16" => SafetensorsDtype.BF16, "f16" or "float16" => SafetensorsDtype.F16,
        _ => throw new MatqException($"--type {text} is not supported for --format hf: use one of {string.Join(", ", Types)}"),
    };

    public static HfExportReport Export(string matqPath, int? bits, string outFolder, SafetensorsDtype dtype = SafetensorsDtype.F32)
    {
        if (string.IsNullOrWhiteSpace(outFolder)) throw new MatqException("--out is empty: give the HF folder to write, e.g. out/model-4bit");
        var full = Path.GetFullPath(outFolder);
        if (File.Exists(full)) throw new MatqException($"--out {outFolder} is a file; --format hf writes a folder (config.json, model.safetensors, tokenizer)");

        using var served = QuantizedModelLoader.LoadServed(matqPath, bits);
        var (tokFolder, problem) = ArtifactSource.ArtifactTokenizer(matqPath, served.Metadata);
        var names = new List<string>();
        // The folder is filled while hidden and then replaces any folder at --out whole (the CLI asks for --force first).
        Matq.Formats.IO.AtomicFile.WriteFolder(full, staging =>
        {
            LlamaSaver.Save(served.Model, staging, dtype);
            if (tokFolder is not null)
                foreach (var f in served.Metadata.Tokenizer!.Files)
                    File.Copy(Path.Combine(tokFolder, Path.GetFileName(f)), Path.Combine(staging, Path.GetFileName(f)), overwrite: true);
            names.AddRange(Directory.GetFiles(staging).Select(Path.GetFileName).Order(StringComparer.Ordinal)!);
        });
        return new HfExportReport(outFolder, served.Bits, dtype, names.Select(n => Path.Combine(full, n)).ToList(),
            tokFolder is null ? $"no tokenizer copied: {problem}" : null);
    }
}
