// Warm-up + cosine schedule: exact values at the key steps and the shape between them.
using Matq.Training;

namespace Matq.Tests.Training;

public class LrScheduleTests
{
    // 10 warm-up steps, then 100 decay intervals: step 10 is the peak, step 60 the midpoint, step 110 the end.
    private static readonly LrSchedule S = new(peak: 1e-3, warmupSteps: 10, totalSteps: 111, min: 1e-4);

    [Fact]
    public void WarmupIsLinearAndReachesThePeak()
    {
        Assert.Equal(1e-4, S.At(0), 15);    // the first update already uses peak/10
        Assert.Equal(5e-4, S.At(4), 15);
        Assert.Equal(1e-3, S.At(9), 15);
        Assert.Equal(1e-3, S.At(10), 15);   // the cosine starts at the peak
    }

    [Fact]
    public void CosineHitsMidpointQuarterAndMinimum()
    {
        Assert.Equal(5.5e-4, S.At(60), 15);                                       // (peak + min) / 2
        Assert.Equal(1e-4 + 0.5 * 9e-4 * (1 + Math.Cos(Math.PI / 4)), S.At(35), 15);
        Assert.Equal(1e-4, S.At(110), 15);                                        // the last step reaches min
        Assert.Equal(1e-4, S.At(500), 15);                                        // and stays there
    }

    [Fact]
    public void DecayIsMonotone()
    {
        for (int i = 10; i < 110; i++) Assert.True(S.At(i + 1) < S.At(i), $"step {i}");
    }

    [Fact]
    public void WithTotalKeepsPeakAndEndsAtMin()
    {
        var short_ = S.WithTotal(31);
        Assert.Equal(1e-3, short_.At(10), 15);
        Assert.Equal(5.5e-4, short_.At(20), 15);
        Assert.Equal(1e-4, short_.At(30), 15);
    }

    [Theory]
    [InlineData(0, 0, 10, 0)]      // peak must be positive
    [InlineData(1e-3, 11, 10, 0)]  // warm-up longer than the run
    [InlineData(1e-3, 0, 0, 0)]    // no steps
    [InlineData(1e-3, 0, 10, 2e-3)] // min above peak
    public void InvalidArgumentsThrow(double peak, int warmup, int total, double min) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(peak, warmup, total, min));
}
