// Contract: the scalar reference of the int8-activation GEMM (prefill): it DEFINES what GemmInt8Simd computes, bit for
// bit. Each activation row x_r is quantized on its own (Int8Activations.Quantize: per row symmetric, round-half-even),
// and row r of Y is the integer GEMV's reference on that row: per output o and group g the exact integer dot
// D_g = Σ S[o,k]·q_r[k] and X_g = Σ q_r[k], then A ← fma(Scale, fma(Zero, −X_g, D_g), A), y = s_r·A
// (GemvInt8Reference.GroupDots / Combine). So the GEMM equals the integer GEMV run token by token.
using Matq.Kernels.Packed;

namespace Matq.Kernels.Reference;

public static class GemmInt8Reference
{
    /// <param name="x">[t, Cols] row-major, original column order.</param>
    /// <param name="y">[t, Rows] row-major.</param>
    public static void Gemm(PackedMatrix w, ReadOnlySpan<float> x, int t, Span<float> y)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.Length != (long)t * w.Cols) throw new ArgumentException($"x must hold {t}×{w.Cols} values");
        if (y.Length != (long)t * w.Rows) throw new ArgumentException($"y must hold {t}×{w.Rows} values");
        var dots = new long[w.GroupsPerRow];
        for (int r = 0; r < t; r++)
        {
            var a = Int8Activations.Prepare(w, x.Slice(r * w.Cols, w.Cols));
            for (int o = 0; o < w.Rows; o++)
            {
                GemvInt8Reference.GroupDots(w, a.Codes, o, dots);
                y[r * w.Rows + o] = GemvInt8Reference.Combine(w, o, dots, a.GroupSums, a.Scale);
            }
        }
    }
}
