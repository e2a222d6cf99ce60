// Fuzz tier, the formats read through TorchSharp paths: a .matq (RTN of tests/fixtures/tiny-llama with a byte tokenizer),
// an HF folder (the tiny-llama fixture: config.json + model.safetensors) and the ONNX file matq's exporter writes from
// that .matq, each corrupted 1,000+ seeded ways (FuzzKit: byte mutations, safetensors header surgery, absurd metadata and
// config values) and pushed through what the CLI runs on them: inspect (ModelInspector), eval/generate/serve
// (ModelSource.Open: MatqArtifact + QuantizedModelLoader, or HfLlamaConfig + LlamaLoader; the artifact's tokenizer),
// export gguf (GgufExporter), and for ONNX export --verify's ONNX Runtime load and run (OnnxVerifier).
using System.Text;
using System.Text.Json.Nodes;
using Matq.Export;
using Matq.Formats.Artifact;
using Matq.Formats.Gguf;
using Matq.Formats.Inspection;
using Matq.Fuzz;
using Matq.Loading;
using Matq.Runtime.Loading;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using Xunit.Abstractions;

namespace Matq.Tests.Fuzz;

public sealed class ModelFileFuzzTests(ITestOutputHelper output)
{
    public const int MatqCases = 1000, HfCases = 1000, OnnxCases = 1000;

    private sealed record Seeds(string Folder, byte[] Matq, byte[] Onnx, byte[] HfConfig, byte[] HfWeights);

    private static readonly Lazy<Seeds> Valid = new(() =>
    {
        var (artifact, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(4, 32), PipelineFixtures.TinyWithTokenizer());
        var folder = Path.GetDirectoryName(artifact)!;
        var onnx = Path.Combine(folder, "tiny.onnx");
        OnnxExporter.Export(artifact, 4, onnx);
        var hf = HfFixtures.Path(PipelineFixtures.Tiny);
        return new Seeds(folder, File.ReadAllBytes(artifact), File.ReadAllBytes(onnx),
            File.ReadAllBytes(Path.Combine(hf, "config.json")), File.ReadAllBytes(Path.Combine(hf, "model.safetensors")));
    });

    // ---- .matq ----

    private static readonly string[] TopKeys =
        ["format_version", "algorithm", "algorithm_config", "master_bits", "group_size", "symmetric", "trained_bits", "model_config", "tokenizer", "quantized", "created_by", "extra"];

    internal static (byte[] Bytes, string What) CorruptMatq(byte[] valid, int seed)
    {
        var rng = new Random(seed);
        if (rng.Next(100) < 45) return (ByteMutator.Mutate(valid, rng, SafetensorsImage.HeaderEnd(valid), out var w), w);
        var (header, data) = SafetensorsImage.Split(valid);
        string what;
        if (rng.Next(10) < 3) what = JsonMutator.EditTensorEntry(header, rng);
        else
        {
            var md = header["__metadata__"]!.AsObject();
            var doc = JsonNode.Parse(md["matq"]!.GetValue<string>())!.AsObject();
            switch (rng.Next(6))
            {
                case 0 or 1: what = "model_config: " + JsonMutator.EditConfig(doc["model_config"]!.AsObject(), rng); break;
                case 2: what = "matq: " + JsonMutator.EditObject(doc, rng, TopKeys); break;
                case 3:
                {
                    var q = doc["quantized"]!.AsArray();
                    int i = rng.Next(q.Count);
                    what = $"quantized[{i}]: " + JsonMutator.EditObject(q[i]!.AsObject(), rng, ["name", "shape", "group_size", "perm", "side"]);
                    break;
                }
                case 4:
                {
                    string[] files = ["../../etc/passwd", "a\u0000b", "\u001b[2J", "/abs/tok.json", "missing.json", "tiny.tokenizer/../tiny.matq"];
                    if (rng.Next(2) == 0 && doc["tokenizer"] is JsonObject t)
                        what = "tokenizer: " + JsonMutator.EditObject(t, rng, ["kind", "files"]);
                    else
                    {
                        var f = files[rng.Next(files.Length)];
                        doc["tokenizer"] = new JsonObject { ["kind"] = "bytes", ["files"] = new JsonArray(f) };
                        what = $"tokenizer.files = [{JsonMutator.Short(JsonValue.Create(f))}]";
                    }
                    break;
                }
                default:
                {
                    var key = new[] { "matq.master_bits", "matq.group_size", "matq.algorithm", "matq.format_version", "matq.trained_bits" }[rng.Next(5)];
                    md[key] = JsonMutator.Absurd[rng.Next(JsonMutator.Absurd.Length)];
                    what = $"flat key {key} = {JsonMutator.Short(md[key])}";
                    break;
                }
            }
            md["matq"] = doc.ToJsonString();
        }
        return (SafetensorsImage.Join(header, data), what);
    }

