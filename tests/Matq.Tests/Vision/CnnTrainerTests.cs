// Tests the CNN trainer's gradient-norm clipping (one SGD step moves the parameters by exactly lr·1.9·clip when the
// gradient is larger: nesterov's first update is g + 0.9·g; unclipped it moves much further), the option's validation,
// and ImageSet.Slice (the held-out split of `quantize --method maqd --holdout`).
using Matq.Data;
using Matq.Models.Vision;
using Matq.Training.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Tests.Vision;

public class CnnTrainerTests
{
    private static ImageSet Images(int n, int seed)
    {
        var rng = new Random(seed);
        var img = new float[n * 784];
        var lab = new byte[n];
        for (int i = 0; i < n; i++)
        {
            lab[i] = (byte)(i % 10);
            for (int p = 0; p < 784; p++) img[i * 784 + p] = (float)rng.NextDouble();
        }
        return new ImageSet(n, 28, 28, img, lab);
    }

    private static double StepDistance(double? clip)
    {
        using var scope = NewDisposeScope();
        manual_seed(21);
        var net = VisionNet.Create(new VisionNetConfig("resnet", [4, 8], 1, norm: "lbn"));
        var before = net.parameters().Select(p => p.detach().clone()).ToList();
        var set = Images(16, 4);
        var o = new CnnTrainOptions { Epochs = 1, Batch = 16, Lr = 0.1, WeightDecay = 0, WarmupSteps = 0, Augment = false, FreezeLbnFraction = 0, ClipGradNorm = clip, LimitTest = 4 };
        CnnTrainer.Train(net, set, set, o, CPU);
        return Math.Sqrt(net.parameters().Zip(before).Sum(t => t.First.detach().sub(t.Second).square().sum().item<float>()));
    }

    [Fact]
    public void ClippingBoundsTheStepAtTheGivenGradientNorm()
    {
        const double clip = 1e-3;
        double clipped = StepDistance(clip), free = StepDistance(null);
        Assert.Equal(0.1 * 1.9 * clip, clipped, 1e-6);
        Assert.True(free > 20 * clipped, $"unclipped step {free}");
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.PositiveInfinity)]
    public void InvalidClipIsRejected(double clip) =>
        Assert.Contains("gradient clip", Assert.Throws<MatqException>(() => new CnnTrainOptions { ClipGradNorm = clip }.Validate()).Message);

    [Fact]
    public void SliceCopiesTheImagesAndLabelsOfTheRange()
    {
        var set = Images(12, 5);
        var part = set.Slice(9, 3);
        Assert.Equal(3, part.Count);
        Assert.Equal(set.Labels[9..12], part.Labels);
        Assert.Equal(set.Images.AsSpan(9 * 784, 3 * 784).ToArray(), part.Images);
        Assert.Throws<ArgumentOutOfRangeException>(() => set.Slice(10, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => set.Slice(0, 0));
    }
}
