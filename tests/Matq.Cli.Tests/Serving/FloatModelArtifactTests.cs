// Matq.Runtime opens an HF float folder without TorchSharp by quantizing it to an int8 RTN master itself
// (Loading/FloatModelArtifact, what MatqModel.Open does for models/tiny): that artifact holds the same quantized layers,
// codes, scales and zeros as `matq quantize --method rtn --bits 8 --group 32` (the TorchSharp path `matq serve` takes
// for a float model), the same float tensors, and serves the same greedy text at 8 and at 2 bits.
using Matq.Formats.Artifact;
using Matq.Runtime;
using Matq.Runtime.Loading;
using Matq.Runtime.Serving;

namespace Matq.Cli.Tests.Serving;

public sealed class FloatModelArtifactTests
{
    [Fact]
    public void The_runtime_rtn_master_of_a_float_folder_equals_matq_quantize_rtn()
    {
        var dir = Directory.CreateTempSubdirectory("matq-float-artifact-").FullName;
        try
        {
            var model = CliRunner.TinyModel();
            var cli = CliRunner.QuantizeRtn8(Path.Combine(dir, "cli.matq"), model);
            var runtime = Path.Combine(dir, "runtime.matq");
            FloatModelArtifact.WriteRtn8(model, runtime, groupSize: 32);

            var a = MatqArtifact.Open(cli);
            var b = MatqArtifact.Open(runtime);
            Assert.Equal(a.Metadata.MasterBits, b.Metadata.MasterBits);
            Assert.Equal(a.Metadata.GroupSize, b.Metadata.GroupSize);
            Assert.Equal(a.Quantized.Select(t => t.Name).Order(), b.Quantized.Select(t => t.Name).Order());
            Assert.Equal(28, b.Quantized.Count);
            foreach (var qa in a.Quantized)
            {
                var qb = b.GetQuantized(qa.Name);
                Assert.Equal((qa.OutFeatures, qa.InFeatures, qa.GroupSize), (qb.OutFeatures, qb.InFeatures, qb.GroupSize));
                int differ = qa.Codes.Zip(qb.Codes).Count(p => p.First != p.Second);
                Assert.True(differ == 0, $"{qa.Name}: {differ} of {qa.Codes.Length} codes differ");
                for (int i = 0; i < qa.Scales.Length; i++)
                {
                    Assert.Equal(qa.Scales[i], qb.Scales[i], 1e-6f * Math.Abs(qa.Scales[i]) + 1e-12f);
                    Assert.Equal(qa.Zeros[i], qb.Zeros[i]);
                }
            }
            Assert.Equal(a.Floats.Select(t => t.Name).Order(), b.Floats.Select(t => t.Name).Order());
            foreach (var fa in a.Floats)
                Assert.Equal(fa.Values, b.GetFloat(fa.Name).Values);

            // served alike (the CLI artifact with the same tokenizer folder)
            using var fromFolder = MatqModel.Open(model, new MatqModelOptions { Threads = 1 });
            using var fromCli = MatqModel.Open(cli, new MatqModelOptions { Threads = 1 });
            foreach (int bits in new[] { 8, 2 })
            {
                var p = new CompletionParameters { Prompt = "Fellow citizens", MaxTokens = 24, Bits = bits };
                Assert.Equal(fromCli.Generate(p).Text, fromFolder.Generate(p).Text);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
