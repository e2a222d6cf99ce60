// MatQuant QAT base: the nested STE's gradients and exactness, λ masking, option errors, and the artifact round trip
// (trained codes → .matq → served at r equals the in-memory sliced model).
using Matq.Algorithms.Athena;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.Qat;
using Matq.Kernels.Quantization;
using Matq.Loading;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Tests.Algorithms.Athena;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.MatQuant;

public class MatQuantQatTests
{
    private static CalibrationTokens Data() => new(AthenaTestData.ZipfWindows(16, 17, seed: 5));

    private static QuantizationConfig Config(string bits, string lambda, int master = 8, int steps = 3, string extra = "false", string codistill = "",
        string? grid = null)
    {
        var options = new Dictionary<string, string>
        {
            ["bits"] = bits, ["lambda"] = lambda, ["steps"] = steps.ToString(), ["batch"] = "2", ["warmup"] = "1",
            ["extra-precision"] = extra, ["codistill"] = codistill, ["lr"] = "0.01", ["scale-lr"] = "0.01",
        };
        if (grid is not null) options["grid"] = grid;
        return new("matquant", master, 32, options: options);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    [InlineData(3)]
    [InlineData(2)]
    public void Gradient_reaches_weights_and_scales_through_every_slice(int r)
    {
        manual_seed(11);
        var w = randn(6, 40) * 0.05;
        using var m = new NestedQuantLinear("l", w, QuantSpec.Grouped(8, 16));
        var probe = randn(6, 40);
        var loss = m.SlicedWeight(r).mul(probe).sum();
        loss.backward();
        Assert.True(m.LogScale.grad!.abs().min().item<float>() > 0, "every group's scale gets a gradient");
        // pass-through inside the slice's range, 0 where the r-bit slice clamps (codes ≥ (2^r − ½)·2^(8−r))
        var (codes, _, _) = m.Export();
        var inside = r == 8 ? ones_like(probe, dtype: ScalarType.Bool) : codes.to(ScalarType.Float32).lt((Math.Pow(2, r) - 0.5) * (1 << (8 - r)));
        var expected = where(inside, probe, zeros_like(probe));
        var same = m.Weight.grad!.isclose(expected, rtol: 1e-5, atol: 1e-7).to(ScalarType.Float32).mean().item<float>();
        Assert.True(same > 0.999, $"dŵ/dW = 1 inside the slice's range, 0 outside, on {same:P1} of the weights");
    }

    [Fact]
    public void A_code_the_slice_clips_gets_the_clipped_values_gradient_an_unclipped_one_is_unchanged()
    {
        // one row, per-channel: lo = −1, hi = 1 → α = 2/255, z = round(127.5) = 128; 0.9 → code 243, sliced at r = 2 to
        // min(⌊243/64 + ½⌋, 3)·64 = 192 (clipped); 0.3 → code 166, ⌊3.09⌋ = 3 → 192 (not clipped, u = 166.25)
        var w = tensor(new float[] { -1f, 0.9f, 0.3f, 1f }, new long[] { 1, 4 });
        using var m = new NestedQuantLinear("l", w, QuantSpec.PerChannel(8));
        double alpha = m.LogScale.exp().item<float>(), z = m.Zero.round().item<float>();   // z̄ = 128 (127 if 1/α rounds down)
        (double DAlpha, double DW) Grad(int j)
        {
            m.Weight.grad?.zero_();
            m.LogScale.grad?.zero_();
            m.SlicedWeight(2)[0, j].backward();
            return (m.LogScale.grad![0, 0].item<float>() / alpha, m.Weight.grad![0, j].item<float>());   // ∂/∂log α = α·∂/∂α
        }
        var clipped = Grad(1);
        Assert.Equal(192 - z, clipped.DAlpha, 2);        // q_r − z̄ > 0: a clipped weight pulls α up (was q_r − u ≈ −51)
        Assert.Equal(0, clipped.DW);                       // no straight-through where the slice clips
        var inside = Grad(2);
        Assert.Equal(192 - (0.3f / (float)alpha + z), inside.DAlpha, 2);   // q_r − u, unchanged
        Assert.Equal(1, inside.DW);
        // at r = 8 nothing changes: the 0.9 weight is inside the master range
        m.Weight.grad!.zero_();
        m.SlicedWeight(8)[0, 1].backward();
        Assert.Equal(1, m.Weight.grad![0, 1].item<float>());
    }

    [Theory]
    [InlineData(8, false, 37)]     // a short last group: α, z expanded per element
    [InlineData(4, false, 37)]
    [InlineData(2, false, 37)]
    [InlineData(2, true, 37)]
    [InlineData(8, false, 64)]     // whole groups: W viewed per group, α, z broadcast
    [InlineData(4, false, 64)]
    [InlineData(2, false, 64)]
    [InlineData(2, true, 64)]
    public void Forward_equals_the_exported_codes_sliced_and_dequantized_exactly(int r, bool extra, int cols)
    {
        manual_seed(3);
        using var m = new NestedQuantLinear("l", randn(5, cols) * 0.1, QuantSpec.Grouped(8, 16)) { ExtraPrecision = extra };
        using (no_grad()) { m.Weight.add_(randn(5, cols) * 0.01); m.LogScale.add_(0.05); m.Zero.add_(0.7); }
        var (codes, scales, zeros) = m.Export();
        var sliced = extra ? TensorNestedSlice.SliceExtra(codes, 8, r).Codes : TensorNestedSlice.Slice(codes, 8, r);
        var served = TensorNestedSlice.Dequantize(sliced, scales, zeros, 16, 8, r);
        Assert.True(m.SlicedWeight(r).detach().eq(served).all().item<bool>());
    }

    [Theory]
    [InlineData(4, 16)]
    [InlineData(2, 16)]
    [InlineData(2, 64)]            // per channel: one group the whole row
    public void Broadcast_groups_give_the_per_element_values_and_gradients(int r, int groupSize)
    {
        // Nested views W per group and broadcasts α, z̄ when the groups are whole; the reference expands α and z to every
        // element (a differentiable repeat) and quantizes with groups of one: the same ŵ bit for bit, the same gradients up
        // to the order of each group's sum
        manual_seed(9);
        var w0 = randn(6, 64) * 0.1;
        var a0 = (full(6, 64 / groupSize, 0.1 / 255) * (1 + rand(6, 64 / groupSize))).detach();
        var z0 = (full(6, 64 / groupSize, 120.0) + randn(6, 64 / groupSize) * 40).detach();
        var x = randn(3, 64);
        (Tensor Y, Tensor Gw, Tensor Ga, Tensor Gz) Run(bool reference)
        {
            var w = w0.clone().requires_grad_(true);
            var a = a0.clone().requires_grad_(true);
            var z = z0.clone().requires_grad_(true);
            var wh = reference
                ? NestedQuantLinear.Nested(w, a.repeat_interleave(groupSize, 1), z.repeat_interleave(groupSize, 1), 1, 8, r, false, sliceRange: true)
                : NestedQuantLinear.Nested(w, a, z, groupSize, 8, r, false, sliceRange: true);
            nn.functional.linear(x, wh).square().sum().backward();
            return (wh.detach(), w.grad!, a.grad!, z.grad!);
        }
        var want = Run(true);
        var got = Run(false);
        Assert.Equal(want.Y.shape, got.Y.shape);
        Assert.True(want.Y.eq(got.Y).all().item<bool>(), "ŵ differs");
        Assert.True(want.Ga.abs().sum().item<float>() > 0 && want.Gw.abs().sum().item<float>() > 0);
        Assert.True(got.Gw.allclose(want.Gw, rtol: 1e-5, atol: 1e-7), "∂/∂W differs");
        Assert.True(got.Ga.allclose(want.Ga, rtol: 1e-4, atol: 1e-3), "∂/∂α differs");
        Assert.True(got.Gz.allclose(want.Gz, rtol: 1e-4, atol: 1e-6), "∂/∂z differs");
    }

    [Fact]
    public void Lambda_001_over_842_trains_exactly_like_single_precision_2()
    {
        var a = TrainCodes(Config("8,4,2", "0,0,1"));
        var b = TrainCodes(Config("2", "1"));
        var c = TrainCodes(Config("8,4,2", "1,1,1"));
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(a[i].Codes, b[i].Codes);
            Assert.Equal(a[i].Scales, b[i].Scales);
        }
        Assert.Contains(Enumerable.Range(0, a.Count), i => !a[i].Codes.SequenceEqual(c[i].Codes));
    }

