// Contract: the scalar reference of the integer GEMV (int8 activations, see Packed/Int8Activations): it DEFINES what the
// SIMD integer kernels compute, bit for bit. Per row o and group g: D_g = Σ_{k∈g} S[o,k]·q[k] (exact integer),
// X_g = Σ_{k∈g} q[k] (exact); in group order, with single-rounding fp32 fused multiply-adds,
//   A ← fma(Scale(o,g), fma(Zero(o,g), −(float)X_g, (float)D_g), A)   (A = 0 at the start; PackedGroupParams.Fold),
// and y[o] = s·A in fp32. (Rows sit in vector lanes in the SIMD kernels, so each lane runs exactly this sequence.)
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
            for (int k = c0; k < c0 + n; k++) d += w.CodeAt(o, k) * q[k];
            dots[g] = d;
        }
    }

    /// <summary>The float epilogue the SIMD kernels run per lane (same operations, same order, so results are identical).</summary>
    public static float Combine(PackedMatrix w, int o, ReadOnlySpan<long> dots, ReadOnlySpan<int> groupSums, float scale)
    {
        float a = 0;
        for (int g = 0; g < w.GroupsPerRow; g++) a = w.Fold(o, g, a, dots[g], groupSums[g]);
        return scale * a;
    }
}
