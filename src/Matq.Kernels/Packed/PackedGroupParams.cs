// Contract: the one definition of a packed matrix's per-group parameters, which every packed kernel and reference reads.
// Per (row o, group g), laid out [RowTiles][GroupsPerRow][16] (lane = row within its tile of 16): one fp16 scale s (times
// a per-tensor power of two T, chosen so the largest sits in (2^14, 2^15]: every fp16 value normal whatever the weights'
// magnitude, exact to undo) and, only when the zeros of the tensor differ, one fp16 zero z in code units (z_r = z/2^(c−r)
// of the artifact's integer zero: exact in fp16). When every zero is the same (symmetric artifacts store 2^(c−1), whose
// r-bit slice is the constant 2^(r−1)) no zero array is kept, just ZeroCode. Either way
//   ŵ = s·(S − z),     2 bytes a group (constant zero) or 4 (a zero per group).
// (A zero rather than an fp16 offset −s·z: the artifact's zero is an integer, so it is exact, where an fp16 offset rounds
// by 2^−12 of |s·z|, up to 2^(r+1)/4096 of a step — enough to move logits past the engines' 1e-3 agreement.)
// The kernels fold a group's sums D_g = Σ S·x (exact integers with int8 activations) and X_g = Σ x per lane as
//   t = fma(z, −X_g, D_g),   A ← fma(s, t, A),   y = A      (with int8 activations y = s_x·A)
// — one rounding for t (none at all for integer sums below 2^24), one for A. fp16 → fp32 (Scale*/Zero* loads, Scale, Zero)
// is exact: the half's bits shifted into a float's (×2^−112), then one multiply by a power of two (Magic = 2^112·T, or
// 2^112). Scales are never negative, so their loads skip the sign (3 instructions for 8 lanes: widen, shift, multiply).
// Kernels specialize on IGroupZeros (OneZero: a broadcast constant, no bytes; GroupZeros: a load per group) once per call.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Matq.Kernels.Packed;

public sealed class PackedGroupParams
{
    /// <summary>[RowTiles, GroupsPerRow, 16]: s/T as fp16 (0 for padded rows).</summary>
    public Half[] Scales { get; }
    /// <summary>[RowTiles, GroupsPerRow, 16]: the zero of each group in code units, fp16; null when the tensor has one zero.</summary>
    public Half[]? Zeros { get; }
    /// <summary>The zero of every group, in code units, when <see cref="Zeros"/> is null (symmetric: 2^(r−1)); else 0.</summary>
    public float ZeroCode { get; }
    /// <summary>The per-tensor power of two T the fp16 scales are multiplied by.</summary>
    public float TensorScale { get; }

    /// <summary>True when the tensor keeps no zero per group (one constant zero).</summary>
    public bool Symmetric => Zeros is null;
    /// <summary>The zero lanes the kernels pin: Zeros, or Scales as a stand-in never read when symmetric.</summary>
    public Half[] ZeroLanes => Zeros ?? Scales;
    /// <summary>2^112·T: a half's bits shifted into a float's, times this, is the scale times T, exactly.</summary>
    public float Magic { get; }
    /// <summary>2^112: the same for the zeros (no tensor factor).</summary>
    public static readonly float ZeroMagic = MathF.ScaleB(1f, 112);
    /// <summary>Bytes the kernels read per call: 2 per scale, 2 per zero.</summary>
    public long Bytes => 2L * (Scales.LongLength + (Zeros?.LongLength ?? 0));

    private PackedGroupParams(Half[] scales, Half[]? zeros, float zeroCode, float tensorScale)
    {
        Scales = scales; Zeros = zeros; ZeroCode = zeroCode; TensorScale = tensorScale;
        Magic = MathF.ScaleB(1f, 112) * tensorScale;
    }

    /// <summary>Scale of entry i (tile-laid index) exactly as every kernel sees it.</summary>
    public float Scale(long i) => (float)Scales[i] * TensorScale;
    /// <summary>Zero of entry i in code units, as every kernel sees it.</summary>
    public float Zero(long i) => Zeros is null ? ZeroCode : (float)Zeros[i];
    /// <summary>−s·z of entry i rounded to fp32 (informational: ŵ = s·S + offset up to that rounding).</summary>
    public float Offset(long i) => -Zero(i) * Scale(i);
    /// <summary>ŵ of code S at entry i in double: the reference value of the format.</summary>
    public double Value(long i, int code) => (double)Scale(i) * (code - (double)Zero(i));
    /// <summary>The fold of one group into lane accumulator a (the kernels' sequence, see the contract).</summary>
    public float Fold(long i, float a, float d, float x) => MathF.FusedMultiplyAdd(Scale(i), MathF.FusedMultiplyAdd(Zero(i), -x, d), a);