    private static List<QuantizedLinearResult> TrainCodes(QuantizationConfig config)
    {
        using var model = PipelineFixtures.LoadTiny();
        return QuantizationRunner.Run(config, new QuantizationContext(model, CPU, Data, seed: 9)).Layers.ToList();
    }

    [Fact]
    public void Minmax_grid_is_the_min_max_of_the_current_weights_at_every_step()
    {
        manual_seed(4);
        var spec = QuantSpec.Grouped(8, 16);
        using var m = new NestedQuantLinear("l", randn(5, 40) * 0.1, spec) { Grid = QatGrid.MinMax };
        using (no_grad()) m.Weight.mul_(1.7).add_(randn(5, 40) * 0.05);        // a "step" moved W (and its range)
        var (a, z) = TensorAffineQuantizer.ComputeParams(m.Weight.detach(), spec);
        var (sa, sz) = m.CurrentGrid();
        Assert.True(sa.eq(a).all().item<bool>() && sz.eq(z).all().item<bool>(), "α, z = min-max of the current W");
        var rtn = TensorAffineQuantizer.Dequantize(TensorAffineQuantizer.Quantize(m.Weight.detach(), a, z, 16, 8), a, z, 16);
        Assert.True(m.SlicedWeight(8).detach().eq(rtn).all().item<bool>(), "ŵ_8 = RTN of the current W");
        m.SlicedWeight(2).sum().backward();
        Assert.Null(m.LogScale.grad);                                             // no learned grid
        Assert.NotNull(m.Weight.grad);
    }

