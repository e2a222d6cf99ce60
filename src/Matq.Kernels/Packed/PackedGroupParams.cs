// Contract: the one definition of a packed matrix's per-group parameters, which every packed kernel and reference reads.
// Per (row o, group g), laid out [RowTiles][GroupsPerRow][16] (lane = row within its tile of 16): one fp16 scale s and,
// only when the tensor is asymmetric, one fp16 offset m; both are multiplied by a per-tensor power of two T (chosen so the
// largest |value| sits in [2^14, 2^15], keeping every fp16 value normal whatever the weights' magnitude; exact to undo).
//   asymmetric:  ŵ = s·S + m          (m = −s·z_r, one per group: 2 + 2 bytes a group)
//   symmetric:   ŵ = s·(S − z)        (one constant z for the whole tensor, e.g. 2^(r−1): no offset array, 2 bytes a group)
// The kernels fold a group's exact or fp32 sums D_g = Σ S·x and X_g = Σ x per lane as
//   A ← fma(s, D_g, A),   B ← fma(b, β·X_g, B),   y = A + B
// with b = m and β = 1 (asymmetric) or b = s and β = −z (symmetric): BiasLanes and BiasFactor, so both kinds run the
// same instructions and only the symmetric one skips the offset bytes. fp16 → fp32 (Load128/256/512, Scale, Offset) is
// exact: the half's bits shifted into a float's (×2^−112), then one multiply by Magic = 2^112·T (a power of two).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Matq.Kernels.Packed;

public sealed class PackedGroupParams
{
    /// <summary>[RowTiles, GroupsPerRow, 16]: s/T as fp16 (0 for padded rows).</summary>
    public Half[] Scales { get; }
    /// <summary>[RowTiles, GroupsPerRow, 16]: m/T as fp16; null for a symmetric tensor (one zero for all groups).</summary>
    public Half[]? Offsets { get; }
    /// <summary>The constant zero z in code units of a symmetric tensor (ŵ = s·(S − z)); 0 when asymmetric.</summary>
    public float ZeroCode { get; }
    /// <summary>The per-tensor power of two T the fp16 values are multiplied by.</summary>
    public float TensorScale { get; }

    public bool Symmetric => Offsets is null;
    /// <summary>β of the fold B ← fma(b, β·X_g, B): 1 (asymmetric) or −z (symmetric).</summary>
    public float BiasFactor => Offsets is null ? -ZeroCode : 1f;
    /// <summary>The b lanes of the fold: the offsets (asymmetric) or the scales (symmetric).</summary>
    public Half[] BiasLanes => Offsets ?? Scales;
    /// <summary>2^112·T: a half's bits shifted into a float's, times this, is the value times T, exactly.</summary>
    public float Magic { get; }
    /// <summary>Bytes the kernels read per call: 2 per scale, 2 per offset.</summary>
    public long Bytes => 2L * (Scales.LongLength + (Offsets?.LongLength ?? 0));

    private PackedGroupParams(Half[] scales, Half[]? offsets, float zeroCode, float tensorScale)
    {
        Scales = scales; Offsets = offsets; ZeroCode = zeroCode; TensorScale = tensorScale;
        Magic = MathF.ScaleB(1f, 112) * tensorScale;
    }

    /// <summary>Scale of entry i (tile-laid index): s exactly as every kernel sees it.</summary>
    public float Scale(long i) => (float)Scales[i] * TensorScale;
    /// <summary>Offset of entry i: m (asymmetric) or −z·s rounded to fp32 (symmetric; informational).</summary>
    public float Offset(long i) => Offsets is null ? -ZeroCode * Scale(i) : (float)Offsets[i] * TensorScale;
    /// <summary>The b lane of entry i in the fold (Offsets or Scales).</summary>
    public float BiasLane(long i) => (float)BiasLanes[i] * TensorScale;
    /// <summary>ŵ of code S at entry i in double: the reference value of the format.</summary>
    public double Value(long i, int code) =>
        Offsets is null ? (double)Scale(i) * (code - (double)ZeroCode) : (double)Scale(i) * code + Offset(i);

