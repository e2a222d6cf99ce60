// Matq.Runtime serves a .matq without TorchSharp: its assembly and the Matq assemblies it pulls in reference no
// TorchSharp (nor Matq, the TorchSharp side), nothing TorchSharp-related lands in this test's output, and the tiny HF
// fixture — quantized here with Matq.Kernels' RTN and written with Matq.Formats — loads on the packed path, matches the
// transformers logits within 8-bit quantization error and generates, with no libtorch mapped into this process.
using System.Reflection;
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Kernels.Quantization;
using Matq.Runtime.Generation;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Packed;

namespace Matq.Runtime.Tests;

public sealed class WithoutTorchSharpTests
{
    private static string Fixture(params string[] parts)
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !Directory.Exists(Path.Combine(dir, "tests", "fixtures"))) dir = Path.GetDirectoryName(dir);
        if (dir is null) throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
        return Path.Combine([dir, "tests", "fixtures", .. parts]);
    }

    [Fact]
    public void Matq_runtime_and_its_matq_dependencies_reference_no_TorchSharp()
    {
        var seen = new Dictionary<string, AssemblyName[]>(StringComparer.Ordinal);
        var todo = new Queue<Assembly>([typeof(PackedLlamaModel).Assembly]);
        while (todo.Count > 0)
        {
            var a = todo.Dequeue();
            var name = a.GetName().Name!;
            if (!seen.TryAdd(name, a.GetReferencedAssemblies())) continue;
            foreach (var r in seen[name].Where(r => r.Name!.StartsWith("Matq", StringComparison.Ordinal)))
                todo.Enqueue(Assembly.Load(r));
        }
        Assert.Equal(["Matq.Formats", "Matq.Kernels", "Matq.Runtime"], seen.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, refs) in seen)
        {
            Assert.DoesNotContain(refs, r => r.Name!.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain(refs, r => r.Name == "Matq");
        }
        Assert.Contains(seen["Matq.Runtime"], r => r.Name == "Matq.Kernels");   // the walk saw real references
        // nothing in the dependency closure copied TorchSharp or libtorch next to this test
        var output = Directory.EnumerateFiles(AppContext.BaseDirectory, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain(output, f => f!.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || f.Contains("libtorch", StringComparison.Ordinal));
        Assert.Contains("Matq.Runtime.dll", output);
    }

    [Fact]
    public void The_tiny_model_loads_and_generates_on_the_packed_path_without_libtorch()
    {
        var folder = Fixture("tiny-llama");
        var path = Path.Combine(Directory.CreateTempSubdirectory("matq-runtime-").FullName, "tiny-rtn8.matq");
        try
        {
            WriteRtnArtifact(folder, path);
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = 8 });
            Assert.Equal(8, model.Bits);
            Assert.Equal(7 * 2, model.Layers.Sum(l => l.Linears.Count()));

            // forward: the transformers logits of the fixture within 8-bit RTN error
            var (ids, reference) = Expected(folder);
            int v = model.Config.VocabSize;
            var session = new PackedLlamaSession(model, threads: 1);
            var logits = session.Forward(ids, allLogits: true);
            Assert.Equal(reference.Length, logits.Length);
            float max = reference.Max(Math.Abs), worst = logits.Zip(reference, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 0.02f * max, $"max |Δlogit| {worst:G4} vs max |logit| {max:G4}");

            // greedy generation: each new id is the argmax of the logits of the sequence so far
            var prompt = ids.Take(8).ToArray();
            session.Reset();
            var (generated, stats) = PackedTextGenerator.Generate(session, prompt,
                new GenerationOptions { MaxNewTokens = 6, ContextLength = session.ContextLength, Sampling = new SamplingOptions { Temperature = 0 } });
            Assert.Equal(6, generated.Count);
            Assert.Equal(prompt.Length, stats.PromptTokens);
            var check = new PackedLlamaSession(model, threads: 1);
            for (int i = 0; i < generated.Count; i++)
            {
                check.Reset();
                var last = check.Forward([.. prompt, .. generated.Take(i)]);
                Assert.Equal(Array.IndexOf(last, last.Max()), generated[i]);
            }
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }

        // nothing above mapped libtorch (or TorchSharp's native library) or loaded a TorchSharp assembly
        var maps = File.ReadAllLines("/proc/self/maps");
        Assert.Contains(maps, l => l.Contains("libcoreclr", StringComparison.Ordinal));   // the maps really list this process's libraries
        Assert.DoesNotContain(maps, l => l.Contains("libtorch", StringComparison.Ordinal) || l.Contains("LibTorchSharp", StringComparison.Ordinal));
        Assert.DoesNotContain(AppDomain.CurrentDomain.GetAssemblies(), a => a.GetName().Name!.StartsWith("TorchSharp", StringComparison.Ordinal));
    }

    // RTN at 8 bits, per output channel, of every linear of the decoder blocks; embeddings, norms and head stay fp32.
    private static void WriteRtnArtifact(string folder, string path)
    {
        var configJson = File.ReadAllText(Path.Combine(folder, HfLlamaConfig.FileName));
        var config = HfLlamaConfig.Parse(configJson, "tiny-llama config.json");
        using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(folder, "model.safetensors"));
        var writer = new MatqArtifactWriter("rtn", 8, -1, symmetric: false, [8])
        {
            ModelConfig = MatqMetadata.ParseObject(configJson, "model_config"),
        };
        var spec = new QuantSpec(8, Granularity.PerChannel);
        foreach (var (name, shape) in LlamaTensors.Expected(config))
        {
            var w = ckpt.ReadFloat32(name);
            if (name.StartsWith("model.layers.", StringComparison.Ordinal) && name.EndsWith("_proj.weight", StringComparison.Ordinal))
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                var (p, codes) = AffineQuantizer.QuantizeMatrix(w, rows, cols, spec);
                writer.AddQuantized(name, rows, cols, codes, p.Scales, p.Zeros.Select(z => (float)z).ToArray());
            }
            else writer.AddFloat(name, shape, w);
        }
        writer.Write(path);
    }

    // The fixture's first input row and its transformers fp32 logits [T, V].
    private static (int[] Ids, float[] Logits) Expected(string folder)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, "expected.safetensors"));
        var raw = f.ReadBytes("input_ids");
        var shape = f.Tensors.Single(t => t.Name == "logits").Shape;
        int t = (int)shape[1], v = (int)shape[2];
        var ids = Enumerable.Range(0, t).Select(i => (int)BitConverter.ToInt64(raw, 8 * i)).ToArray();
        return (ids, f.ReadFloat32("logits").AsSpan(0, t * v).ToArray());
    }
}
