// Contract: summary statistics the bench verbs report over repeated timings.
namespace Matq.Cli.Common;

public static class BenchStats
{
    /// <summary>The median (mean of the middle two for an even count); one slow repetition cannot move it.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        if (v.Length == 0) throw new ArgumentException("median of no values");
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
