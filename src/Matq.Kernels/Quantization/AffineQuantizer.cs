// Contract: scalar reference affine quantizer (it DEFINES matq's codes): computes QuantParams for a row-major
// float matrix [out, in] and maps floats ↔ byte codes with α and z exactly as in ARCHITECTURE.md.
//
// Conventions (the tensor path in Matq.Quantization reproduces these in float32, op for op):
//  * All arithmetic is float32; rounding is half-to-even (Rounding.RoundHalfEven).
//  * Asymmetric: lo = min(min(w), 0), hi = max(max(w), 0) — 0 is always inside the range, so 0 is exactly
//    representable (ŵ = 0 when q = z) and z lands in 0..2^c − 1. α = max((hi − lo)/(2^c − 1), MinScale),
//    z = clamp(round(−lo/α), 0, 2^c − 1).
//  * Symmetric: α = max(max|w| / (2^(c−1) − 1), MinScale), z = 2^(c−1) (bits ≥ 2).
//  * Degenerate group (all weights 0, so hi == lo): α = MinScale instead of 0; every code is z and ŵ = 0.
//  * q = clamp(round(w/α) + z, 0, 2^c − 1); ŵ = α·(q − z).
namespace Matq.Kernels.Quantization;

/// <summary>Scalar affine quantization of whole matrices and single values.</summary>
public static class AffineQuantizer
{
    /// <summary>Floor for α so a constant-zero group never divides by 0 (1e-10 ≪ any real weight step).</summary>
    public const float MinScale = 1e-10f;

    /// <summary>Computes per-group α and z for <paramref name="weights"/> = row-major [rows, cols].</summary>
    public static QuantParams ComputeParams(ReadOnlySpan<float> weights, int rows, int cols, QuantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        CheckShape(weights.Length, rows, cols);
        int g = spec.EffectiveGroupSize(cols);
        int groups = QuantParams.GroupCount(cols, g);
        var scales = new float[rows * groups];
        var zeros = new byte[rows * groups];

        if (spec.Granularity == Granularity.PerTensor)
        {
            (float lo, float hi) = MinMax(weights);
            (float a, byte z) = GroupParams(lo, hi, spec);
            Array.Fill(scales, a);
            Array.Fill(zeros, z);
        }
        else
        {
            for (int r = 0; r < rows; r++)
            {
                ReadOnlySpan<float> row = weights.Slice(r * cols, cols);
                for (int j = 0; j < groups; j++)
                {
                    int start = j * g;
                    (float lo, float hi) = MinMax(row.Slice(start, Math.Min(g, cols - start)));
                    (scales[r * groups + j], zeros[r * groups + j]) = GroupParams(lo, hi, spec);
                }
            }
        }
        return new QuantParams(rows, cols, spec.Bits, spec.Scheme, spec.Granularity, g, scales, zeros);
    }

    /// <summary>α and z of one group whose raw minimum and maximum are <paramref name="min"/>, <paramref name="max"/>.</summary>
    public static (float Scale, byte Zero) GroupParams(float min, float max, QuantSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        float lo = MathF.Min(min, 0f), hi = MathF.Max(max, 0f);
        if (spec.Scheme == QuantScheme.Symmetric)
        {
            float absMax = MathF.Max(-lo, hi);
            float a = MathF.Max(absMax / (float)((1 << (spec.Bits - 1)) - 1), MinScale);
            return (a, (byte)(1 << (spec.Bits - 1)));
        }
        float qmax = spec.QMax;
        float alpha = MathF.Max((hi - lo) / qmax, MinScale);
        float z = MathF.Min(MathF.Max(Rounding.RoundHalfEven(-lo / alpha), 0f), qmax);
        return (alpha, (byte)z);
    }

    /// <summary>q = clamp(round(w/α) + z, 0, 2^bits − 1).</summary>
    public static byte QuantizeValue(float w, float scale, int zero, int bits)
    {
        float q = Rounding.RoundHalfEven(w / scale) + zero;
        return (byte)MathF.Min(MathF.Max(q, 0f), (1 << bits) - 1);
    }

    /// <summary>ŵ = α·(q − z).</summary>
    public static float DequantizeValue(int code, float scale, int zero) => scale * (code - zero);

    /// <summary>Quantizes row-major [Rows, Cols] weights with <paramref name="p"/> into <paramref name="codes"/> (same layout).</summary>
    public static void Quantize(ReadOnlySpan<float> weights, QuantParams p, Span<byte> codes)
    {
        ArgumentNullException.ThrowIfNull(p);
        CheckShape(weights.Length, p.Rows, p.Cols);
        CheckShape(codes.Length, p.Rows, p.Cols);
        for (int r = 0; r < p.Rows; r++)
            for (int c = 0; c < p.Cols; c++)
            {
                int i = r * p.Cols + c, k = p.ParamIndex(r, c);
                codes[i] = QuantizeValue(weights[i], p.Scales[k], p.Zeros[k], p.Bits);
            }
    }

    /// <summary>Dequantizes row-major codes [Rows, Cols] into floats (same layout).</summary>
    public static void Dequantize(ReadOnlySpan<byte> codes, QuantParams p, Span<float> weights)
    {
        ArgumentNullException.ThrowIfNull(p);
        CheckShape(codes.Length, p.Rows, p.Cols);
        CheckShape(weights.Length, p.Rows, p.Cols);
        for (int r = 0; r < p.Rows; r++)
            for (int c = 0; c < p.Cols; c++)
            {
                int i = r * p.Cols + c, k = p.ParamIndex(r, c);
                weights[i] = DequantizeValue(codes[i], p.Scales[k], p.Zeros[k]);
            }
    }

    /// <summary>Computes parameters and codes in one call.</summary>
    public static (QuantParams Params, byte[] Codes) QuantizeMatrix(ReadOnlySpan<float> weights, int rows, int cols, QuantSpec spec)
    {
        QuantParams p = ComputeParams(weights, rows, cols, spec);
        var codes = new byte[weights.Length];
        Quantize(weights, p, codes);
        return (p, codes);
    }

    /// <summary>Dequantizes into a new array.</summary>
    public static float[] DequantizeMatrix(ReadOnlySpan<byte> codes, QuantParams p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var w = new float[codes.Length];
        Dequantize(codes, p, w);
        return w;
    }

    private static (float Min, float Max) MinMax(ReadOnlySpan<float> values)
    {
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        foreach (float v in values)
        {
            if (float.IsNaN(v)) throw new MatqException("weights contain NaN: quantization needs finite weights; check the checkpoint or the training run.");
            lo = MathF.Min(lo, v);
            hi = MathF.Max(hi, v);
        }
        return (lo, hi);
    }

    private static void CheckShape(int length, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        if ((long)rows * cols != length)
            throw new ArgumentException($"buffer of {length} elements does not match shape [{rows}, {cols}]");
    }
}
