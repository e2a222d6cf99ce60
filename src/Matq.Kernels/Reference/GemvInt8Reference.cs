// Contract: the scalar reference of the integer GEMV (int8 activations, see Packed/Int8Activations): it DEFINES what the
// SIMD integer kernels compute, bit for bit. Per row o and group g: D_g = Σ_{k∈g} S[o,k]·q[k] (exact integer),
// X_g = Σ_{k∈g} q[k]; t_g = (double)Scales[o,g]·D_g + (double)Biases[o,g]·X_g (two double products, then their sum);
// four partial sums A_j = Σ_{g ≡ j mod 4} t_g in g order; y[o] = (float)(s · ((A_0 + A_1) + (A_2 + A_3))).
// (Four interleaved partial sums let the SIMD epilogue handle four groups per vector and still match bit for bit.)
using Matq.Kernels.Packed;

namespace Matq.Kernels.Reference;

public static class GemvInt8Reference
{
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y)
    {
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values");
        var a = Int8Activations.Prepare(w, x);
        var dots = new long[w.GroupsPerRow];
        for (int o = 0; o < w.Rows; o++)
        {
            GroupDots(w, a.Codes, o, dots);
            y[o] = Combine(w, o, dots, a.GroupSums, a.Scale);
        }
    }

    /// <summary>D_g of row o for stored-order codes q.</summary>
    public static void GroupDots(PackedMatrix w, ReadOnlySpan<sbyte> q, int o, Span<long> dots)
    {
        for (int g = 0; g < w.GroupsPerRow; g++)
        {
            long d = 0;
            int c0 = g * w.GroupSize, n = Math.Min(w.GroupSize, w.Cols - c0);
            for (int k = c0; k < c0 + n; k++)
            {
                var block = w.Data.AsSpan((int)(((long)o * w.BlocksPerRow + k / PackedBlock32.Codes) * w.BlockBytes), w.BlockBytes);
                d += PackedBlock32.CodeAt(block, w.Bits, k % PackedBlock32.Codes) * q[k];
            }
            dots[g] = d;
        }
    }

    /// <summary>The float epilogue shared by the reference and the SIMD kernels (same order, so results are identical).</summary>
    public static float Combine(PackedMatrix w, int o, ReadOnlySpan<long> dots, ReadOnlySpan<int> groupSums, float scale)
    {
        Span<double> a = stackalloc double[4];
        a.Clear();
        int gpr = w.GroupsPerRow;
        for (int g = 0; g < gpr; g++)
            a[g & 3] += (double)w.Scales[(long)o * gpr + g] * dots[g] + (double)w.Biases[(long)o * gpr + g] * groupSums[g];
        return (float)(scale * ((a[0] + a[1]) + (a[2] + a[3])));
    }
}
