// Contract: the torch-free half of loading a .matq for serving: what a file is (artifact by content), its decoder
// description (model_config checked against the tensors it implies), the bits it may be served at, and where its
// tokenizer files are (which layer gets which bits: Plans/BitPlan.PerLayerBits). The packed runtime builds on these;
// Matq's QuantizedModelLoader and ModelSource (TorchSharp) do too, so both backends refuse the same artifacts alike.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Runtime.Models;
using Matq.Runtime.Tokenizers;

namespace Matq.Runtime.Loading;

public static class ArtifactSource
{
    /// <summary>True when <paramref name="path"/> is a file holding a .matq artifact (by content, not by extension).</summary>
    public static bool IsArtifactFile(string path)
    {
        if (!File.Exists(path)) return false;
        using var f = SafetensorsFile.Open(path);
        return MatqArtifact.IsArtifact(f);
    }

    /// <summary>The folder holding a .matq's tokenizer files (all must exist and share one folder), or why there is none.</summary>
    public static (string? Folder, string? Problem) ArtifactTokenizer(string artifactPath, MatqMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (metadata.Tokenizer is not { Files.Count: > 0 } tok) return (null, "the artifact records no tokenizer");
        var baseDir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(artifactPath))!;
        var full = tok.Files.Select(f => System.IO.Path.GetFullPath(System.IO.Path.Combine(baseDir, f))).ToArray();
        var missing = full.FirstOrDefault(f => !File.Exists(f));
        if (missing is not null) return (null, $"its tokenizer file {missing} is missing");
        var folders = full.Select(System.IO.Path.GetDirectoryName).Distinct().ToArray();
        if (folders.Length != 1) return (null, "its tokenizer files lie in different folders");
        return (folders[0], null);
    }

    /// <summary>
    /// The tokenizer of a .matq (the folder <see cref="ArtifactTokenizer"/> finds), checked to fit the model's
    /// <paramref name="vocabSize"/> embeddings; one line naming the fix when there is none or it does not fit.
    /// </summary>
    public static TextTokenizer LoadArtifactTokenizer(string artifactPath, MatqMetadata metadata, int vocabSize, string? tokenizerFolder = null)
    {
        if (tokenizerFolder is not null) CheckTokenizerFolder(tokenizerFolder);
        var (folder, problem) = tokenizerFolder is null ? ArtifactTokenizer(artifactPath, metadata) : (tokenizerFolder, null);
        var tokenizer = TextTokenizer.Load(folder ?? throw new MatqException($"{artifactPath}: no tokenizer ({problem}); copy the model's tokenizer files next to it"));
        if (tokenizer.VocabSize > vocabSize)
            throw new MatqException($"{artifactPath}: the tokenizer has {tokenizer.VocabSize} ids but the model only {vocabSize} embeddings");
        return tokenizer;
    }

    /// <summary>Refuses a --tokenizer that is not a folder holding tokenizer files matq reads.</summary>
    public static void CheckTokenizerFolder(string folder)
    {
        if (!Directory.Exists(folder)) throw new MatqException($"--tokenizer {folder} is not a folder: give the folder that holds tokenizer.json (or encoder.json + vocab.bpe)");
        var present = TokenizerFiles.Names.Where(f => File.Exists(System.IO.Path.Combine(folder, f))).ToArray();
        if (TokenizerFiles.DetectKind(present) is null)
            throw new MatqException($"--tokenizer {folder} holds no tokenizer files (tokenizer.json, encoder.json + vocab.bpe, vocab.json + merges.txt or matq_tokenizer.json)");
    }

    public static void CheckBits(int r, int c, string what)
    {
        if (r > c)
            throw new MatqException($"{what} {r} is more than the artifact's {c} master bits (serve at 1..{c})");
        if (r < 1)
            throw new MatqException($"{what} {r} is out of range: serve at 1..{c} bits");
    }

    /// <summary>The artifact's model_config parsed as a Llama config, after checking that its tensors are exactly the ones it implies.</summary>
    public static LlamaConfig ModelConfig(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        return ModelConfig(artifact.Path, artifact.Metadata, FloatShapes(artifact));
    }

    /// <summary><see cref="ModelConfig(MatqArtifact)"/> for a memory-mapped artifact (header only; nothing is read).</summary>
    public static LlamaConfig ModelConfig(MappedMatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        return ModelConfig(artifact.Path, artifact.Metadata, artifact.Floats.Select(f => (f.Name, f.Shape)).ToList());
    }

    private static LlamaConfig ModelConfig(string path, MatqMetadata metadata, IReadOnlyList<(string Name, long[] Shape)> floats)
    {
        var json = metadata.ModelConfig;
        if (json.ValueKind != System.Text.Json.JsonValueKind.Object || !json.EnumerateObject().Any())
            throw new MatqException($"{path}: the artifact has no model_config (the HF config.json); it cannot be served as a model");
        var config = HfLlamaConfig.Parse(json.GetRawText(), $"{path} model_config");
        CheckTensors(path, metadata, floats, config);
        return config;
    }

    private static List<(string Name, long[] Shape)> FloatShapes(MatqArtifact artifact) => artifact.Floats.Select(f => (f.Name, f.Shape)).ToList();

    // Every tensor the config implies must be present (quantized or float) with its shape; nothing else may be.
    public static void CheckTensors(MatqArtifact artifact, LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        CheckTensors(artifact.Path, artifact.Metadata, FloatShapes(artifact), config);
    }

    public static void CheckTensors(MappedMatqArtifact artifact, LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        CheckTensors(artifact.Path, artifact.Metadata, artifact.Floats.Select(f => (f.Name, f.Shape)).ToList(), config);
    }

    private static void CheckTensors(string path, MatqMetadata metadata, IReadOnlyList<(string Name, long[] Shape)> floats, LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var quantized = metadata.Quantized.ToDictionary(q => q.Name, StringComparer.Ordinal);
        var floatShapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        foreach (var (name, shape) in floats) floatShapes.TryAdd(name, shape);
        // one at a time: the first missing tensor stops a model_config that claims more layers than the artifact holds
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in LlamaTensors.Enumerate(config))
        {
            known.Add(name);
            long[]? actual = quantized.TryGetValue(name, out var q) ? [q.OutFeatures, q.InFeatures]
                : floatShapes.TryGetValue(name, out var f) ? f : null;
            if (actual is null)
                throw new MatqException($"{path}: tensor '{name}' is missing (its model_config expects it; is the artifact complete?)");
            if (!actual.SequenceEqual(shape))
                throw new MatqException($"{path}: tensor '{name}' has shape {LlamaTensors.ShapeText(actual)} but the model_config implies {LlamaTensors.ShapeText(shape)}");
        }
        var extra = metadata.Quantized.Select(q => q.Name).Concat(floats.Select(f => f.Name)).Where(n => !known.Contains(n)).ToList();
        if (extra.Count > 0)
            throw new MatqException($"{path}: {extra.Count} tensor(s) not used by a {config.Family} model with this model_config: "
                + string.Join(", ", extra.Take(5).Select(n => $"'{n}'")) + (extra.Count > 5 ? ", ..." : ""));
    }
}
