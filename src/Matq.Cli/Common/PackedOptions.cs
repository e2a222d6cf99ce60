// Options of the packed CPU runtime shared by `generate` and `bench generate`: --threads and --head.

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

    public static Option<string> Head(string description = "Packed runtime: quantize an fp32 lm_head at load to B bits (RTN, groups of 128; a tied embedding shares it), or fp32 to keep it as stored") => new("--head", "--head-bits")
    {
        Description = description,
        DefaultValueFactory = _ => DefaultHead,
        HelpName = "B|fp32",
    };

    public static Option<string> Activations(string defaultValue) => new("--activations")
    {
        Description = "Packed runtime decode activations: int8 (quantized per row, integer dot products; faster) or fp32 (matches the torch engine within 1e-3)",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "int8|fp32",
    };

    /// <summary>"int8" / "fp32", comma-separated.</summary>
    public static Matq.Runtime.Packed.PackedActivations[] ParseActivations(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new MatqException("--activations is empty: give int8, fp32 or int8,fp32");
        return parts.Select(p => p.ToLowerInvariant() switch
        {
            "int8" or "i8" => Matq.Runtime.Packed.PackedActivations.Int8,
            "fp32" or "f32" or "float" => Matq.Runtime.Packed.PackedActivations.Fp32,
            _ => throw new MatqException($"--activations '{p}' is not supported: use int8 or fp32"),
        }).Distinct().ToArray();
    }

    public static string Name(Matq.Runtime.Packed.PackedActivations a) => a == Matq.Runtime.Packed.PackedActivations.Int8 ? "int8" : "fp32";

    /// <summary>--threads, --head and one --activations value of a serving verb, checked (one line per mistake).</summary>
    public static (int Threads, int? HeadBits, Matq.Runtime.Packed.PackedActivations Activations) Resolve(int threads, string head, string activations, string verb)
    {
        int t = CheckThreads(threads);
        int? h = ParseHead(head);
        var acts = ParseActivations(activations);
        if (acts.Length != 1) throw new MatqException($"--activations takes one value for {verb}: int8 or fp32");
        return (t, h, acts[0]);
    }

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
