// Contract: int8 activations of a prefill GEMM: T rows of activations, each quantized on its own exactly as
// Int8Activations defines it (per row symmetric, s_r = max|x_r|/127, q = clamp(round-half-even(x/s_r), −127, 127), the
// weight's column permutation applied, codes in stored column order zero-padded to whole 32-column chunks, Σq per
// group). Row r of a prepared batch therefore holds the same codes, scale and group sums as Int8Activations.Prepare of
// x_r alone, so a GEMM over these rows can equal the integer GEMV token by token.
namespace Matq.Kernels.Packed;

/// <summary>Int8 codes [Rows, PaddedCols] (stored column order), per-row scales [Rows], Σq per row and group [Rows, GroupsPerRow].</summary>
public sealed class Int8ActivationRows
{
    /// <summary>Activation rows (tokens) prepared.</summary>
    public int Rows { get; private set; }
    /// <summary>Codes per row: the weight's PaddedCols.</summary>
    public int Stride { get; }
    public int Groups { get; }
    private int Cols { get; }
    private int GroupSize { get; }
    /// <summary>Codes of row r at [r·Stride, r·Stride + Stride), zero past Cols.</summary>
    public sbyte[] Codes { get; private set; }
    /// <summary>s of each row (0 for an all-zero row, NaN for a non-finite one).</summary>
    public float[] Scales { get; private set; }
    /// <summary>Σq of row r, group g at r·Groups + g.</summary>
    public int[] GroupSums { get; private set; }
    internal int[]? Perm { get; private set; }

    private Int8ActivationRows(PackedMatrix w)
    {
        Cols = w.Cols; GroupSize = w.GroupSize; Stride = w.PaddedCols; Groups = w.GroupsPerRow;
        Codes = []; Scales = []; GroupSums = [];
    }

    /// <summary>True when these rows can feed <paramref name="w"/> (same columns, groups and column permutation).</summary>
    public bool Fits(PackedMatrix w) => Cols == w.Cols && GroupSize == w.GroupSize && ReferenceEquals(Perm, w.Perm);

    /// <summary>Quantizes <paramref name="t"/> rows x [t, Cols] (original column order) for <paramref name="w"/>, each
    /// row by <see cref="Int8Activations.Quantize"/>; reuses <paramref name="reuse"/>'s buffers when the shape allows.</summary>
    public static Int8ActivationRows Prepare(PackedMatrix w, ReadOnlySpan<float> x, int t, Int8ActivationRows? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfLessThan(t, 1);
        if (x.Length != (long)t * w.Cols) throw new ArgumentException($"x must hold {t}×{w.Cols} values, got {x.Length}");
        var a = reuse is not null && reuse.Cols == w.Cols && reuse.GroupSize == w.GroupSize && reuse.Stride == w.PaddedCols
            ? reuse : new Int8ActivationRows(w);
        if (a.Scales.Length < t)
        {
            a.Codes = new sbyte[(long)t * a.Stride];
            a.Scales = new float[t];
            a.GroupSums = new int[t * a.Groups];
        }
        a.Rows = t;
        a.Perm = w.Perm;
        float[]? permuted = w.Perm is null ? null : new float[w.Cols];
        for (int r = 0; r < t; r++)
        {
            var xr = x.Slice(r * w.Cols, w.Cols);
            if (permuted is not null)
            {
                for (int k = 0; k < w.Cols; k++) permuted[k] = xr[w.Perm![k]];
                xr = permuted;
            }
            var codes = a.Codes.AsSpan(r * a.Stride, a.Stride);
            codes[w.Cols..].Clear();
            a.Scales[r] = Int8Activations.Quantize(xr, codes[..w.Cols]);
            for (int g = 0; g < a.Groups; g++)
            {
                int c0 = g * w.GroupSize, n = Math.Min(w.GroupSize, w.Cols - c0), s = 0;
                foreach (sbyte q in codes.Slice(c0, n)) s += q;
                a.GroupSums[r * a.Groups + g] = s;
            }
        }
        return a;
    }
}
