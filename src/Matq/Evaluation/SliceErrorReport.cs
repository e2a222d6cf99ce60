// For one weight matrix: reconstruction error of direct r-bit min-max quantization versus taking the r most
// significant bits of the 8-bit master codes (Matryoshka slicing, no retraining), for each r and layout.
using Matq.Kernels.Packing;
using Matq.Kernels.Quantization;

namespace Matq.Evaluation;

public sealed record SliceErrorRow(int Bits, string Layout, double DirectMse, double SlicedMse, double WeightVariance)
{
    /// <summary>Sliced error relative to direct quantization (1 = as good as quantizing to r bits directly).</summary>
    public double Ratio => DirectMse == 0 ? 1 : SlicedMse / DirectMse;
}

public static class SliceErrorReport
{
    /// <param name="weights">Row-major [rows, cols].</param>
    /// <param name="groupSize">0 = per output channel.</param>
    public static IReadOnlyList<SliceErrorRow> Measure(ReadOnlySpan<float> weights, int rows, int cols, IReadOnlyList<int> bits, int groupSize, int masterBits = 8)
    {
        var spec = groupSize <= 0 ? QuantSpec.PerChannel(masterBits) : QuantSpec.Grouped(masterBits, groupSize);
        var (master, codes) = AffineQuantizer.QuantizeMatrix(weights, rows, cols, spec);
        double mean = 0;
        foreach (var w in weights) mean += w;
        mean /= weights.Length;
        double variance = 0;
        foreach (var w in weights) variance += (w - mean) * (w - mean);
        variance /= weights.Length;

        var layout = groupSize <= 0 ? "per-channel" : $"g{groupSize}";
        var rowsOut = new List<SliceErrorRow>();
        foreach (int r in bits)
        {
            var directSpec = groupSize <= 0 ? QuantSpec.PerChannel(r) : QuantSpec.Grouped(r, groupSize);
            var (p, direct) = AffineQuantizer.QuantizeMatrix(weights, rows, cols, directSpec);
            var directHat = AffineQuantizer.DequantizeMatrix(direct, p);
            var slicedHat = NestedSlice.Dequantize(NestedSlice.Slice(codes, masterBits, r), master, r);
            rowsOut.Add(new SliceErrorRow(r, layout, Mse(weights, directHat), Mse(weights, slicedHat), variance));
        }
        return rowsOut;
    }

    private static double Mse(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double d = a[i] - b[i]; s += d * d; }
        return s / a.Length;
    }
}
