// What to serve a .matq at (`--bits`, `--plan FILE`, `--extra-precision`); float models refuse all of them
// (ModelSource), so a request that does not apply fails loudly instead of being ignored.
namespace Matq.Runtime.Plans;

/// <summary>Bits r (null = the plan's default or the master bits), an optional plan file, extra precision.</summary>
public sealed record ServingRequest(int? Bits = null, string? PlanPath = null, bool ExtraPrecision = false, string? Tokenizer = null)
{
    public static ServingRequest None { get; } = new();

    /// <summary>The effective bits and the plan (the plan file read and checked against --bits; its model hash is checked
    /// by the loader against the artifact it serves).</summary>
    public (int? Bits, BitPlan? Plan) Resolve()
    {
        if (Bits is < 1 or > 8) throw new MatqException($"--bits {Bits} is out of range: serve at 1..8 bits (at most the artifact's master bits)");
        if (PlanPath is null) return (Bits, null);
        var plan = BitPlan.Load(PlanPath);
        return (plan.ResolveBits(Bits, PlanPath), plan);
    }

    /// <summary>"served at 3 bits", "+ plan p.json", ... for table captions; "" when nothing was asked.</summary>
    public string Describe() =>
        string.Join(", ", new[]
        {
            Bits is int b ? $"--bits {b}" : null,
            PlanPath is null ? null : $"--plan {Path.GetFileName(PlanPath)}",
            ExtraPrecision ? "--extra-precision" : null,
        }.Where(s => s is not null));
}
