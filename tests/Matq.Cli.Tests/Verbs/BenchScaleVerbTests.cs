// `matq bench scale` on llama-3.2-1b's real shapes truncated to 2 layers (RTN 4-bit g128, CPU, one thread): every stage
// has a row, the markdown file holds the same table, the kept artifact has the shape's 14 quantized linears and bf16
// float tensors. Bad options are one line, exit 1, nothing written. No timing or
// memory figure is asserted (a shared machine); that the run streams is tested in LlamaBlockStreamTests.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Cli.Tests.Verbs;

public sealed class BenchScaleVerbTests
{
    private static readonly string[] Stages = ["checkpoint", "open", "calibrate + quantize", "write artifact", "eval artifact"];

    [Fact]
    public void A_truncated_llama_3_2_1b_run_reports_every_stage_and_keeps_a_bf16_artifact()
    {
        var dir = Directory.CreateTempSubdirectory("matq-scale-test-").FullName;
        try
        {
            var work = Path.Combine(dir, "work");
            var md = Path.Combine(dir, "scale.md");
            var run = CliRunner.Run("bench", "scale", "--shape", "llama-3.2-1b", "--layers", "2", "--threads", "1", "--eval-tokens", "8",
                "--work", work, "--out", md);
            Assert.True(run.ExitCode == 0, run.Output);
            foreach (var stage in Stages) Assert.Contains(stage, run.Output);
            Assert.Contains("384,313,344 parameters", run.Output);   // 2 of 16 layers + the tied 128256×2048 embedding
            var text = File.ReadAllText(md);
            foreach (var stage in Stages) Assert.Contains($"| {stage} | ", text);

            var artifact = MatqArtifact.Open(Path.Combine(work, "llama-3.2-1b-rtn4.matq"));
            Assert.Equal(14, artifact.Quantized.Count);
            Assert.All(artifact.Quantized, q => Assert.Equal(128, q.GroupSize));
            Assert.Equal(SafetensorsDtype.BF16, artifact.GetFloat("model.embed_tokens.weight").StoredDtype);
            Assert.All(artifact.Floats, f => Assert.Equal(SafetensorsDtype.BF16, f.StoredDtype));
            using (var ckpt = SafetensorsCheckpoint.Open(Path.Combine(work, "checkpoint")))
                Assert.Equal(ckpt.ReadFloat32("model.embed_tokens.weight"), artifact.GetFloat("model.embed_tokens.weight").Values);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--shape llama-9000", "--shape 'llama-9000' is not known: choose one of llama-3.2-1b, llama-3.1-8b, qwen2.5-7b, gemma-2-9b, mistral-7b")]
    [InlineData("--shape llama-3.2-1b --layers 17", "--layers 17 is out of range for llama-3.2-1b: 1..16")]
    [InlineData("--shape mistral-7b --method matquant --bits 8,4,2 --option base=qat", "--method matquant with base qat trains the whole model resident")]
    [InlineData("--shape mistral-7b --method nope", "--method 'nope' is not known")]
    [InlineData("--shape llama-3.2-1b --eval-tokens 1", "--eval-tokens 1: 0 (no eval stage) or at least 2")]
    public void Bad_options_are_one_line_before_anything_is_written(string args, string message)
    {
        var dir = Directory.CreateTempSubdirectory("matq-scale-bad-").FullName;
        try
        {
            var work = Path.Combine(dir, "work");
            var run = CliRunner.Run(["bench", "scale", .. args.Split(' '), "--work", work]);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains(message, run.Output);
            Assert.False(Directory.Exists(work));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
