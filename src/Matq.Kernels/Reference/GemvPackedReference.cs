// Contract: the scalar reference GEMV y = Ŵx over a PackedMatrix (fp32 activations, double accumulation); it DEFINES
// what every vectorized GEMV must compute: ŵ[o, k] = PackedMatrix.Dequantize(o, g, S[o,k]) for stored column k of group g (PackedGroupParams.Value),
// y[o] = Σ_k ŵ[o, k]·x[Perm[k]].
using Matq.Kernels.Packed;

namespace Matq.Kernels.Reference;

public static class GemvPackedReference
{
    public static void Gemv(PackedMatrix w, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != w.Cols) throw new ArgumentException($"x must hold {w.Cols} values");
        if (y.Length != w.Rows) throw new ArgumentException($"y must hold {w.Rows} values");
        for (int o = 0; o < w.Rows; o++)
        {
            double acc = 0;
            for (int k = 0; k < w.Cols; k++)
            {
                int g = k / w.GroupSize;
                double wv = w.Dequantize(o, g, w.CodeAt(o, k));
                acc += wv * x[w.Perm is null ? k : w.Perm[k]];
            }
            y[o] = (float)acc;
        }
    }

    /// <summary>The dense dequantized matrix Ŵ [Rows, Cols] in original column order.</summary>
    public static float[] Dequantize(PackedMatrix w)
    {
        var d = new float[(long)w.Rows * w.Cols];
        for (int o = 0; o < w.Rows; o++)
            for (int k = 0; k < w.Cols; k++)
            {
                int g = k / w.GroupSize;
                d[(long)o * w.Cols + (w.Perm is null ? k : w.Perm[k])] = (float)w.Dequantize(o, g, w.CodeAt(o, k));
            }
        return d;
    }
}
