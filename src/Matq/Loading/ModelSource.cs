// Contract: opens whatever --model names — an HF folder or a .safetensors file (float model), or a .matq artifact
// (served at --bits, default its master bits) — and says where its tokenizer files are. Detection is by content.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Plans;
using Matq.Runtime.Tokenizers;
using static TorchSharp.torch;

namespace Matq.Loading;

public enum ModelSourceKind { HfFolder, SafetensorsFile, MatqArtifact }

/// <summary>
/// An opened model. TokenizerFolder is the folder to give TextTokenizer.Load: the HF folder, the .safetensors file's
/// folder, or for a .matq the folder its tokenizer reference points into (ArtifactExport writes "&lt;stem&gt;.tokenizer/").
/// </summary>
public sealed class OpenedModel(LlamaForCausalLM model, ModelSourceKind kind, string path, string? tokenizerFolder, string? tokenizerProblem,
    ServedModel? served) : IDisposable
{
    public LlamaForCausalLM Model { get; } = model;
    public ModelSourceKind Kind { get; } = kind;
    public string Path { get; } = path;
    public string? TokenizerFolder { get; } = tokenizerFolder;
    /// <summary>Why TokenizerFolder is null (no reference in the artifact, files missing), for error messages.</summary>
    public string? TokenizerProblem { get; } = tokenizerProblem;
    /// <summary>Slicing details for a .matq (bits, effective bits per layer); null for float models.</summary>
    public ServedModel? Served { get; } = served;

    /// <summary>The tokenizer folder, or a one-line MatqException saying why there is none.</summary>
    public string RequireTokenizerFolder() => TokenizerFolder
        ?? throw new MatqException($"{Path}: no tokenizer ({TokenizerProblem}); copy the model's tokenizer files next to it");

    /// <summary>"tiny-rtn4.matq: llama, rtn 4-bit master served at 2 bits" style one-liner.</summary>
    public string Describe()
    {
        var name = System.IO.Path.GetFileName(System.IO.Path.GetFullPath(Path).TrimEnd(System.IO.Path.DirectorySeparatorChar));
        var c = Model.Config;
        var head = $"{name}: {c.Family} {c.ParameterCount():N0} params, {c.NumLayers} layers";
        return Served is null ? head
            : $"{head}, {Served.Metadata.Algorithm} {Served.Metadata.MasterBits}-bit master served at {Served.Bits} bits"
              + (Served.ExtraPrecision ? $" + extra precision ({Served.ExtraBitsText})" : "");
    }

    public void Dispose() => Model.Dispose();
}

public static class ModelSource
{
    /// <summary>
    /// Opens <paramref name="path"/>. <paramref name="bits"/>, <paramref name="extraPrecision"/> and <paramref name="plan"/>
    /// apply to .matq artifacts only; giving them for a float model is refused rather than ignored.
    /// </summary>
    public static OpenedModel Open(string path, int? bits = null, Device? device = null, ScalarType dtype = ScalarType.Float32,
        bool extraPrecision = false, BitPlan? plan = null, string? tokenizer = null)
    {
        var opened = OpenModel(path, bits, device, dtype, extraPrecision, plan);
        if (tokenizer is null) return opened;
        // --tokenizer: a folder with tokenizer files replaces whatever lies (or not) beside the model
        ArtifactSource.CheckTokenizerFolder(tokenizer);
        return new OpenedModel(opened.Model, opened.Kind, opened.Path, tokenizer, null, opened.Served);
    }

    private static OpenedModel OpenModel(string path, int? bits, Device? device, ScalarType dtype, bool extraPrecision, BitPlan? plan)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new MatqException("--model is empty: give an HF model folder, a .safetensors file or a .matq artifact");
        device ??= CPU;
        if (Directory.Exists(path))
        {
            RefuseServingOptions(path, bits, extraPrecision, plan);
            var model = LlamaLoader.Load(path, device, dtype);
            return new OpenedModel(model, ModelSourceKind.HfFolder, path, path, null, null);
        }
        if (!File.Exists(path))
            throw new MatqException($"--model {path} does not exist (give an HF model folder, a .safetensors file or a .matq artifact)");

        if (ArtifactSource.IsArtifactFile(path))
        {
            var served = QuantizedModelLoader.LoadServed(path, bits, device, dtype, extraPrecision, plan);
            var (folder, problem) = ArtifactSource.ArtifactTokenizer(path, served.Metadata);
            return new OpenedModel(served.Model, ModelSourceKind.MatqArtifact, path, folder, problem, served);
        }
        RefuseServingOptions(path, bits, extraPrecision, plan);
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        return new OpenedModel(LoadSafetensorsFile(path, dir, device, dtype), ModelSourceKind.SafetensorsFile, path, dir, null, null);
    }

    private static void RefuseServingOptions(string path, int? bits, bool extraPrecision, BitPlan? plan)
    {
        if (bits is not null) throw new MatqException($"--bits {bits} applies to .matq artifacts; {path} is a float model");
        if (extraPrecision) throw new MatqException($"extra precision applies to .matq artifacts; {path} is a float model");
        if (plan is not null) throw new MatqException($"a per-layer bit plan applies to .matq artifacts; {path} is a float model");
    }

    // A lone .safetensors file: config.json must sit beside it; names, dtypes and shapes checked like LlamaLoader.
    private static LlamaForCausalLM LoadSafetensorsFile(string file, string dir, Device device, ScalarType dtype)
    {
        if (!File.Exists(System.IO.Path.Combine(dir, HfLlamaConfig.FileName)))
            throw new MatqException($"{file}: no {HfLlamaConfig.FileName} beside it; a .safetensors file is loaded with the config.json of its folder");
        var config = HfLlamaConfig.Read(dir);
        using var ckpt = SafetensorsCheckpoint.Open(file);
        LlamaLoader.Validate(ckpt, config);
        var model = new LlamaForCausalLM(config, (name, shape) =>
        {
            using var scope = NewDisposeScope();
            var values = ckpt.ReadFloat32(name);
            if (values.Any(v => !float.IsFinite(v)))
                throw new MatqException($"{file}: tensor '{name}' holds NaN/Inf values (the checkpoint is corrupt or diverged)");
            return tensor(values, shape, device: device).to(dtype).MoveToOuterDisposeScope();
        }, device, dtype);
        model.eval();
        return model;
    }
}
