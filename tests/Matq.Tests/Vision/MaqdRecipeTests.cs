// Tests the MaQD recipe (Training/Vision/MaqdRecipe): the learning rate and gradient clip scale with the batch so the
// largest step is the same at every batch size, the warm-up is 10 % of the steps within 1..100, and --sweep-settings parses.
using Matq.Training.Vision;

namespace Matq.Tests.Vision;

public class MaqdRecipeTests
{
    [Fact]
    public void MaqdLrAndClipScaleWithTheBatch()
    {
        Assert.Equal(0.1, MaqdRecipe.DefaultLr(128), 12);
        Assert.Equal(0.1, MaqdRecipe.DefaultLr(512), 12);
        Assert.Equal(0.025, MaqdRecipe.DefaultLr(8), 12);
        Assert.Equal(2.0, MaqdRecipe.ClipFor(null, 128)!.Value, 12);
        Assert.Equal(8.0, MaqdRecipe.ClipFor(null, 8)!.Value, 12);
        Assert.Equal(3.0, MaqdRecipe.ClipFor(3, 8)!.Value, 12);
        Assert.Null(MaqdRecipe.ClipFor(0, 8));
        // the largest step lr·clip is the same at B = 8 and B = 128
        Assert.Equal(MaqdRecipe.DefaultLr(128) * MaqdRecipe.ClipFor(null, 128)!.Value,
            MaqdRecipe.DefaultLr(8) * MaqdRecipe.ClipFor(null, 8)!.Value, 12);
    }

    [Fact]
    public void WarmupIsATenthOfTheStepsWithinOneToHundred()
    {
        Assert.Equal(46, MaqdRecipe.WarmupSteps(null, 128, 1));      // 60,000 / 128 = 468 steps
        Assert.Equal(100, MaqdRecipe.WarmupSteps(null, 128, 15));
        Assert.Equal(1, MaqdRecipe.WarmupSteps(16, 16, 1));
        var o = MaqdRecipe.TrainOptions(8, 20_000, 1, lr: null, clip: null, freezeLbn: 0.2, seed: 7, limitTest: null);
        Assert.Equal((0.025, 8.0, 100, "sgd", 5e-4), (o.Lr, o.ClipGradNorm!.Value, o.WarmupSteps, o.Optimizer, o.WeightDecay));
    }

    [Fact]
    public void SweepSettingsParseAndDefaultToBatches8And128()
    {
        Assert.Equal([new MaqdSweepSetting(8, 500, 2), new MaqdSweepSetting(128, 500, 2)], MaqdRecipe.ParseSettings(null, 500, 2));
        Assert.Equal([new MaqdSweepSetting(8, 20000, 1), new MaqdSweepSetting(128, null, 4)], MaqdRecipe.ParseSettings("8:20000:1,128", null, 4));
        Assert.Contains("'8:x' is not B[:IMAGES[:EPOCHS]]", Assert.Throws<MatqException>(() => MaqdRecipe.ParseSettings("8:x", null, 1)).Message);
        Assert.Contains("is empty", Assert.Throws<MatqException>(() => MaqdRecipe.ParseSettings(",", null, 1)).Message);
    }
}