    /// <summary>From fp32 parameters already in the tile layout: scales s and offsets m (asymmetric), or scales and one
    /// zero z in code units (<paramref name="offsets"/> null: symmetric). Rounds each to fp16 after dividing by T.</summary>
    public static PackedGroupParams Create(ReadOnlySpan<float> scales, ReadOnlySpan<float> offsets, bool symmetric, float zeroCode = 0)
    {
        if (!symmetric && offsets.Length != scales.Length) throw new ArgumentException("offsets must match scales");
        float max = 0;
        foreach (float v in scales) max = MathF.Max(max, Finite(v));
        if (!symmetric) foreach (float v in offsets) max = MathF.Max(max, Finite(v));
        if (symmetric && !float.IsFinite(zeroCode)) throw new MatqException($"zero {zeroCode} is not finite");
        // T = 2^(⌈log2 max⌉ − 15): max/T in (2^14, 2^15], under fp16's 65504; clamped so 2^112·T stays a normal float
        int e = max > 0 ? Math.Clamp((int)Math.Ceiling(Math.Log2(max)) - 15, -126, 15) : 0;
        float t = MathF.ScaleB(1f, e), inv = MathF.ScaleB(1f, -e);
        var s = new Half[scales.Length];
        for (int i = 0; i < s.Length; i++) s[i] = (Half)(scales[i] * inv);
        Half[]? m = null;
        if (!symmetric)
        {
            m = new Half[offsets.Length];
            for (int i = 0; i < m.Length; i++) m[i] = (Half)(offsets[i] * inv);
        }
        return new PackedGroupParams(s, m, symmetric ? zeroCode : 0, t);
    }

    private static float Finite(float v) =>
        float.IsFinite(v) ? MathF.Abs(v) : throw new MatqException($"group parameter {v} is not finite: the packed layout stores finite fp16 values");

    // --- the kernels' loads: 4, 8 or 16 consecutive lanes at p, converted exactly (see the contract) ---

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Bits256(Vector256<uint> h, Vector256<float> magic)
    {
        var f = (Vector256.ShiftLeft(h, 13) & Vector256.Create(0x0FFFE000u)).AsSingle() * magic;
        return (f.AsUInt32() | (Vector256.ShiftLeft(h, 16) & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary>8 lanes at p as fp32 (times T).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> Load256(Half* p, float magic)
    {
        var h = Avx2.IsSupported ? Avx2.ConvertToVector256Int32((ushort*)p).AsUInt32()
            : Vector256.Create(Vector128.WidenLower(Vector128.Load((ushort*)p)), Vector128.WidenUpper(Vector128.Load((ushort*)p)));
        return Bits256(h, Vector256.Create(magic));
    }

    /// <summary>16 lanes at p as fp32 (times T); AVX-512F.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector512<float> Load512(Half* p, float magic)
    {
        var h = Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p));
        var f = (Vector512.ShiftLeft(h, 13) & Vector512.Create(0x0FFFE000u)).AsSingle() * Vector512.Create(magic);
        return (f.AsUInt32() | (Vector512.ShiftLeft(h, 16) & Vector512.Create(0x80000000u))).AsSingle();
    }

    /// <summary>4 lanes at p as fp32 (times T); portable.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector128<float> Load128(Half* p, float magic)
    {
        var h = Vector128.WidenLower(Vector128.CreateScalar(*(ulong*)p).AsUInt16());
        var f = (Vector128.ShiftLeft(h, 13) & Vector128.Create(0x0FFFE000u)).AsSingle() * Vector128.Create(magic);
        return (f.AsUInt32() | (Vector128.ShiftLeft(h, 16) & Vector128.Create(0x80000000u))).AsSingle();
    }
}
