// Contract: int8 activations for the integer GEMV path. Quantize DEFINES them: per vector (one row of activations)
// symmetric, s = max|x|/127, q = clamp(round-half-even(x/s), −127, 127) in fp32 arithmetic (all-zero x → s = 0, q = 0;
// a non-finite x → s = NaN, so y is NaN as the fp32 path would give). Prepare lays the codes out in the "slot" order the
// SIMD kernels consume (Int8SlotLayout) and sums them per group.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Matq.Kernels.Packed;

/// <summary>Activations of one GEMV in int8: slot-ordered codes, the scale s and Σq per weight group.</summary>
public sealed class Int8Activations
{
    /// <summary>Codes in Int8SlotLayout order (zero in slots that map to no column).</summary>
    public sbyte[] Slots { get; }
    /// <summary>Codes in stored column order [Cols].</summary>
    public sbyte[] Codes { get; }
    public float Scale { get; private set; }
    /// <summary>Σ q over the stored columns of each group [GroupsPerRow].</summary>
    public int[] GroupSums { get; }
    internal Int8SlotLayout Layout { get; }
    /// <summary>The permutation x was reordered by (null = none): activations serve any matrix of the same layout and perm.</summary>
    internal int[]? Perm { get; private set; }

    /// <summary>True when these activations can feed <paramref name="w"/> (same slot layout, same column permutation).</summary>
    public bool Fits(PackedMatrix w) => ReferenceEquals(Layout, Int8SlotLayout.For(w)) && ReferenceEquals(Perm, w.Perm);

    private Int8Activations(Int8SlotLayout layout, int cols, int groups)
    {
        Layout = layout;
        Slots = new sbyte[layout.TotalBytes];
        Codes = new sbyte[cols];
        GroupSums = new int[groups];
    }

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

    /// <summary>Quantizes x (original column order) for <paramref name="w"/>: perm applied, codes, slots, group sums.</summary>
    public static Int8Activations Prepare(PackedMatrix w, ReadOnlySpan<float> x, Int8Activations? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (x.Length != w.Cols) throw new ArgumentException($"x must hold {w.Cols} values, got {x.Length}");
        var layout = Int8SlotLayout.For(w);
        var a = reuse is not null && ReferenceEquals(reuse.Layout, layout) ? reuse : new Int8Activations(layout, w.Cols, w.GroupsPerRow);
        var stored = x;
        float[]? permuted = null;
        if (w.Perm is not null)
        {
            permuted = new float[w.Cols];
            for (int k = 0; k < w.Cols; k++) permuted[k] = x[w.Perm[k]];
            stored = permuted;
        }
        a.Scale = Quantize(stored, a.Codes);
        a.Perm = w.Perm;
        Gather(layout.Map, a.Codes, a.Slots);
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

    private static unsafe void Gather(int[] map, sbyte[] codes, sbyte[] slots)
    {
        fixed (int* m = map)
        fixed (sbyte* c = codes, s = slots)
            for (int i = 0; i < map.Length; i++) s[i] = m[i] < 0 ? (sbyte)0 : c[m[i]];
    }

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

/// <summary>
/// Slot order of int8 activations for one PackedMatrix shape. The kernels walk a group's blocks in steps of U blocks
/// (8-bit: 2 — two 256-bit loads; 4-bit: 2, 2- and 3-bit: 4 — one 256-bit load of codes, 48 bytes for 3-bit) and decode
/// each step into V vectors of 32 u8 codes (V = U); lane l of vector v holds, for
///   8-bit: code l of block v;  4-bit: code 16v + l mod 16 of block l/16 (low nibbles v = 0, high v = 1);
///   2-, 3-bit: code 8v + l mod 8 of block l/8 (bit pair v).
/// Slot bytes of group g start at Offsets[g]; step s, vector v, lane l is byte Offsets[g] + (s·V + v)·32 + l. Slots past
/// the group's last block or the matrix's last column map to no column (activation 0), so codes read there never count.
/// </summary>
internal sealed class Int8SlotLayout
{
    // one layout per (bits, cols, group size): matrices of one shape share it, so one set of activations feeds them all
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(int, int, int), Int8SlotLayout> Cache = new();

    public int U { get; }
    public int[] Offsets { get; }
    /// <summary>Slot byte → stored column, or −1.</summary>
    public int[] Map { get; }
    public int TotalBytes => Map.Length;

    public static Int8SlotLayout For(PackedMatrix w) => Cache.GetOrAdd((w.Bits, w.Cols, w.GroupSize), _ => new Int8SlotLayout(w));

    public static int BlocksPerStep(int bits) => bits switch { 8 => 2, 4 => 2, 2 or 3 => 4, _ => throw new MatqException($"bits = {bits} has no packed layout") };

    private Int8SlotLayout(PackedMatrix w)
    {
        U = BlocksPerStep(w.Bits);
        int bpg = w.BlocksPerGroup, bpr = w.BlocksPerRow;
        Offsets = new int[w.GroupsPerRow + 1];
        for (int g = 0; g < w.GroupsPerRow; g++)
        {
            int nb = Math.Min(bpg, bpr - g * bpg), steps = (nb + U - 1) / U;
            Offsets[g + 1] = Offsets[g] + steps * U * 32;
        }
        Map = new int[Offsets[^1]];
        for (int g = 0; g < w.GroupsPerRow; g++)
        {
            int b0 = g * bpg, b1 = Math.Min(b0 + bpg, bpr);
            for (int i = Offsets[g]; i < Offsets[g + 1]; i++)
            {
                int rel = i - Offsets[g], step = rel / (32 * U), v = rel / 32 % U, l = rel % 32;
                var (blockOff, code) = w.Bits switch
                {
                    8 => (v, l),
                    4 => (l / 16, 16 * v + l % 16),
                    _ => (l / 8, 8 * v + l % 8),
                };
                int b = b0 + step * U + blockOff, col = 32 * b + code;
                Map[i] = b < b1 && col < w.Cols ? col : -1;
            }
        }
    }
}