    /// <summary>inspect; eval/generate/serve (model + tokenizer); export gguf.</summary>
    internal static void ReadMatq(string path, string ggufOut)
    {
        _ = ModelInspector.Inspect(path);
        using (var opened = ModelSource.Open(path))
        {
            if (opened.Served is { } served)
                _ = ArtifactSource.LoadArtifactTokenizer(path, served.Metadata, opened.Model.Config.VocabSize);
        }
        GgufExporter.Export(path, GgmlType.F16, ggufOut);
    }

    [Fact]
    public void Corrupted_matq_artifacts_end_in_success_or_one_clear_MatqException_line()
    {
        var s = Valid.Value;
        var path = Path.Combine(s.Folder, "case.matq");
        var gguf = Path.Combine(s.Folder, "case.gguf");
        File.WriteAllBytes(path, s.Matq);
        ReadMatq(path, gguf); // the seed itself reads
        FuzzRunner.Run("matq", 1, MatqCases, seed =>
        {
            var (bytes, what) = CorruptMatq(s.Matq, seed);
            File.WriteAllBytes(path, bytes);
            return new FuzzCase(what, () => ReadMatq(path, gguf));
        }, output);
    }

    // ---- HF folder ----

    internal static (byte[] Config, byte[] Weights, string What) CorruptHf(byte[] config, byte[] weights, int seed)
    {
        var rng = new Random(seed);
        int r = rng.Next(100);
        if (r < 25)
        {
            var c = JsonNode.Parse(config)!.AsObject();
            var what = "config.json: " + JsonMutator.EditConfig(c, rng);
            return (Encoding.UTF8.GetBytes(c.ToJsonString()), weights, what);
        }
        if (r < 32) return (ByteMutator.Mutate(config, rng, config.Length, out var cw), weights, "config.json: " + cw);
        if (r < 66) return (config, ByteMutator.Mutate(weights, rng, SafetensorsImage.HeaderEnd(weights), out var ww), "model.safetensors: " + ww);
        var (header, data) = SafetensorsImage.Split(weights);
        var w = JsonMutator.EditTensorEntry(header, rng);
        return (config, SafetensorsImage.Join(header, data), "model.safetensors header: " + w);
    }

    /// <summary>inspect; eval/generate/serve (the folder, and its .safetensors file with the config beside it).</summary>
    internal static void ReadHf(string folder)
    {
        _ = ModelInspector.Inspect(folder);
        using (ModelSource.Open(folder)) { }
        using (ModelSource.Open(Path.Combine(folder, "model.safetensors"))) { }
    }

    [Fact]
    public void Corrupted_hf_folders_end_in_success_or_one_clear_MatqException_line()
    {
        var s = Valid.Value;
        var folder = HfFixtures.TempDir();
        FuzzRunner.Run("hf", 1, HfCases, seed =>
        {
            var (config, weights, what) = CorruptHf(s.HfConfig, s.HfWeights, seed);
            File.WriteAllBytes(Path.Combine(folder, "config.json"), config);
            File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), weights);
            return new FuzzCase(what, () => ReadHf(folder));
        }, output);
    }

    // ---- ONNX ----

    internal static (byte[] Bytes, string What) CorruptOnnx(byte[] valid, int seed)
    {
        var rng = new Random(seed);
        if (rng.Next(4) == 0)
        {
            // the graph's inputs, outputs, opsets and metadata sit at the end of the message
            var b = (byte[])valid.Clone();
            int n = 1 + rng.Next(3);
            var at = new List<int>();
            for (int i = 0; i < n; i++) { int p = b.Length - 1 - rng.Next(Math.Min(512, b.Length)); b[p] ^= (byte)(1 << rng.Next(8)); at.Add(p); }
            return (b, $"tail bit flips at {string.Join(",", at)}");
        }
        return (ByteMutator.Mutate(valid, rng, 4096, out var w), w);
    }

    private static readonly long[] Ids = [1, 2, 3, 4];

    /// <summary>inspect and eval refuse it clearly; export --verify loads and runs it in ONNX Runtime.</summary>
    internal static void ReadOnnx(string path)
    {
        ClearOrNothing(() => ModelInspector.Inspect(path));
        ClearOrNothing(() => ModelSource.Open(path).Dispose());
        _ = OnnxVerifier.Run(path, Ids, 1, Ids.Length);
    }

    // a clear refusal lets the case go on to the next path; anything else ends it (and the runner reports it)
    private static void ClearOrNothing(Action read)
    {
        try { read(); }
        catch (MatqException e) when (FuzzRunner.Problem(e.Message) is null) { }
    }

    [Fact]
    public void Corrupted_onnx_exports_end_in_success_or_one_clear_MatqException_line()
    {
        var s = Valid.Value;
        var path = Path.Combine(s.Folder, "case.onnx");
        File.WriteAllBytes(path, s.Onnx);
        _ = OnnxVerifier.Run(path, Ids, 1, Ids.Length);
        FuzzRunner.Run("onnx", 1, OnnxCases, seed =>
        {
            var (bytes, what) = CorruptOnnx(s.Onnx, seed);
            File.WriteAllBytes(path, bytes);
            return new FuzzCase(what, () => ReadOnnx(path));
        }, output);
    }
}
