// Contract: QuantSpec is the validated description of one affine quantizer (bits, scheme, granularity,
// group size); invalid values throw MatqException naming the option and the allowed range.
namespace Matq.Kernels.Quantization;

/// <summary>How the grid is placed around the weights of one group.</summary>
public enum QuantScheme
{
    /// <summary>Min-max grid that always contains 0: α = (max − min)/(2^c − 1), z = round(−min/α).</summary>
    Asymmetric,

    /// <summary>Grid symmetric around 0 with the fixed zero point z = 2^(c−1): α = max|w|/(2^(c−1) − 1).
    /// Codes stay unsigned (0..2^c − 1); code 0 is never produced (restricted range), so the grid is
    /// z ± (2^(c−1) − 1). Because z is a multiple of 2^(c−r), every nested slice still represents 0 exactly.</summary>
    Symmetric,
}

/// <summary>Which weights share one (scale, zero) pair. Weights are row-major [out, in].</summary>
public enum Granularity
{
    /// <summary>One pair for the whole matrix (stored replicated per row, as [out, 1]).</summary>
    PerTensor,

    /// <summary>One pair per output channel (row): [out, 1].</summary>
    PerChannel,

    /// <summary>One pair per run of GroupSize consecutive input columns of a row: [out, ceil(in/g)];
    /// when g does not divide in, the last group of each row is short (in mod g columns).</summary>
    Group,
}

/// <summary>An immutable, validated affine quantizer description.</summary>
public sealed record QuantSpec
{
    public const int MinBits = 1;
    public const int MaxBits = 8;

    /// <summary>Master bit width c, 1..8 (2..8 for <see cref="QuantScheme.Symmetric"/>).</summary>
    public int Bits { get; }
    public QuantScheme Scheme { get; }
    public Granularity Granularity { get; }

    /// <summary>Input columns per group for <see cref="Granularity.Group"/>; 0 for the other granularities.</summary>
    public int GroupSize { get; }

    public QuantSpec(int bits, Granularity granularity, int groupSize = 0, QuantScheme scheme = QuantScheme.Asymmetric)
    {
        ValidateBits(bits, nameof(bits));
        if (scheme == QuantScheme.Symmetric && bits < 2)
            throw new MatqException($"bits = {bits} is out of range for symmetric quantization: allowed 2..8; use 2 or more bits or the asymmetric scheme.");
        if (granularity == Granularity.Group && groupSize <= 0)
            throw new MatqException($"groupSize = {groupSize} is invalid: the group size must be a positive number of input columns (e.g. 32, 64, 128).");
        if (granularity != Granularity.Group && groupSize != 0)
            throw new MatqException($"groupSize = {groupSize} was given for {granularity} quantization: set groupSize only with group-wise granularity.");
        if (!Enum.IsDefined(scheme))
            throw new MatqException($"scheme = {(int)scheme} is not a known quantization scheme: use Asymmetric or Symmetric.");
        if (!Enum.IsDefined(granularity))
            throw new MatqException($"granularity = {(int)granularity} is not a known granularity: use PerTensor, PerChannel or Group.");
        Bits = bits;
        Granularity = granularity;
        GroupSize = groupSize;
        Scheme = scheme;
    }

    public static QuantSpec PerTensor(int bits, QuantScheme scheme = QuantScheme.Asymmetric) => new(bits, Granularity.PerTensor, 0, scheme);
    public static QuantSpec PerChannel(int bits, QuantScheme scheme = QuantScheme.Asymmetric) => new(bits, Granularity.PerChannel, 0, scheme);
    public static QuantSpec Grouped(int bits, int groupSize, QuantScheme scheme = QuantScheme.Asymmetric) => new(bits, Granularity.Group, groupSize, scheme);

    /// <summary>Largest code, 2^c − 1.</summary>
    public int QMax => (1 << Bits) - 1;

    /// <summary>Columns per stored group for a row of <paramref name="cols"/> inputs: the whole row for
    /// per-tensor and per-channel, min(g, cols) for group-wise (a group wider than the row is the row).</summary>
    public int EffectiveGroupSize(int cols)
    {
        if (cols <= 0) throw new ArgumentOutOfRangeException(nameof(cols), cols, "a weight matrix needs at least one column");
        return Granularity == Granularity.Group ? Math.Min(GroupSize, cols) : cols;
    }

    /// <summary>Throws MatqException unless 1 ≤ bits ≤ 8; <paramref name="option"/> names the option in the message.</summary>
    public static void ValidateBits(int bits, string option = "bits")
    {
        if (bits < MinBits || bits > MaxBits)
            throw new MatqException($"{option} = {bits} is out of range: allowed {MinBits}..{MaxBits}; pick a bit width from {MinBits} to {MaxBits}.");
    }

    /// <summary>Throws MatqException unless 1 ≤ r ≤ c (c itself validated as 1..8).</summary>
    public static void ValidateSliceBits(int masterBits, int sliceBits)
    {
        ValidateBits(masterBits, "masterBits");
        if (sliceBits < 1 || sliceBits > masterBits)
            throw new MatqException($"sliceBits = {sliceBits} is out of range: allowed 1..{masterBits} (the master bit width); pick r with 1 ≤ r ≤ c.");
    }
}
