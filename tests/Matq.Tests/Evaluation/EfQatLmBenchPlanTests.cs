// Tests the run plan of `bench efqat-lm` (Evaluation/EfQatLmBenchPlan): PTQ first, then EfQAT 0 %, every mode × fraction
// and full QAT, every EfQAT run with the same step budget and the bench's bit-width and group.
using Matq.Evaluation;

namespace Matq.Tests.Evaluation;

public class EfQatLmBenchPlanTests
{
    [Fact]
    public void Runs_are_ptq_norms_only_each_mode_and_fraction_then_full_qat_with_one_budget()
    {
        var runs = EfQatLmBenchPlan.Runs(3, 64, ["cwpl", "lwpn"], [0.05, 0.25], steps: 40, batch: 4, refresh: 10);
        Assert.Equal(["PTQ (min-max RTN, the EfQAT start)", "EfQAT 0 % (norms only)", "EfQAT CWPL 5 %", "EfQAT CWPL 25 %", "EfQAT LWPN 5 %", "EfQAT LWPN 25 %",
            "full QAT (EfQAT 100 %)"], runs.Select(r => r.Label));
        Assert.True(runs[0].IsPtq);
        Assert.Equal("minmax", runs[0].Config.Options["clip"]);
        Assert.All(runs, r => Assert.Equal((3, 64), (r.Config.Bits, r.Config.GroupSize)));
        Assert.All(runs.Skip(1), r =>
        {
            Assert.False(r.IsPtq);
            Assert.Equal(("40", "4", "10"), (r.Config.Options["steps"], r.Config.Options["batch"], r.Config.Options["refresh"]));
        });
        Assert.Equal(("lwpn", "0.25"), (runs[5].Config.Options["mode"], runs[5].Config.Options["fraction"]));
        Assert.Equal("1", runs[6].Config.Options["fraction"]);
    }
}
