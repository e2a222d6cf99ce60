// The MSE clip search never loses to min-max on any group (property over seeded random matrices, all schemes and
// layouts) and wins clearly when outliers stretch the range; min-max RTN codes equal the scalar reference kernel.
using Matq.Algorithms.Rtn;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Rtn;

public sealed class MseClipSearchTests
{
    private static readonly IReadOnlyList<double> Grid = new RtnConfig(RtnClip.Mse).Grid;

    [Fact]
    public void Per_group_error_is_never_above_min_max()
    {
        var rng = new Random(20240611);
        for (int trial = 0; trial < 60; trial++)
        {
            int rows = rng.Next(1, 9), cols = rng.Next(1, 70), bits = rng.Next(1, 9);
            var scheme = bits >= 2 && rng.Next(2) == 0 ? QuantScheme.Symmetric : QuantScheme.Asymmetric;
            var spec = rng.Next(3) == 0 ? QuantSpec.PerChannel(bits, scheme) : QuantSpec.Grouped(bits, rng.Next(1, 40), scheme);
            using var scope = NewDisposeScope();
            var w = randn(rows, cols, generator: new TorchSharp.torch.Generator((ulong)trial)) * Math.Pow(10, rng.NextDouble() * 3 - 2);
            if (rng.Next(2) == 0) w = w.abs();   // one-sided groups: zero sits at the range's edge
            var (a0, z0) = TensorAffineQuantizer.ComputeParams(w, spec);
            var (a1, z1) = MseClipSearch.Params(w, spec, Grid);
            var e0 = Floats(MseClipSearch.GroupErrors(w, a0, z0, spec));
            var e1 = Floats(MseClipSearch.GroupErrors(w, a1, z1, spec));
            for (int i = 0; i < e0.Length; i++)
                Assert.True(e1[i] <= e0[i], $"trial {trial} ({spec}), group {i}: mse-clip error {e1[i]} > min-max {e0[i]}");
            // the chosen parameters stay valid codes: zero points integral and in range, scales positive
            Assert.True(z1.eq(z1.round()).all().item<bool>());
            Assert.True(z1.ge(0).logical_and(z1.le(spec.QMax)).all().item<bool>());
            Assert.True(a1.gt(0).all().item<bool>());
        }
    }

    [Theory]
    [InlineData(QuantScheme.Asymmetric, 4)]
    [InlineData(QuantScheme.Symmetric, 4)]
    [InlineData(QuantScheme.Asymmetric, 3)]
    public void Outliers_make_the_search_strictly_better(QuantScheme scheme, int bits)
    {
        using var scope = NewDisposeScope();
        // heavy-tailed (Laplace) weights: the few largest stretch min-max ranges; clipping them trades a little error
        // on those for a finer grid on all the others
        var gen = new TorchSharp.torch.Generator(5);
        var u = rand(16, 128, generator: gen) - 0.5;
        var w = u.sign() * (1 - 2 * u.abs()).clamp_min(1e-7).log().neg() * 0.02;
        w[.., 3] = 0.2;   // plus an outlier in every row's first group
        var spec = QuantSpec.Grouped(bits, 64, scheme);
        var (a0, z0) = TensorAffineQuantizer.ComputeParams(w, spec);
        var (a1, z1) = MseClipSearch.Params(w, spec, Grid);
        double e0 = MseClipSearch.GroupErrors(w, a0, z0, spec).sum().item<float>();
        double e1 = MseClipSearch.GroupErrors(w, a1, z1, spec).sum().item<float>();
        Assert.True(e1 < 0.97 * e0, $"mse-clip {e1:G4} vs min-max {e0:G4}");   // seen: 0.84..0.94
        Assert.True(a1.lt(a0).any().item<bool>());
    }

    [Fact]
    public void Min_max_rtn_codes_equal_the_scalar_reference_and_mse_rtn_has_lower_weight_error()
    {
        using var model = PipelineFixtures.LoadTiny();
        var weight = PipelineFixtures.WeightOf(model, "model.layers.1.mlp.down_proj");   // [64, 176]: short last group of 16
        var minmax = (RtnAlgorithm)AlgorithmRegistry.Create(PipelineFixtures.Rtn(3, group: 32));
        var mse = (RtnAlgorithm)AlgorithmRegistry.Create(PipelineFixtures.Rtn(3, group: 32, clip: "mse"));
        var a = minmax.Quantize("model.layers.1.mlp.down_proj", weight);
        var b = mse.Quantize("model.layers.1.mlp.down_proj", weight);
        var (p, codes) = AffineQuantizer.QuantizeMatrix(PipelineFixtures.Floats(weight), 64, 176, QuantSpec.Grouped(3, 32));
        Assert.Equal(codes, a.Codes);
        Assert.Equal(p.Scales, a.Scales);
        Assert.Equal(p.Zeros.Select(z => (float)z), a.Zeros);
        Assert.True(b.Report.WeightMse < a.Report.WeightMse, $"mse {b.Report.WeightMse:G4} vs min-max {a.Report.WeightMse:G4}");
        Assert.Equal(32, a.GroupSize);
        Assert.Equal(6, a.GroupCount);
    }

    [Fact]
    public void Per_tensor_specs_are_refused()
    {
        using var w = ones(2, 2);
        Assert.Throws<ArgumentException>(() => MseClipSearch.Params(w, QuantSpec.PerTensor(4), Grid));
    }

    private static float[] Floats(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();
}