    [Fact]
    public void Minmax_training_moves_only_the_weights_and_exports_their_min_max_grid()
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = Config("8,4,2", "1,1,1", grid: "minmax");
        var alg = (MatQuantAlgorithm)AlgorithmRegistry.Create(config);
        Assert.Equal(QatGrid.MinMax, alg.MatQuant.Grid);
        Assert.Equal("minmax", alg.DescribeSettings()["grid"]!.GetValue<string>());
        var selected = LinearSelection.Select(model, config);
        var init = selected.Select(s => TensorAffineQuantizer.ComputeParams(s.Weight.detach().to(ScalarType.Float32), config.Spec).Scales.log()).ToList();
        var trained = QatTrainer.Train(model, selected, config.Spec, alg.MatQuant.Qat, new NestedObjective(alg.MatQuant), Data(), CPU, 9);
        for (int i = 0; i < trained.Count; i++)
        {
            var m = trained[i].Module;
            Assert.True(m.LogScale.eq(init[i]).all().item<bool>(), "log α is not trained");
            Assert.False(m.Weight.eq(selected[i].Weight.detach()).all().item<bool>(), "W trains");
            var (codes, scales, zeros) = m.Export();
            var (a, z) = TensorAffineQuantizer.ComputeParams(m.Weight.detach(), config.Spec);
            Assert.True(scales.eq(a).all().item<bool>() && zeros.eq(z).all().item<bool>());
            Assert.True(codes.eq(TensorAffineQuantizer.Quantize(m.Weight.detach(), a, z, 32, 8)).all().item<bool>());
            m.Dispose();
        }
    }

    [Fact]
    public void Learned_grid_keeps_the_codes_bit_identical()
    {
        // SHA-256 of the codes and scales this run produces (CPU libtorch): the default and grid=learned must reproduce them
        // bit for bit. Set before the grid option existed (commit 8536379: 3DB5DA02…); renewed once when α and z̄ came to be
        // broadcast per group instead of expanded per element (the gradients' group sums add in another order).
        static string Hash(IEnumerable<QuantizedLinearResult> layers)
        {
            using var h = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
            foreach (var l in layers) { h.AppendData(l.Codes); h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(l.Scales.AsSpan())); }
            return Convert.ToHexString(h.GetHashAndReset());
        }
        var learned = TrainCodes(Config("8,4,2", "1,1,1", grid: "learned"));
        string byDefault = Hash(TrainCodes(Config("8,4,2", "1,1,1")));
        Assert.Equal("EF21220417FF41F335D6D9F505D7EB4E24793B5B66545BC3606A31555F8454EB", byDefault);
        Assert.Equal(byDefault, Hash(learned));
        Assert.NotEqual(Hash(learned), Hash(TrainCodes(Config("8,4,2", "1,1,1", grid: "minmax"))));
        Assert.Contains("grid = minmax applies to the qat base",
            Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(new QuantizationConfig("matquant", 8, 32, options: new Dictionary<string, string>
                { ["base"] = "athena", ["grid"] = "minmax" }))).Message);
        Assert.Contains("grid = 'lsq' is not known", Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(Config("8,4,2", "1,1,1", grid: "lsq"))).Message);
    }

    [Theory]
    [InlineData("8,4,2", "1,1", 8, "lambda has 2")]
    [InlineData("8,4,9", "1,1,1", 8, "out of range")]
    [InlineData("8,4,0", "1,1,1", 8, "out of range")]
    [InlineData("8,4,2", "1,1,1", 4, "master bits 4 < max(bits) = 8")]
    [InlineData("4,2", "1,-1", 8, "lambda")]
    public void Bad_options_throw_one_clear_error(string bits, string lambda, int master, string expected)
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(Config(bits, lambda, master)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Codistill_pairs_must_name_trained_widths()
    {
        var e = Assert.Throws<MatqException>(() => AlgorithmRegistry.Create(Config("8,4", "1,1", codistill: "8->2")));
        Assert.Contains("codistill", e.Message);
        var alg = Assert.IsType<MatQuantAlgorithm>(AlgorithmRegistry.Create(Config("8,4,2", "1,1,1", codistill: "8->2,8->4")));
        Assert.Equal([new CodistillPair(8, 2), new CodistillPair(8, 4)], alg.MatQuant.Codistill);
        Assert.Equal([8, 4, 2], alg.TrainedBits);
    }

    [Theory]
    [InlineData(8, false)]
    [InlineData(4, false)]
    [InlineData(3, false)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void Artifact_served_at_r_equals_the_in_memory_sliced_model(int r, bool extra)
    {
        using var model = PipelineFixtures.LoadTiny();
        var config = Config("8,4,2", "1,1,1", extra: extra ? "true" : "false", codistill: "8->2");
        var alg = (MatQuantAlgorithm)AlgorithmRegistry.Create(config);
        var selected = LinearSelection.Select(model, config);
        var trained = QatTrainer.Train(model, selected, config.Spec, alg.MatQuant.Qat, new NestedObjective(alg.MatQuant), Data(), CPU, 9);
        var layers = trained.Select(t =>
        {
            var (codes, scales, zeros) = t.Module.Export();
            var report = new LayerReport(t.Name, (int)codes.shape[0], (int)codes.shape[1], 8, 0, null, null, 0);
            return QuantizedLinearResult.FromTensors(t.Name, codes, scales, zeros, 32, null, report);
        }).ToArray();
        var result = new QuantizationResult(config, "matquant", alg.DescribeSettings(), alg.TrainedBits.ToArray(), layers, 0);
        var path = System.IO.Path.Combine(HfFixtures.TempDir(), "mq.matq");
        ArtifactExport.Write(result, model, path);

        var ids = tensor(AthenaTestData.ZipfWindows(2, 12, seed: 1).SelectMany(w => w.Select(x => (long)x)).ToArray(), new long[] { 2, 12 });
        foreach (var (name, m) in trained) { m.Bits = r; m.ExtraPrecision = extra; model.ReplaceLinear(name, m); }
        Tensor expected;
        using (no_grad()) expected = model.call(ids);
        using var served = QuantizedModelLoader.LoadServed(path, r, extraPrecision: extra);
        Tensor actual;
        using (no_grad()) actual = served.Model.call(ids);
        Assert.True(expected.allclose(actual, rtol: 0, atol: 1e-5), $"max diff {(expected - actual).abs().max().item<float>()}");
        foreach (var (name, m) in trained)
        {
            var w = served.Model.get_parameter(name + ".weight")!;
            Assert.True(m.SlicedWeight(r).detach().eq(w).all().item<bool>(), name);
        }
        if (extra && r < 8) Assert.True(served.MeanEffectiveBits >= r);
        foreach (var (_, m) in trained) m.Dispose();
    }
}
