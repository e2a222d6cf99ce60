// Contract: int8 activations for the integer GEMV path. Quantize DEFINES them: per vector (one row of activations)
// symmetric, s = max|x|/127, q = clamp(round-half-even(x/s), −127, 127) in fp32 arithmetic (all-zero x → s = 0, q = 0;
// a non-finite x → s = NaN, so y is NaN as the fp32 path would give). Prepare applies the weight's column permutation,
// keeps the codes in stored column order zero-padded to whole 32-column chunks (the kernels broadcast 4 of them at a
// time), and sums them per group.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Matq.Kernels.Packed;

/// <summary>Activations of one GEMV in int8: stored-order codes (zero-padded to whole chunks), the scale s and Σq per weight group.</summary>
public sealed class Int8Activations
{
    /// <summary>Codes in stored column order, zero past Cols [PaddedCols].</summary>
    public sbyte[] Codes { get; }
    public float Scale { get; private set; }
    /// <summary>Σ q over the stored columns of each group [GroupsPerRow].</summary>
    public int[] GroupSums { get; }
    private int Cols { get; }
    private int GroupSize { get; }
    /// <summary>The permutation x was reordered by (null = none): activations serve any matrix of the same shape, groups and perm.</summary>
    internal int[]? Perm { get; private set; }

    /// <summary>True when these activations can feed <paramref name="w"/> (same columns, groups and column permutation).</summary>
    public bool Fits(PackedMatrix w) => Cols == w.Cols && GroupSize == w.GroupSize && ReferenceEquals(Perm, w.Perm);

    private Int8Activations(PackedMatrix w)
    {
        Cols = w.Cols;
        GroupSize = w.GroupSize;
        Codes = new sbyte[w.PaddedCols];
        GroupSums = new int[w.GroupsPerRow];
    }

    /// <summary>Sets s for codes and group sums copied in from a prepared row (Int8ActivationRows), same weight.</summary>
    internal void SetScale(float s) => Scale = s;

    /// <summary>q and s of <paramref name="x"/> (the definition above); returns s.</summary>
    public static float Quantize(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        if (q.Length != x.Length) throw new ArgumentException("q must have x's length");
        float amax = x.IsEmpty ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(x));
        if (!float.IsFinite(amax)) { q.Clear(); return float.NaN; }
        if (amax == 0) { q.Clear(); return 0; }
        float s = amax / 127f;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // the same IEEE division and ties-to-even rounding as the scalar loop, 8 at a time
            var vs = Vector256.Create(s);
            var lo = Vector256.Create(-127f);
            var hi = Vector256.Create(127f);
            ref float x0 = ref MemoryMarshal.GetReference(x);
            ref sbyte q0 = ref MemoryMarshal.GetReference(q);
            for (; i + 32 <= x.Length; i += 32)   // values are clamped to ±127, so narrowing int32 → int16 → int8 is exact
                Vector256.Narrow(
                    Vector256.Narrow(Round(Vector256.LoadUnsafe(ref x0, (nuint)i), vs, lo, hi), Round(Vector256.LoadUnsafe(ref x0, (nuint)i + 8), vs, lo, hi)),
                    Vector256.Narrow(Round(Vector256.LoadUnsafe(ref x0, (nuint)i + 16), vs, lo, hi), Round(Vector256.LoadUnsafe(ref x0, (nuint)i + 24), vs, lo, hi)))
                    .StoreUnsafe(ref q0, (nuint)i);
        }
        for (; i < x.Length; i++) q[i] = (sbyte)Math.Clamp(MathF.Round(x[i] / s, MidpointRounding.ToEven), -127f, 127f);
        return s;
    }

    /// <summary>Quantizes x (original column order) for <paramref name="w"/>: perm applied, codes, group sums.</summary>
    public static Int8Activations Prepare(PackedMatrix w, ReadOnlySpan<float> x, Int8Activations? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.Length != w.Cols) throw new ArgumentException($"x must hold {w.Cols} values, got {x.Length}");
        var a = reuse is not null && reuse.Cols == w.Cols && reuse.GroupSize == w.GroupSize ? reuse : new Int8Activations(w);
        var stored = x;
        float[]? permuted = null;
        if (w.Perm is not null)
        {
            permuted = new float[w.Cols];
            for (int k = 0; k < w.Cols; k++) permuted[k] = x[w.Perm[k]];
            stored = permuted;
        }
        a.Scale = Quantize(stored, a.Codes.AsSpan(0, w.Cols));
        a.Perm = w.Perm;
        for (int g = 0; g < w.GroupsPerRow; g++)
        {
            int c0 = g * w.GroupSize, n = Math.Min(w.GroupSize, w.Cols - c0);
            a.GroupSums[g] = Sum(a.Codes.AsSpan(c0, n));
        }
        return a;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Round(Vector256<float> x, Vector256<float> s, Vector256<float> lo, Vector256<float> hi) =>
        Vector256.ConvertToInt32(Vector256.Min(Vector256.Max(Vector256.Round(x / s), lo), hi));

    private static int Sum(ReadOnlySpan<sbyte> v)
    {
        int i = 0;
        var acc = Vector256<int>.Zero;
        ref sbyte v0 = ref MemoryMarshal.GetReference(v);
        for (; i + 32 <= v.Length; i += 32)
        {
            var (a, b) = Vector256.Widen(Vector256.LoadUnsafe(ref v0, (nuint)i));
            var (c, d) = Vector256.Widen(a + b);   // |a + b| ≤ 254 fits int16
            acc += c + d;
        }
        int s = Vector256.Sum(acc);
        for (; i < v.Length; i++) s += v[i];
        return s;
    }
}
