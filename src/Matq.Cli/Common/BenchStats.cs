// Contract: summary statistics the bench verbs report over repeated timings, and the machine load they note beside them.
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

    /// <summary>The 1-minute load average (Linux /proc/loadavg), or "n/a" where it cannot be read.</summary>
    public static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }

    /// <summary>Checks a generation bench's run: --prompt-tokens, --decode-tokens and --repeats, each at least 1.</summary>
    public static void CheckRun(int promptTokens, int decodeTokens, int repeats)
    {
        if (promptTokens < 1) throw new MatqException($"--prompt-tokens {promptTokens} must be at least 1");
        if (decodeTokens < 1) throw new MatqException($"--decode-tokens {decodeTokens} must be at least 1");
        if (repeats < 1) throw new MatqException($"--repeats {repeats} must be at least 1");
    }

    /// <summary>--max-tokens as the LM quantization benches read it: 0 = every token, else the first N.</summary>
    public static void CheckMaxTokens(int maxTokens)
    {
        if (maxTokens < 0) throw new MatqException($"--max-tokens {maxTokens} is out of range: 0 (all) or a positive count");
    }
}
