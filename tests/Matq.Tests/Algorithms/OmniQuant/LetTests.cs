// OmniQuant's LET: folding the scales into the block's norms and linears is exact (the folded block computes what the
// block with LET applied as transforms computes, float and quantized); LET + LWC reconstructs a block with outlier
// activation channels better than LWC alone; the option is recorded, refused when malformed, and works under MatQuant.
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Kernels.Quantization;
using Matq.Models;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Pipeline;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.OmniQuant;

public class LetTests
{
    private static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // every linear with a bias (Qwen2's q/k/v, attention_bias / mlp_bias models): LWC adds it, the fold divides it by so
    public void Folded_let_gives_the_outputs_of_let_applied_as_transforms(bool biases)
    {
        using var model = PipelineFixtures.LoadTiny();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var c = model.Config;
        Assert.True(c.NumKvHeads < c.NumHeads && !c.QkNorm, "the fixture has grouped kv heads and no q/k norms, so every pair is tested");
        var layer = model.Layers[1];
        var names = LlamaDecoderLayer.LinearNames;
        using var let = new LetBlock(c, names);
        manual_seed(21);
        foreach (var theta in let.Trainable) theta.copy_(randn_like(theta) * 0.5);
        Assert.Equal(4, let.Trainable.Count);
        Tensor x = randn(2, 12, c.HiddenSize);
        if (biases)
            foreach (var n in names)
            {
                var linear = (Linear)layer.GetLinear(n);
                linear.bias = new TorchSharp.Modules.Parameter(randn(linear.weight!.shape[0]) * 0.3);
            }
        Tensor y0 = layer.forward(x);                                                  // the float block
        var spec = QuantSpec.Grouped(4, 32);

        var originals = names.Select(n => (Name: n, Module: layer.GetLinear(n))).ToList();
        var lwc = originals.Select(o => new LwcLinear(o.Name, ((Linear)o.Module).weight!, spec, init: 4, bias: ((Linear)o.Module).bias)
            { Let = () => let.Scales(o.Name) }).ToList();
        for (int i = 0; i < lwc.Count; i++) layer.ReplaceLinear(names[i], lwc[i]);
        foreach (var m in lwc) m.Bits = 0;
        Tensor yFloatTransforms = layer.forward(x);
        foreach (var m in lwc) m.Bits = 4;
        Tensor yTransforms = layer.forward(x);                                         // LET as transforms, 4-bit weights
        var exported = lwc.Select(m => m.Export()).ToList();
        foreach (var m in lwc) m.Let = null;
        Tensor yNoLet = layer.forward(x);                                              // the same clipping without LET
        foreach (var (name, module) in originals) layer.ReplaceLinear(name, module);

        var norm = layer.InputLayerNorm.Weight.clone();
        let.Fold(layer);
        Assert.True(MaxAbs(norm, layer.InputLayerNorm.Weight) > 1e-2, "the fold changed the input norm");
        Tensor yFolded = layer.forward(x);                                             // folded float block
        for (int i = 0; i < names.Count; i++)
        {
            var (codes, scales, zeros) = exported[i];
            ((Linear)layer.GetLinear(names[i])).weight!.copy_(TensorAffineQuantizer.Dequantize(codes, scales, zeros, 32));
        }
        Tensor yFoldedQuantized = layer.forward(x);                                    // folded block serving the exported codes

        double scale = y0.abs().max().item<float>();
        Assert.True(MaxAbs(yFloatTransforms, y0) <= 1e-5 * scale, $"float transforms moved the output by {MaxAbs(yFloatTransforms, y0):E2}");
        Assert.True(MaxAbs(yFolded, y0) <= 1e-5 * scale, $"the folded float block differs by {MaxAbs(yFolded, y0):E2}");
        Assert.True(MaxAbs(yFoldedQuantized, yTransforms) <= 1e-5 * scale, $"folded vs transforms (4-bit) differ by {MaxAbs(yFoldedQuantized, yTransforms):E2}");
        // the scales changed what is rounded: the quantized outputs with and without LET differ
        Assert.True(MaxAbs(yTransforms, yNoLet) > 1e-3 * scale, "LET's scales did not change the quantized block");
        foreach (var m in lwc) m.Dispose();
    }

