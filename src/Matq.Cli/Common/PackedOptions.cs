// Options of the packed CPU runtime shared by `generate` and `bench generate`: --threads and --head.
using System.CommandLine;

namespace Matq.Cli.Common;

public static class PackedOptions
{
    public const string DefaultHead = "8";

    public static Option<int> Threads() => new("--threads")
    {
        Description = "Worker threads of the packed CPU runtime; -1 = all cores",
        DefaultValueFactory = _ => -1,
        HelpName = "N",
    };

    public static Option<string> Head() => new("--head")
    {
        Description = "Packed runtime: quantize an fp32 lm_head at load to B bits (RTN, groups of 128; a tied embedding shares it), or fp32 to keep it as stored",
        DefaultValueFactory = _ => DefaultHead,
        HelpName = "B|fp32",
    };

    public static int CheckThreads(int threads) =>
        threads == -1 || threads >= 1 ? threads : throw new MatqException($"--threads {threads} is out of range: 1 or more, or -1 for all cores");

    /// <summary>"fp32" → null (as stored); "1".."8" → bits.</summary>
    public static int? ParseHead(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t is "fp32" or "f32" or "float") return null;
        if (int.TryParse(t, out int b) && b is >= 1 and <= 8) return b;
        throw new MatqException($"--head {text} is not supported: give bits 1..8 or fp32");
    }
}