    /// <summary>From fp32 parameters already in the tile layout: scales s, and zeros z in code units per entry, or one zero
    /// <paramref name="zeroCode"/> for all (<paramref name="zeros"/> empty). Scales are rounded to fp16 after dividing by T,
    /// zeros to fp16 as they are (exact for the artifact's integer zeros and their slices).</summary>
    public static PackedGroupParams Create(ReadOnlySpan<float> scales, ReadOnlySpan<float> zeros, float zeroCode = 0)
    {
        bool constant = zeros.IsEmpty;
        if (!constant && zeros.Length != scales.Length) throw new ArgumentException("zeros must match scales");
        float max = 0;
        foreach (float v in scales)
        {
            max = MathF.Max(max, Finite(v, "scale"));
            if (v < 0) throw new MatqException($"group scale {v} is negative: the packed layout keeps scales ≥ 0");
        }
        foreach (float v in zeros)
            if (Finite(v, "zero") > 65504) throw new MatqException($"zero {v} does not fit the packed layout's fp16 zeros (|z| ≤ 65504)");
        if (constant) Finite(zeroCode, "zero");
        // T = 2^(⌈log2 max⌉ − 15): max/T in (2^14, 2^15], under fp16's 65504; clamped so 2^112·T stays a normal float
        int e = max > 0 ? Math.Clamp((int)Math.Ceiling(Math.Log2(max)) - 15, -126, 15) : 0;
        float inv = MathF.ScaleB(1f, -e);
        var s = HugePageArrays.Allocate<Half>(scales.Length);   // read with the codes, once per token
        for (int i = 0; i < s.Length; i++) s[i] = (Half)MathF.Abs(scales[i] * inv);   // +0, never −0 (the loads skip the sign)
        Half[]? z = null;
        if (!constant)
        {
            z = HugePageArrays.Allocate<Half>(zeros.Length);
            for (int i = 0; i < z.Length; i++) z[i] = (Half)zeros[i];
        }
        return new PackedGroupParams(s, z, constant ? zeroCode : 0, MathF.ScaleB(1f, e));
    }

    private static float Finite(float v, string what) =>
        float.IsFinite(v) ? MathF.Abs(v) : throw new MatqException($"group {what} {v} is not finite: the packed layout stores finite fp16 values");

    // --- the kernels' loads: 4, 8 or 16 consecutive lanes at p, converted exactly (see the contract) ---

    /// <summary>8 lanes at p as fp32, times magic/2^112.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> Load256(Half* p, float magic)
    {
        var h = Avx2.IsSupported ? Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32()
            : Vector256.Create(Vector128.WidenLower(Vector128.Load((ushort*)p)), Vector128.WidenUpper(Vector128.Load((ushort*)p)));
        var f = (Vector256.ShiftLeft(h, 13) & Vector256.Create(0x0FFFE000u)).AsSingle() * Vector256.Create(magic);
        return (f.AsUInt32() | (Vector256.ShiftLeft(h, 16) & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary>16 lanes at p as fp32, times magic/2^112; AVX-512F.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> Load512(Half* p, float magic)
    {
        var h = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p));
        var f = (Vector512.ShiftLeft(h, 13) & Vector512.Create(0x0FFFE000u)).AsSingle() * Vector512.Create(magic);
        return (f.AsUInt32() | (Vector512.ShiftLeft(h, 16) & Vector512.Create(0x80000000u))).AsSingle();
    }

    /// <summary>4 lanes at p as fp32, times magic/2^112; portable.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector128<float> Load128(Half* p, float magic)
    {
        var h = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16());
        var f = (Vector128.ShiftLeft(h, 13) & Vector128.Create(0x0FFFE000u)).AsSingle() * Vector128.Create(magic);
        return (f.AsUInt32() | (Vector128.ShiftLeft(h, 16) & Vector128.Create(0x80000000u))).AsSingle();
    }

    /// <summary>8 scales at p as fp32 times magic/2^112 (non-negative halves: no sign to carry).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> Scale256(Half* p, Vector256<float> magic)
    {
        var h = Avx2.IsSupported ? Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32()
            : Vector256.Create(Vector128.WidenLower(Vector128.Load((ushort*)p)), Vector128.WidenUpper(Vector128.Load((ushort*)p)));
        return Vector256.ShiftLeft(h, 13).AsSingle() * magic;
    }

    /// <summary>16 scales at p as fp32 times magic/2^112; AVX-512F.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> Scale512(Half* p, Vector512<float> magic) =>
        Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p)), 13).AsSingle() * magic;

    /// <summary>A matrix's constants as the tile loops carry them, with the zero lanes of one group (broadcast ZeroCode when
    /// there is no zero array: a predictable branch per group, no bytes read).</summary>
    internal readonly unsafe struct Lanes(PackedGroupParams p)
    {
        public readonly float Magic = p.Magic, ZeroCode = p.ZeroCode;
        public readonly bool HasZeros = p.Zeros is not null;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> S256(Half* s) => Scale256(s, Vector256.Create(Magic));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> S512(Half* s) => Scale512(s, Vector512.Create(Magic));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector128<float> S128(Half* s) => Load128(s, Magic);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Z256(Half* z) => HasZeros ? Load256(z, ZeroMagic) : Vector256.Create(ZeroCode);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector128<float> Z128(Half* z) => HasZeros ? Load128(z, ZeroMagic) : Vector128.Create(ZeroCode);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Z256<TZ>(Half* z) where TZ : struct, IGroupZeros => TZ.PerGroup ? Load256(z, ZeroMagic) : Vector256.Create(ZeroCode);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Z512<TZ>(Half* z) where TZ : struct, IGroupZeros => TZ.PerGroup ? Load512(z, ZeroMagic) : Vector512.Create(ZeroCode);
    }
}

/// <summary>How a kernel gets a group's zero lanes, fixed per call (a generic struct argument, so no branch per group).</summary>
internal interface IGroupZeros
{
    /// <summary>True: an fp16 zero per lane and group (PackedGroupParams.Zeros); false: one ZeroCode for the tensor.</summary>
    static abstract bool PerGroup { get; }
}

/// <summary>One zero for the whole tensor (symmetric): broadcast once, nothing read per group.</summary>
internal struct OneZero : IGroupZeros { public static bool PerGroup => false; }

/// <summary>A zero per group (asymmetric): 16 fp16 lanes read beside the 16 scales.</summary>
internal struct GroupZeros : IGroupZeros { public static bool PerGroup => true; }

