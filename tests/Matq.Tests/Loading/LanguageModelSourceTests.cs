// eval/generate open .matq artifacts through ModelSource: at the master bits a served artifact scores exactly like
// the RTN-dequantized float model, lower bits and plans serve, and serving options on a float folder are refused.
using Matq.Evaluation;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Plans;
using Matq.Tests.Pipeline;
using Matq.Tests.Training;
using static TorchSharp.torch;

namespace Matq.Tests.Loading;

public sealed class LanguageModelSourceTests
{
    private static readonly PerplexityOptions Eval = new() { Context = 64, Stride = 32, Batch = 4 };
    private static readonly int[] Tokens = TestText.Tokens(400, 256, 11);   // byte ids: the fixture's marker tokenizer is bytes

    private static double Ppl(nn.Module<Tensor, Tensor> model) => Perplexity.Evaluate(model, Tokens, Tokens.Length, Eval, CPU).Perplexity;

    [Fact]
    public void Matq_at_master_bits_scores_like_the_rtn_dequantized_float_model()
    {
        var folder = PipelineFixtures.TinyWithTokenizer();
        var config = PipelineFixtures.Rtn(8, group: 32);
        var (path, _) = PipelineFixtures.WriteTinyArtifact(config, folder);

        double served;
        using (var lm = LanguageModelSource.Open(path, CPU))
        {
            Assert.Equal(8, lm.Served!.Bits);
            Assert.Equal("bytes", lm.Tokenizer.Name);
            Assert.Contains("served at 8 bits", lm.Description);
            served = Ppl(lm.Module);
        }

        using var model = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        double floatPpl = Ppl(model);
        var result = PipelineFixtures.Quantize(model, config);
        using (no_grad())
            foreach (var layer in result.Layers)
                PipelineFixtures.WeightOf(model, layer.Name).copy_(layer.Dequantize());
        double dequantized = Ppl(model);

        Assert.Equal(dequantized, served, dequantized * 1e-5);
        Assert.NotEqual(floatPpl, served);   // the comparison is not float vs float: the artifact really is quantized
    }

    [Fact]
    public void Lower_bits_and_plans_serve_and_get_worse_as_bits_drop()
    {
        var folder = PipelineFixtures.TinyWithTokenizer();
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8, group: 32), folder);
        var ppl = new Dictionary<int, double>();
        foreach (var r in new[] { 8, 4, 2, 1 })
        {
            using var lm = LanguageModelSource.Open(path, CPU, new ServingRequest(r));
            Assert.Equal(r, lm.Served!.Bits);
            Assert.All(lm.Served.Layers, l => Assert.Equal(r, l.Bits));
            ppl[r] = Ppl(lm.Module);
            Assert.True(double.IsFinite(ppl[r]));
        }
        Assert.True(ppl[1] > ppl[2] && ppl[2] > ppl[8], $"1: {ppl[1]}, 2: {ppl[2]}, 8: {ppl[8]}");

        var plan = Path.Combine(Path.GetDirectoryName(path)!, "plan.json");
        File.WriteAllText(plan, "{\"default\": 2, \"layers\": {\"model.layers.0.mlp.down_proj\": 8, \"model.layers.1.self_attn.q_proj.weight\": 4}}");
        using (var planned = LanguageModelSource.Open(path, CPU, new ServingRequest(PlanPath: plan)))
        {
            var bits = planned.Served!.Layers.ToDictionary(l => l.Name, l => l.Bits);
            Assert.Equal(8, bits["model.layers.0.mlp.down_proj.weight"]);
            Assert.Equal(4, bits["model.layers.1.self_attn.q_proj.weight"]);
            Assert.Equal(2, bits["model.layers.0.self_attn.o_proj.weight"]);
            Assert.Contains("2 of 14 layers at other bits", planned.Description);
        }
        Assert.Contains("disagrees", Assert.Throws<MatqException>(() => LanguageModelSource.Open(path, CPU, new ServingRequest(3, plan))).Message);
        Assert.Contains("more than the artifact's 4 master bits",
            Assert.Throws<MatqException>(() => LanguageModelSource.Open(Rtn4(folder), CPU, new ServingRequest(6))).Message);
    }

    [Fact]
    public void Serving_options_on_a_float_folder_are_refused_clearly()
    {
        var folder = PipelineFixtures.TinyWithTokenizer();
        Assert.Contains("--bits 4 applies to .matq artifacts", Assert.Throws<MatqException>(() => LanguageModelSource.Open(folder, CPU, new ServingRequest(4))).Message);
        var plan = Path.Combine(folder, "plan.json");
        File.WriteAllText(plan, "{\"layers\": {\"model.layers.0.mlp.down_proj\": 4}}");
        Assert.Contains("plan applies to .matq artifacts", Assert.Throws<MatqException>(() => LanguageModelSource.Open(folder, CPU, new ServingRequest(PlanPath: plan))).Message);
        using var lm = LanguageModelSource.Open(folder, CPU);
        Assert.Null(lm.Served);
        Assert.Equal(256, lm.ContextLength);
        // no tokenizer files: one line saying so, not a stack trace from deeper down
        Assert.IsAssignableFrom<MatqException>(Record.Exception(() => LanguageModelSource.Open(PipelineFixtures.TinyPath, CPU)));
    }

    [Theory]
    [InlineData("[1, 2]", "expected an object")]
    [InlineData("{\"default\": 9}", "integer in 1..8")]
    [InlineData("{\"layers\": {\"a\": 2.5}}", "integer in 1..8")]
    [InlineData("{\"bits\": 4}", "unknown key 'bits'")]
    [InlineData("{\"layers\": [4]}", "must be an object")]
    public void Bad_plans_fail_with_one_line(string json, string message) =>
        Assert.Contains(message, Assert.Throws<MatqException>(() => BitPlan.Parse(json, "p.json")).Message);

    [Fact]
    public void Plan_default_and_bits_combine()
    {
        var plan = BitPlan.Parse("{\"default\": 4, \"layers\": {\"model.layers.0.mlp.up_proj\": 8}}", "p.json");
        Assert.Equal(4, plan.ResolveBits(null, "p.json"));
        Assert.Equal(4, plan.ResolveBits(4, "p.json"));
        Assert.Throws<MatqException>(() => plan.ResolveBits(2, "p.json"));
        Assert.Equal(3, BitPlan.Parse("{}", "p.json").ResolveBits(3, "p.json"));
    }

    [Fact]
    public void A_plan_written_by_matq_plan_is_read_too()
    {
        var mix = new BitPlan("hash", 8, 8, new Dictionary<string, int> { ["model.layers.0.mlp.up_proj"] = 2, ["model.layers.0.mlp.down_proj"] = 4 }, "pyramid");
        var plan = BitPlan.Parse(mix.ToJson(), "p.json");
        Assert.Equal(8, plan.DefaultBits);
        Assert.Equal(2, plan.Layers["model.layers.0.mlp.up_proj"]);
        Assert.Equal(4, plan.Layers["model.layers.0.mlp.down_proj"]);
    }

    private static string Rtn4(string folder)
    {
        using var model = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        var result = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(4));
        var path = Path.Combine(Models.HfFixtures.TempDir(), "tiny4.matq");
        ArtifactExport.Write(result, model, path, folder);
        return path;
    }
}
