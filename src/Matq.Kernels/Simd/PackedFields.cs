// Contract: a width's view of the packed layout as the vector kernels use it (IPackedWidth, one struct per width in
// GemvPackedSimd; Reference/PackedTile16 defines the layout), and the field extraction those structs share: code i
// (0..31) of a chunk is (lane >> shift) & mask of the uint32 lanes of one 64-byte sub-step; 3-bit codes combine their
// pair with their spare bit from sub-step 2 at bit 8·(i mod 4) + J[i/4] (PackedTile16.Code3). Used by the fp32 GEMV,
// the GEMM's tile decode and the portable integer loop.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Simd;

/// <summary>A packed width as the vector kernels see it; Packed/PackedWidths names one per row.</summary>
internal unsafe interface IPackedWidth
{
    static abstract int Bits { get; }
    /// <summary>Bytes of one chunk of one tile (16 rows × 32 codes).</summary>
    static abstract int ChunkBytes { get; }

    /// <summary>The fp32 chunk loop (AVX2+FMA): rows 0..7 into a*, rows 8..15 into c*, 4 chains each.</summary>
    static abstract void Chunk(byte* p, float* x, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
        ref Vector256<float> c0, ref Vector256<float> c1, ref Vector256<float> c2, ref Vector256<float> c3);

    /// <summary>Code i of lanes h·8..h·8+7 of the chunk at p (h = half), as int32.</summary>
    static abstract Vector256<int> Code256(byte* p, int i, int h);

    /// <summary>Code i of lanes k·4..k·4+3 of the chunk at p (k = quarter), as int32.</summary>
    static abstract Vector128<int> Code128(byte* p, int i, int k);
}

internal static unsafe class PackedFields
{
    /// <summary>(lane >> shift) &amp; mask of lanes h·8..h·8+7 of sub-step <paramref name="sub"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> Field256(byte* p, int sub, int shift, uint mask, int h) =>
        Vector256.ShiftRightLogical(Vector256.Load((uint*)(p + 64 * sub + 32 * h)), shift) & Vector256.Create(mask);

    /// <summary>(lane >> shift) &amp; mask of lanes k·4..k·4+3 of sub-step <paramref name="sub"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<uint> Field128(byte* p, int sub, int shift, uint mask, int k) =>
        Vector128.ShiftRightLogical(Vector128.Load((uint*)(p + 64 * sub + 16 * k)), shift) & Vector128.Create(mask);

    /// <summary>Sub-step and lane bit offset of the bit pair of code i in a 2-bit plane (r = 2, and the low plane of r = 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (int Sub, int Shift) Pair(int i) => (i >> 4, 8 * (i & 3) + 2 * ((i >> 2) & 3));

    /// <summary>2-bit code i of lanes h·8..h·8+7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Code2x256(byte* p, int i, int h)
    {
        var (sub, shift) = Pair(i);
        return Field256(p, sub, shift, 3u, h).AsInt32();
    }

    /// <summary>2-bit code i of lanes k·4..k·4+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Code2x128(byte* p, int i, int k)
    {
        var (sub, shift) = Pair(i);
        return Field128(p, sub, shift, 3u, k).AsInt32();
    }

    /// <summary>Bit offset of the high bit of 3-bit code i inside its lane of sub-step 2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HighShift(int i) => 8 * (i & 3) + PackedTile16.HighBit3[i >> 2];

    /// <summary>3-bit code i of lanes h·8..h·8+7: its pair and its spare bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Code3x256(byte* p, int i, int h)
    {
        var (sub, shift) = Pair(i);
        var c = Field256(p, sub, shift, 3u, h);
        var b = Vector256.ShiftRightLogical(Vector256.Load((uint*)(p + 128 + 32 * h)), HighShift(i)) & Vector256.Create(1u);
        c = PackedTile16.TopPair3(i >> 2) ? (c << 1) | b : c | (b << 2);
        return c.AsInt32();
    }

    /// <summary>3-bit code i of lanes k·4..k·4+3: its pair and its spare bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Code3x128(byte* p, int i, int k)
    {
        var (sub, shift) = Pair(i);
        var c = Field128(p, sub, shift, 3u, k);
        var b = Vector128.ShiftRightLogical(Vector128.Load((uint*)(p + 128 + 16 * k)), HighShift(i)) & Vector128.Create(1u);
        c = PackedTile16.TopPair3(i >> 2) ? (c << 1) | b : c | (b << 2);
        return c.AsInt32();
    }
}