    [Fact]
    public void Qk_pair_is_left_out_with_qk_norms_and_unselected_pairs_are_not_made()
    {
        using var model = PipelineFixtures.LoadTiny();
        using var mlpOnly = new LetBlock(model.Config, ["mlp.down_proj", "mlp.up_proj"]);
        Assert.NotNull(mlpOnly.Theta(LetBlock.Fc));
        Assert.Null(mlpOnly.Theta(LetBlock.Qkv));
        Assert.Null(mlpOnly.Theta(LetBlock.Vo));
        Assert.Null(mlpOnly.Theta(LetBlock.Qk));
        using var oOnly = new LetBlock(model.Config, ["self_attn.o_proj"]);
        Assert.NotNull(oOnly.Theta(LetBlock.Vo));
        Assert.Null(oOnly.Theta(LetBlock.Qk));
    }

    // Outlier input channels made by an exact rescaling of the float model: in every block the two norms' weights grow
    // ×k on a few channels and the columns of q/k/v and gate/up that read them shrink ÷k. The float model is unchanged,
    // but those columns are now tiny inside their groups, so LWC alone rounds them coarsely; LET can scale them back.
    private static void InjectOutliers(LlamaForCausalLM model, double k)
    {
        using var noGrad = no_grad();
        long h = model.Config.HiddenSize;
        long[] channels = [3, h / 3, h / 2 + 1, h - 5];
        var idx = tensor(channels);
        foreach (var layer in model.Layers)
        {
            foreach (var (norm, linears) in new[] { (layer.InputLayerNorm, new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj" }), (layer.MlpInputNorm, new[] { "mlp.gate_proj", "mlp.up_proj" }) })
            {
                norm.Weight.index_copy_(0, idx, norm.Weight.index_select(0, idx) * k);
                foreach (var n in linears)
                {
                    var w = ((Linear)layer.GetLinear(n)).weight!;
                    w.index_copy_(1, idx, w.index_select(1, idx) / k);
                }
            }
        }
    }

    private static (double Block0Mse, QuantizationResult Result) RunOmni(bool let, string method = "omniquant")
    {
        using var model = PipelineFixtures.LoadTiny();
        InjectOutliers(model, 16);
        var options = new Dictionary<string, string> { ["epochs"] = "6", ["lwc-lr"] = "0.05", ["lwc-batch"] = "2", ["let"] = let ? "true" : "false", ["let-lr"] = "0.05" };
        if (method == "matquant") { options["base"] = "omniquant"; options["bits"] = "8,4,2"; options["lambda"] = "0,0,1"; }
        var config = new QuantizationConfig(method, method == "matquant" ? 8 : 2, 32, options: options);
        var epochs = new List<OmniQuantEpoch>();
        QuantizationAlgorithm alg = method == "omniquant" ? new OmniQuantAlgorithm(config) { EpochLog = epochs.Add } : new MatQuantAlgorithm(config) { EpochLog = epochs.Add };
        var result = QuantizationRunner.Run(alg, new QuantizationContext(model, CPU, () => new CalibrationTokens(AthenaTestData.ZipfWindows(8, 24, seed: 5)), seed: 9));
        var last = epochs.Where(e => e.Block == 0).MaxBy(e => e.Epoch)!;
        return (last.WidthMse[^1], result);
    }

    [Fact]
    public void Let_with_lwc_reconstructs_a_block_with_outlier_channels_no_worse_than_lwc_alone()
    {
        var (lwcOnly, _) = RunOmni(let: false);
        var (withLet, result) = RunOmni(let: true);
        Assert.True(withLet <= lwcOnly, $"block 0 reconstruction mse: LET + LWC {withLet:E3}, LWC alone {lwcOnly:E3}");
        Assert.Equal("true", result.AlgorithmSettings["let"]!.ToString());
        Assert.NotNull(result.AlgorithmSettings["let_lr"]);
    }

    [Fact]
    public void Let_trains_under_matquant_with_the_omniquant_base()
    {
        var (lwcOnly, _) = RunOmni(let: false, method: "matquant");
        var (withLet, result) = RunOmni(let: true, method: "matquant");
        Assert.True(withLet <= lwcOnly, $"block 0 int2-slice mse: LET + LWC {withLet:E3}, LWC alone {lwcOnly:E3}");
        Assert.Equal("true", result.AlgorithmSettings["omniquant"]!["let"]!.ToString());
    }

    [Theory]
    [InlineData("let", "maybe", "omniquant let = 'maybe' is not true or false")]
    [InlineData("let-lr", "2", "omniquant let-lr = 2 is out of range")]
    public void Malformed_let_options_are_one_line(string key, string value, string message)
    {
        var config = new QuantizationConfig("omniquant", 4, 32, options: new Dictionary<string, string> { [key] = value });
        var e = Assert.Throws<MatqException>(() => new OmniQuantAlgorithm(config));
        Assert.Contains(message, e.Message);
    }
}
