// Contract: QuantParams holds the per-group scales α and zero points z of one quantized matrix W[out, in],
// stored row-major as [out, GroupsPerRow]; group j of a row covers columns [j·GroupSize, min((j+1)·GroupSize, in)).
namespace Matq.Kernels.Quantization;

/// <summary>Scales and zero points of one quantized row-major matrix [Rows, Cols].</summary>
public sealed class QuantParams
{
    /// <summary>Output channels (rows) of the weight matrix.</summary>
    public int Rows { get; }

    /// <summary>Input columns of the weight matrix.</summary>
    public int Cols { get; }

    /// <summary>Master bit width c; codes lie in 0..2^c − 1.</summary>
    public int Bits { get; }

    public QuantScheme Scheme { get; }
    public Granularity Granularity { get; }

    /// <summary>Columns per group: Cols for per-tensor and per-channel; the last group of a row may be shorter.</summary>
    public int GroupSize { get; }

    /// <summary>ceil(Cols / GroupSize).</summary>
    public int GroupsPerRow { get; }

    /// <summary>α per group, [Rows, GroupsPerRow] row-major; always &gt; 0. Per-tensor repeats one value on every row.</summary>
    public float[] Scales { get; }

    /// <summary>Integer zero point z per group, [Rows, GroupsPerRow] row-major, in 0..2^c − 1.</summary>
    public byte[] Zeros { get; }

    public QuantParams(int rows, int cols, int bits, QuantScheme scheme, Granularity granularity, int groupSize, float[] scales, byte[] zeros)
    {
        QuantSpec.ValidateBits(bits);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        if (groupSize < 1 || groupSize > cols)
            throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, $"the stored group size must be in 1..{cols}");
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(zeros);
        int groups = GroupCount(cols, groupSize);
        if (scales.Length != rows * groups || zeros.Length != rows * groups)
            throw new ArgumentException($"scales and zeros must have {rows}×{groups} entries, got {scales.Length} and {zeros.Length}");
        int qmax = (1 << bits) - 1;
        foreach (byte z in zeros)
            if (z > qmax) throw new ArgumentException($"zero point {z} does not fit {bits} bits");
        Rows = rows;
        Cols = cols;
        Bits = bits;
        Scheme = scheme;
        Granularity = granularity;
        GroupSize = groupSize;
        GroupsPerRow = groups;
        Scales = scales;
        Zeros = zeros;
    }

    /// <summary>Number of groups in a row of <paramref name="cols"/> columns: ceil(cols / groupSize).</summary>
    public static int GroupCount(int cols, int groupSize) => (cols + groupSize - 1) / groupSize;

    /// <summary>Largest code, 2^c − 1.</summary>
    public int QMax => (1 << Bits) - 1;

    /// <summary>Index into Scales/Zeros of the group holding element (row, col).</summary>
    public int ParamIndex(int row, int col) => row * GroupsPerRow + col / GroupSize;

    public float Scale(int row, int col) => Scales[ParamIndex(row, col)];
    public byte Zero(int row, int col) => Zeros[ParamIndex(row, col)];
}
