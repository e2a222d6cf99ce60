// OmniQuant LWC and MatQuant's omniquant base: min-max RTN at a saturated init, exact forward/export agreement, the
// gradients to the clip logits (LSQ's where the slice clips), block losses that fall with training, the objective's
// wiring (λ masking, R = {c}, co-distillation), the artifact round trip with finite served perplexity, option errors.
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Evaluation;
using Matq.Formats.Artifact;
using Matq.Kernels.Quantization;
using Matq.Loading;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Runtime.Cuda;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.OmniQuant;

public class OmniQuantTests
{
    private static CalibrationTokens Data() => new(AthenaTestData.ZipfWindows(8, 24, seed: 5));

    private static QuantizationConfig Omni(int bits, int epochs = 2, params (string Key, string Value)[] extra)
    {
        var options = new Dictionary<string, string> { ["epochs"] = epochs.ToString(), ["lwc-lr"] = "0.05", ["lwc-batch"] = "2" };
        foreach (var (k, v) in extra) options[k] = v;
        return new QuantizationConfig("omniquant", bits, 32, options: options);
    }

    private static QuantizationConfig Mq(string bits, string lambda, int epochs = 2, params (string Key, string Value)[] extra)
    {
        var options = new Dictionary<string, string>
        {
            ["base"] = "omniquant", ["bits"] = bits, ["lambda"] = lambda, ["epochs"] = epochs.ToString(), ["lwc-lr"] = "0.05", ["lwc-batch"] = "2",
        };
        foreach (var (k, v) in extra) options[k] = v;
        return new QuantizationConfig("matquant", 8, 32, options: options);
    }

    private static QuantizationResult Run(QuantizationConfig config, Action<OmniQuantEpoch>? log = null)
    {
        using var model = PipelineFixtures.LoadTiny();
        QuantizationAlgorithm alg = config.Method == "omniquant"
            ? new OmniQuantAlgorithm(config) { EpochLog = log }
            : new MatQuantAlgorithm(config) { EpochLog = log };
        return QuantizationRunner.Run(alg, new QuantizationContext(model, CPU, Data, seed: 9));
    }

    public static TheoryData<int, int, bool, int> Specs => new()
    {
        { 8, 16, false, 40 }, { 4, 16, false, 37 }, { 3, 0, false, 40 }, { 2, 32, false, 70 }, { 4, 16, true, 40 }, { 8, 0, true, 33 },
    };

    private static QuantSpec Spec(int bits, int group, bool symmetric) =>
        group == 0 ? QuantSpec.PerChannel(bits, symmetric ? QuantScheme.Symmetric : QuantScheme.Asymmetric)
            : QuantSpec.Grouped(bits, group, symmetric ? QuantScheme.Symmetric : QuantScheme.Asymmetric);

