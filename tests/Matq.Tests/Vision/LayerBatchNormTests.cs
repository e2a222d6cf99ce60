// Tests Layer-Batch Normalization and folding: a sample's training output does not depend on its batch companions
// (LBN nets, float and MaQD; BN nets as the contrast), LBN's training formula against a scalar reference, the running
// estimates, folded == unfolded eval outputs (BN, LBN, MLP with LBN, MaQD), the fold error on a norm-free net, old
// config.json files without "norm" loading as BN, the norm buffers following Module.to, and the trainer's LBN freeze
// (the last part of training uses the inference map, so train-mode and eval-mode outputs agree afterwards).
using Matq.Algorithms.MaQD;
using Matq.Models.Vision;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Vision;

public class LayerBatchNormTests
{
    private static readonly VisionNetConfig Tiny = new("resnet", [4, 8], 1);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LbnTrainingOutputOfASampleIgnoresItsBatchCompanions(bool maqd)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var net = VisionNet.Create(Tiny.WithNorm("lbn"));
        if (maqd) new MaqdAlgorithm(new MaqdConfig(3, 15)).Prepare(net);
        RandomizeNorms(net);
        net.train();
        Tensor sample = rand(1, 1, 28, 28);
        Tensor withA = net.forward(cat([sample, rand(3, 1, 28, 28)], 0))[0];
        Tensor withB = net.forward(cat([rand(6, 1, 28, 28).mul(3), sample], 0))[6];
        Tensor alone = net.forward(sample)[0];
        Assert.True(withA.allclose(withB, 1e-5, 1e-5), $"{withA} vs {withB}");
        Assert.True(withA.allclose(alone, 1e-5, 1e-5));
    }

    [Fact]
    public void BnTrainingOutputDependsOnTheBatch()
    {
        // The contrast that makes the LBN test meaningful: the same probe fails for BatchNorm.
        using var scope = NewDisposeScope();
        manual_seed(11);
        var net = VisionNet.Create(Tiny);
        net.train();
        Tensor sample = rand(1, 1, 28, 28);
        Tensor withA = net.forward(cat([sample, rand(3, 1, 28, 28)], 0))[0];
        Tensor withB = net.forward(cat([sample, rand(6, 1, 28, 28).mul(3)], 0))[0];
        Assert.False(withA.allclose(withB, 1e-3, 1e-3));
    }

    [Fact]
    public void LbnTrainingMatchesTheScalarFormulaAndTracksRunningEstimates()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var lbn = new LayerBatchNorm(3);
        using (no_grad()) { lbn.Gamma.copy_(tensor(new[] { 0.5f, 2f, -1f })); lbn.Beta.copy_(tensor(new[] { 0.1f, -0.2f, 0.3f })); }
        lbn.train();
        Tensor x = randn(2, 3, 4, 5).mul(2).add(1);
        float[] y = lbn.forward(x).data<float>().ToArray(), xv = x.data<float>().ToArray();
        float[] g = { 0.5f, 2f, -1f }, b = { 0.1f, -0.2f, 0.3f };
        int per = 3 * 20;
        double meanOfMeans = 0, meanOfVars = 0;
        for (int n = 0; n < 2; n++)
        {
            double mu = 0, v = 0;
            for (int i = 0; i < per; i++) mu += xv[n * per + i];
            mu /= per;
            for (int i = 0; i < per; i++) v += (xv[n * per + i] - mu) * (xv[n * per + i] - mu);
            v /= per;
            meanOfMeans += mu / 2; meanOfVars += v / 2;
            for (int i = 0; i < per; i++)
            {
                int c = i / 20;
                double expected = g[c] * (xv[n * per + i] - mu) / Math.Sqrt(v + ChannelNorm.Eps) + b[c];
                Assert.Equal(expected, y[n * per + i], 4);
            }
        }
        // one step of momentum 0.1 from (0, 1)
        Assert.Equal(0.1 * meanOfMeans, lbn.RunningMean.item<float>(), 4);
        Assert.Equal(0.9 + 0.1 * meanOfVars, lbn.RunningVar.item<float>(), 4);
        // eval: the affine map with the running estimates
        lbn.eval();
        var (scale, shift) = lbn.InferenceAffine();
        Tensor expectedEval = x.mul(scale.reshape(1, 3, 1, 1)).add(shift.reshape(1, 3, 1, 1));
        Assert.True(lbn.forward(x).allclose(expectedEval, 1e-5, 1e-5));
    }

    [Fact]
    public void CumulativeMomentumAveragesEveryBatchEqually()
    {
        using var scope = NewDisposeScope();
        var lbn = new LayerBatchNorm(2) { Momentum = null };
        lbn.ResetRunningStats();
        lbn.train();
        lbn.forward(full(1, 2, 3, 3, 2f));               // μ = 2, σ² = 0
        lbn.forward(tensor(new float[] { 0, 4 }).reshape(1, 2, 1, 1).expand(1, 2, 3, 3).contiguous());   // μ = 2, σ² = 4
        lbn.forward(full(1, 2, 3, 3, 8f));               // μ = 8, σ² = 0
        Assert.Equal(4f, lbn.RunningMean.item<float>(), 5);
        Assert.Equal(4f / 3, lbn.RunningVar.item<float>(), 5);
    }

    [Theory]
    [InlineData("bn", false)]
    [InlineData("lbn", false)]
    [InlineData("lbn", true)]
    [InlineData("bn", true)]
    public void FoldedResNetGivesTheUnfoldedEvalOutputs(string norm, bool maqd)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var net = VisionNet.Create(Tiny.WithNorm(norm));
        if (maqd) new MaqdAlgorithm(new MaqdConfig(15, 255)).Prepare(net);
        RandomizeNorms(net);
        net.train();
        using (no_grad()) for (int i = 0; i < 3; i++) net.forward(rand(8, 1, 28, 28));   // non-trivial running estimates
        net.eval();
        Tensor x = rand(16, 1, 28, 28);
        Tensor before;
        using (no_grad()) before = net.forward(x);
        net.FoldNorms();
        Assert.All(net.Norms(), n => Assert.True(n.Folded));
        Assert.All(net.NormPairs(), p => Assert.NotNull(p.Layer.ChannelScale));
        Tensor after;
        using (no_grad()) after = net.forward(x);
        if (!maqd)
            Assert.True(after.allclose(before, 1e-4, 1e-4), $"max diff {after.sub(before).abs().max().item<float>()}");
        else
        {
            // The activations are round-clipped, so a float-rounding difference at a rounding boundary may move one
            // level; the outputs agree to within one step's effect and the predictions are the same.
            Assert.True(after.sub(before).abs().max().item<float>() < 0.05 * before.abs().max().item<float>());
            Assert.True(after.argmax(1).eq(before.argmax(1)).all().item<bool>());
        }
    }

    [Fact]
    public void FoldedMlpWithLbnGivesTheUnfoldedEvalOutputs()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var net = VisionNet.Create(new VisionNetConfig("mlp", [32, 16], norm: "lbn"));
        RandomizeNorms(net);
        net.train();
        using (no_grad()) net.forward(rand(8, 1, 28, 28));
        net.eval();
        Tensor x = rand(5, 1, 28, 28), before;
        using (no_grad()) before = net.forward(x);
        net.FoldNorms();
        using (no_grad()) Assert.True(net.forward(x).allclose(before, 1e-4, 1e-4));
    }

    [Fact]
    public void FoldingANormFreeNetIsOneClearError()
    {
        using var scope = NewDisposeScope();
        var net = VisionNet.Create(VisionNetConfig.MlpSmall);
        var e = Assert.Throws<MatqException>(net.FoldNorms);
        Assert.Contains("no normalization layers to fold", e.Message);
        Assert.Throws<MatqException>(() => Matq.Training.Vision.MaqdTraining.CheckFoldable(VisionNetConfig.MlpSmall, "none"));
    }

    [Fact]
    public void FoldingTwiceIsAnError()
    {
        using var scope = NewDisposeScope();
        var net = VisionNet.Create(Tiny.WithNorm("lbn"));
        net.eval();
        net.FoldNorms();
        Assert.Throws<MatqException>(net.FoldNorms);
    }

    [Fact]
    public void OldConfigWithoutNormLoadsAsBatchNormAndInvalidNormsAreRejected()
    {
        var old = VisionNetConfig.FromJson("""{ "arch": "resnet", "widths": [16, 32, 64], "blocks": 2, "classes": 10, "side": 28 }""");
        Assert.Equal("bn", old.Norm);
        Assert.Equal("none", VisionNetConfig.FromJson("""{ "arch": "mlp", "widths": [8] }""").Norm);
        Assert.Equal("lbn", VisionNetConfig.FromJson(Tiny.WithNorm("lbn").ToJson()).Norm);
        Assert.Throws<MatqException>(() => Tiny.WithNorm("none"));
        Assert.Throws<MatqException>(() => Tiny.WithNorm("layer"));
        // state names of BN nets are those of torch's BatchNorm2d (so folders written before this change load)
        using var net = VisionNet.Create(old);
        var names = VisionNetIO.FloatState(net).Select(s => s.Name).ToList();
        Assert.Contains("stem_bn.running_var", names);
        Assert.Contains("blocks.0.bn1.weight", names);
        using var lbn = VisionNet.Create(old.WithNorm("lbn"));
        Assert.Equal(new long[] { 1 }, VisionNetIO.FloatState(lbn).First(s => s.Name == "stem_bn.running_mean").Value.shape);
    }

    [Fact]
    public void NormBuffersFollowModuleTo()
    {
        using var scope = NewDisposeScope();
        var lbn = new LayerBatchNorm(3);
        var bn = new BatchNorm(3);
        lbn.to(ScalarType.Float64);
        bn.to(ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, lbn.RunningVar.dtype);
        Assert.Equal(ScalarType.Float64, lbn.Gamma.dtype);
        lbn.train(); bn.train();
        Assert.Equal(ScalarType.Float64, lbn.forward(ones(2, 3, 2, 2, dtype: ScalarType.Float64)).dtype);
        Assert.Equal(ScalarType.Float64, bn.forward(ones(2, 3, 2, 2, dtype: ScalarType.Float64)).dtype);
        var (s, _) = bn.InferenceAffine();
        Assert.Equal(ScalarType.Float64, s.dtype);
    }

    [Fact]
    public void FrozenLbnTrainsWithTheInferenceMapAndKeepsItsEstimates()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var lbn = new LayerBatchNorm(3);
        lbn.train();
        lbn.forward(randn(4, 3, 5, 5).mul(2).add(1));
        float mean = lbn.RunningMean.item<float>(), variance = lbn.RunningVar.item<float>();
        lbn.Frozen = true;
        Tensor x = randn(2, 3, 5, 5);
        Tensor train = lbn.forward(x);
        Assert.Equal(mean, lbn.RunningMean.item<float>());
        Assert.Equal(variance, lbn.RunningVar.item<float>());
        lbn.eval();
        Assert.True(train.allclose(lbn.forward(x), 1e-6, 1e-6));
    }

    [Fact]
    public void UntrackedLbnTrainsTheSameAndLeavesItsEstimates()
    {
        using var scope = NewDisposeScope();
        manual_seed(14);
        var lbn = new LayerBatchNorm(3);
        lbn.train();
        Tensor x = randn(4, 3, 5, 5).mul(2).add(1);
        Tensor tracked = lbn.forward(x);
        float mean = lbn.RunningMean.item<float>();
        Assert.NotEqual(0f, mean);
        lbn.TrackRunningStats = false;
        Tensor untracked = lbn.forward(x.mul(3));
        Assert.Equal(mean, lbn.RunningMean.item<float>());
        Assert.True(untracked.allclose(tracked, 1e-5, 1e-5));   // per-sample statistics: a scaled input normalizes alike
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.0)]
    public void TrainerFreezesLbnForTheLastStepsOrRecalibratesAtTheEnd(double freeze)
    {
        using var scope = NewDisposeScope();
        manual_seed(13);
        var rng = new Random(2);
        var images = Enumerable.Range(0, 64 * 784).Select(_ => (float)rng.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, 64).Select(i => (byte)(i % 10)).ToArray();
        var set = new Matq.Data.ImageSet(64, 28, 28, images, labels);
        var net = VisionNet.Create(Tiny.WithNorm("lbn"));
        var o = new Matq.Training.Vision.CnnTrainOptions { Epochs = 2, Batch = 16, Lr = 0.05, WarmupSteps = 1, FreezeLbnFraction = freeze, LimitTest = 16 };
        Matq.Training.Vision.CnnTrainer.Train(net, set, set, o, CPU);
        Assert.All(net.Norms(), n => Assert.Equal(freeze > 0, ((LayerBatchNorm)n).Frozen));
        Assert.All(net.Norms(), n => Assert.True(((LayerBatchNorm)n).TrackRunningStats));   // off only while the trainer runs
        if (freeze == 0)
        {
            // the estimates are the plain averages of the per-sample statistics over the (64) training images
            var lbn = (LayerBatchNorm)net.Norms()[0];
            var stem = net.QuantLayers()[0].Layer;
            (Tensor all, _) = Matq.Training.Vision.CnnTrainer.Batch(set, Enumerable.Range(0, 64).ToArray(), null, CPU);
            using (no_grad())
            {
                Tensor h = stem.forward(all).reshape(64, -1);
                (Tensor v, Tensor m) = h.var_mean(1, false, false);
                Assert.Equal(m.mean().item<float>(), lbn.RunningMean.item<float>(), 4);
                Assert.Equal(v.mean().item<float>(), lbn.RunningVar.item<float>(), 4);
            }
        }
        (Tensor x, _) = Matq.Training.Vision.CnnTrainer.Batch(set, Enumerable.Range(0, 8).ToArray(), null, CPU);
        Tensor train, eval;
        using (no_grad())
        {
            net.eval(); eval = net.forward(x);
            net.train(); train = net.forward(x);   // (a non-frozen LBN updates its estimates here; eval ran first)
        }
        // frozen: training computes the inference map; not frozen: per-sample statistics differ from the estimates
        Assert.Equal(freeze > 0, train.allclose(eval, 1e-5, 1e-5));
    }

    /// <summary>γ, β away from (1, 0) so folding has something to move.</summary>
    private static void RandomizeNorms(VisionNet net)
    {
        using var noGrad = no_grad();
        foreach (var n in net.Norms())
        {
            n.Gamma.copy_(rand(n.Channels).add(0.5));
            n.Beta.copy_(randn(n.Channels).mul(0.3));
        }
    }
}