    [Theory]
    [MemberData(nameof(Specs))]
    public void Saturated_init_is_min_max_rtn_exactly(int bits, int group, bool symmetric, int cols)
    {
        manual_seed(bits * 100 + cols);
        var w = randn(6, cols) * 0.05;
        var spec = Spec(bits, group, symmetric);
        using var lwc = new LwcLinear("l", w, spec, init: 20);            // σ(20) = 1 in float32
        var (codes, scales, zeros) = lwc.Export();
        var rtn = TensorAffineQuantizer.Quantize(w, spec);
        Assert.True(codes.eq(rtn.Codes).all().item<bool>(), "codes equal RTN's");
        Assert.True(scales.eq(rtn.Scales).all().item<bool>(), "scales equal RTN's");
        Assert.True(zeros.eq(rtn.Zeros).all().item<bool>(), "zero points equal RTN's");
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void Default_init_starts_just_inside_the_min_max_range(int bits, int group, bool symmetric, int cols)
    {
        manual_seed(bits * 10 + cols);
        var w = randn(6, cols) * 0.05;
        var spec = Spec(bits, group, symmetric);
        using var lwc = new LwcLinear("l", w, spec, init: 4);
        var (codes, scales, zeros) = lwc.Export();
        var rtn = TensorAffineQuantizer.Quantize(w, spec);
        double s = 1 / (1 + Math.Exp(-4));
        Assert.True((scales / rtn.Scales).sub(s).abs().max().item<float>() < 1e-5, "α = σ(4)·α_rtn");
        // within rounding of the RTN codes rescaled by 1/σ(4) around z
        var expect = (rtn.Codes.to(ScalarType.Float32) - rtn.Zeros.repeat_interleave(spec.EffectiveGroupSize(cols), 1).narrow(1, 0, cols)).div(s)
            .add(zeros.repeat_interleave(spec.EffectiveGroupSize(cols), 1).narrow(1, 0, cols)).clamp(0, (1 << bits) - 1);
        Assert.True((codes.to(ScalarType.Float32) - expect).abs().max().item<float>() <= 1.5f, "codes within rounding of RTN's rescaled");
        using var bounded = new LwcLinear("m", w, spec, init: 4, max: 2);      // a bound > 1 starts at the same γ = σ(init)
        Assert.True(bounded.Export().Scales.sub(scales).abs().max().item<float>() < 1e-6 * scales.abs().max().item<float>() + 1e-9);
    }

    [Theory]
    [InlineData(8, false)]
    [InlineData(4, false)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void Forward_equals_the_exported_codes_sliced_and_dequantized_exactly(int r, bool extra)
    {
        manual_seed(3);
        using var m = new LwcLinear("l", randn(5, 37) * 0.1, QuantSpec.Grouped(8, 16), 4, max: 2) { ExtraPrecision = extra, Bits = r };
        using (no_grad()) { m.ClipMax.add_(randn(5, 3) * 0.5); m.ClipMin.add_(randn(5, 3) * 0.5); }
        var (codes, scales, zeros) = m.Export();
        var sliced = extra ? TensorNestedSlice.SliceExtra(codes, 8, r).Codes : TensorNestedSlice.Slice(codes, 8, r);
        var served = TensorNestedSlice.Dequantize(sliced, scales, zeros, 16, 8, r);
        Assert.True(m.SlicedWeight(r).detach().eq(served).all().item<bool>());
        var x = randn(4, 37);
        Assert.True(m.forward(x).allclose(x.matmul(served.t()), rtol: 0, atol: 1e-6));
        m.Bits = 0;
        Assert.True(m.forward(x).allclose(x.matmul(m.FloatWeight.t()), rtol: 0, atol: 1e-6));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_shared_master_quantization_gives_every_width_the_same_forward_and_gradients(bool extra)
    {
        // MatQuant-OmniQuant's step computes W/α + z̄ and the master codes once and slices them per width
        // (BeginShared): each width's ŵ must be bit-identical to its own computation, and the summed gradients equal up
        // to the order of their additions
        manual_seed(5);
        var w = randn(6, 40) * 0.1;
        var x = randn(3, 40);
        (Tensor[] Outs, Tensor Max, Tensor Min) Run(bool shared)
        {
            using var m = new LwcLinear("l", w, QuantSpec.Grouped(8, 16), 4, max: 2) { ExtraPrecision = extra };
            using (no_grad()) { m.ClipMax.add_(0.3); m.ClipMin.add_(-0.2); }
            if (shared) m.BeginShared();
            var outs = new List<Tensor>();
            Tensor loss = zeros(Array.Empty<long>());
            foreach (var (r, lambda) in new[] { (8, 1.0), (4, 1.0), (2, 2.0) })
            {
                m.Bits = r;
                var o = m.forward(x);
                outs.Add(o.detach().clone());
                loss = loss + o.square().mean() * lambda;
            }
            loss.backward();
            m.EndShared();
            return (outs.ToArray(), m.ClipMax.grad!.clone(), m.ClipMin.grad!.clone());
        }
        var plain = Run(false);
        var shared = Run(true);
        for (int i = 0; i < plain.Outs.Length; i++)
            Assert.True(plain.Outs[i].eq(shared.Outs[i]).all().item<bool>(), $"width {i}: the forward differs");
        Assert.True(plain.Max.abs().sum().item<float>() > 0 && plain.Min.abs().sum().item<float>() > 0);
        Assert.True(shared.Max.allclose(plain.Max, rtol: 1e-5, atol: 1e-9), "clip_max gradients differ");
        Assert.True(shared.Min.allclose(plain.Min, rtol: 1e-5, atol: 1e-9), "clip_min gradients differ");
    }

    [Fact]
    public void Tf32_is_on_by_default_and_its_scope_restores_the_previous_setting()
    {
        Assert.True(new OmniQuantConfig().Tf32);
        Assert.False(OmniQuantConfig.Parse(new OptionReader(new QuantizationConfig("omniquant", 4, 32, options: new Dictionary<string, string> { ["tf32"] = "false" }))).Tf32);
        var bad = Assert.Throws<MatqException>(() => OmniQuantConfig.Parse(new OptionReader(new QuantizationConfig("omniquant", 4, 32, options: new Dictionary<string, string> { ["tf32"] = "half" }))));
        Assert.Contains("tf32", bad.Message);
        Assert.Null(Tf32Scope.For(CPU, true));                                  // nothing changes off CUDA
        Assert.Null(Tf32Scope.For(new Device("cuda"), false));
        bool before = backends.cuda.matmul.allow_tf32;
        try
        {
            backends.cuda.matmul.allow_tf32 = false;
            using (Tf32Scope.For(new Device("cuda"), true))
                Assert.True(backends.cuda.matmul.allow_tf32);
            Assert.False(backends.cuda.matmul.allow_tf32);
        }
        finally { backends.cuda.matmul.allow_tf32 = before; }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    public void Gradient_reaches_both_clip_logits_through_every_slice(int r)
    {
        manual_seed(11);
        using var m = new LwcLinear("l", randn(6, 64) * 0.05, QuantSpec.Grouped(8, 16), 4, max: r == 8 ? 1 : 2);
        var loss = m.SlicedWeight(r).sub(m.FloatWeight).square().sum();
        loss.backward();
        foreach (var g in new[] { m.ClipMax.grad!, m.ClipMin.grad! })
            Assert.True(g.ne(0).to(ScalarType.Float32).mean().item<float>() > 0.9, $"int{r}: {g.ne(0).sum().item<long>()} of {g.numel()} groups get a gradient");
    }

    [Fact]
    public void Where_the_slice_clips_the_scale_gets_lsq_gradient_q_minus_z()
    {
        // per-element α (group 1): ∂ŵ/∂α = q_r − u inside the slice's range, q_r − z where the int2 slice clamps at code 192
        var w = tensor(new float[] { -0.30f, 0.02f, 0.50f, 0.95f }, new long[] { 1, 4 });
        var alpha = full(1, 4, 1f / 255, requires_grad: true);
        var zero = full(1, 4, 85f);
        NestedQuantLinear.Nested(w, alpha, zero, 1, 8, 2, false, sliceRange: true).sum().backward();
        var u = w.div(alpha.detach()).add(85);                                  // 8.5, 90.1, 212.5, 327.3 (master clamps the last)
        var qr = tensor(new float[] { 0, 64, 192, 192 }, new long[] { 1, 4 });
        var expected = where(u.gt(223.5), qr - 85, qr - u);
        Assert.True(alpha.grad!.allclose(expected, rtol: 1e-5, atol: 1e-3), string.Join(", ", alpha.grad!.data<float>().ToArray()));
        Assert.True(alpha.grad![0, 3].item<float>() > 0, "a clipped weight pulls α up, towards covering it");
    }

    [Fact]
    public void Training_lowers_every_block_loss_and_the_int2_slice()
    {
        var plain = new List<OmniQuantEpoch>();
        Run(Omni(3, epochs: 6), plain.Add);
        var nested = new List<OmniQuantEpoch>();
        Run(Mq("8,4,2", "1,1,1", epochs: 6), nested.Add);
        foreach (var log in new[] { plain, nested })
            foreach (var block in log.GroupBy(e => e.Block))
            {
                var first = block.First(e => e.Epoch == 1);
                var last = block.First(e => e.Epoch == 6);
                Assert.True(last.Loss < first.Loss, $"block {block.Key}: {first.Loss} → {last.Loss}");
            }
        var b0 = nested.Where(e => e.Block == 0).ToList();
        Assert.True(b0[^1].WidthMse[2] < b0[0].WidthMse[2], "the int2 slice's reconstruction improves");
    }

    [Fact]
    public void Lambda_001_over_842_trains_exactly_like_single_precision_2()
    {
        var a = Run(Mq("8,4,2", "0,0,1")).Layers;
        var b = Run(Mq("2", "1")).Layers;
        var c = Run(Mq("8,4,2", "1,1,1")).Layers;
        for (int i = 0; i < a.Count; i++) Assert.Equal(a[i].Codes, b[i].Codes);
        Assert.Contains(Enumerable.Range(0, a.Count), i => !a[i].Codes.SequenceEqual(c[i].Codes));
    }

    [Fact]
    public void Matquant_at_R_equal_c_is_plain_omniquant_and_an_untrained_saturated_run_is_rtn()
    {
        var mq = Run(new QuantizationConfig("matquant", 4, 32, options: new Dictionary<string, string>
            { ["base"] = "omniquant", ["bits"] = "4", ["epochs"] = "2", ["lwc-lr"] = "0.05", ["lwc-batch"] = "2" })).Layers;
        var omni = Run(Omni(4)).Layers;
        for (int i = 0; i < mq.Count; i++) Assert.Equal(mq[i].Codes, omni[i].Codes);

        var untrained = Run(Omni(4, epochs: 0, ("lwc-init", "20"))).Layers;
        using var model = PipelineFixtures.LoadTiny();
        var rtn = PipelineFixtures.Quantize(model, PipelineFixtures.Rtn(4)).Layers;
        for (int i = 0; i < rtn.Count; i++)
        {
            Assert.Equal(rtn[i].Codes, untrained[i].Codes);
            Assert.Equal(rtn[i].Scales, untrained[i].Scales);
        }
        Assert.Contains(Enumerable.Range(0, rtn.Count), i => !rtn[i].Codes.SequenceEqual(omni[i].Codes));
    }

    [Fact]
    public void Codistill_terms_change_the_result_and_weight_0_removes_them()
    {
        var none = Run(Mq("8,4,2", "1,1,1")).Layers;
        var cd = Run(Mq("8,4,2", "1,1,1", 2, ("codistill", "8->2"))).Layers;
        var zero = Run(Mq("8,4,2", "1,1,1", 2, ("codistill", "8->2"), ("codistill-weight", "0"))).Layers;
        Assert.Contains(Enumerable.Range(0, none.Count), i => !none[i].Codes.SequenceEqual(cd[i].Codes));
        for (int i = 0; i < none.Count; i++) Assert.Equal(none[i].Codes, zero[i].Codes);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    public void Artifact_served_at_r_holds_the_sliced_codes_and_scores_finite_perplexity(int r)
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = new QuantizationConfig("matquant", 8, 32, includeLmHead: true, options: new Dictionary<string, string>
            { ["base"] = "omniquant", ["bits"] = "8,4,2", ["codistill"] = "8->2", ["epochs"] = "1", ["lwc-lr"] = "0.05", ["lwc-batch"] = "4" });
        var result = QuantizationRunner.Run(config, new QuantizationContext(model, CPU, Data, seed: 9));
        Assert.Equal(15, result.Layers.Count);                                   // 2 blocks × 7 linears + lm_head
        var path = System.IO.Path.Combine(HfFixtures.TempDir(), "omni.matq");
        ArtifactExport.Write(result, model, path);
        var meta = MatqArtifact.Open(path).Metadata;
        Assert.Equal("matquant", meta.Algorithm);
        Assert.Equal([8, 4, 2], meta.TrainedBits);
        Assert.Equal("omniquant", meta.AlgorithmConfig.GetProperty("settings").GetProperty("base").GetString());

        using var served = QuantizedModelLoader.LoadServed(path, r);
        foreach (var layer in result.Layers)
        {
            var codes = tensor(layer.Codes, new long[] { layer.OutFeatures, layer.InFeatures });
            var scales = tensor(layer.Scales, new long[] { layer.OutFeatures, layer.GroupCount });
            var zeros = tensor(layer.Zeros, new long[] { layer.OutFeatures, layer.GroupCount });
            var expected = TensorNestedSlice.Dequantize(TensorNestedSlice.Slice(codes, 8, r), scales, zeros, layer.GroupWidth, 8, r);
            Assert.True(served.Model.get_parameter(layer.WeightName)!.eq(expected).all().item<bool>(), layer.Name);
        }
        var tokens = AthenaTestData.ZipfWindows(1, 300, seed: 2)[0];
        var ppl = Perplexity.Evaluate(served.Model, tokens, tokens.Length, new PerplexityOptions { Context = 64, Stride = 32, Batch = 4 }, CPU).Perplexity;
        Assert.True(double.IsFinite(ppl) && ppl > 1, $"perplexity {ppl}");
    }

    [Fact]
    public void Plain_omniquant_artifact_records_its_method_and_width()
    {
        using var model = PipelineFixtures.LoadTiny();
        var result = QuantizationRunner.Run(Omni(4, epochs: 1), new QuantizationContext(model, CPU, Data, seed: 9));
        var path = System.IO.Path.Combine(HfFixtures.TempDir(), "omni4.matq");
        ArtifactExport.Write(result, model, path);
        var meta = MatqArtifact.Open(path).Metadata;
        Assert.Equal("omniquant", meta.Algorithm);
        Assert.Equal(4, meta.MasterBits);
        Assert.Equal([4], meta.TrainedBits);
        Assert.All(result.Layers, l => Assert.True(l.Codes.All(c => c < 16)));
    }

    [Theory]
    [InlineData("epochs", "-1", "epochs = -1 is out of range")]
    [InlineData("epochs", "two", "is not an integer")]
    [InlineData("lwc-lr", "0", "lwc-lr = 0 is out of range")]
    [InlineData("lwc-lr", "1.5", "lwc-lr = 1.5 is out of range")]
    [InlineData("lwc-batch", "0", "lwc-batch = 0 is out of range")]
    [InlineData("lwc-init", "50", "lwc-init = 50 is out of range")]
    [InlineData("lwc-init", "nan", "lwc-init = NaN is out of range")]
    [InlineData("lwc-max", "0.5", "lwc-max = 0.5 is out of range")]
    [InlineData("lwc-max", "big", "is not a number")]
    [InlineData("samples", "-3", "samples = -3 is out of range")]
    [InlineData("steps", "3", "has no option 'steps'")]
    public void Bad_options_throw_one_clear_error(string key, string value, string expected)
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig("omniquant", 4, 32,
            options: new Dictionary<string, string> { [key] = value })));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Matquant_omniquant_options_are_checked_too()
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(Mq("8,4", "1,1", 2, ("codistill", "8->2"))));
        Assert.Contains("codistill", e.Message);
        e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(Mq("8,4,2", "1,1,1", -2)));
        Assert.Contains("epochs", e.Message);
        var alg = Assert.IsType<MatQuantAlgorithm>(AlgorithmRegistry.Create(Mq("8,4,2", "1,1,1", 2, ("codistill", "8->2,8->4"))));
        Assert.Equal(MatQuantBase.OmniQuant, alg.MatQuant.Base);
        Assert.Equal(2.0, alg.Omni.MaxFor(alg.MatQuant.Bits, 8));
        Assert.Equal(1.0, new OmniQuantConfig().MaxFor([4], 4));
        Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig("matquant", 8, 32,
            options: new Dictionary<string, string> { ["base"] = "athena", ["codistill"] = "8->2" })));
    }
}
