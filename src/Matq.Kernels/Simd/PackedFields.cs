// Contract: where code i (0..31) of a chunk lives in a tile lane (Reference/PackedTile16 defines it), as the fp32 kernels
// extract it: the sub-step, the bit offset inside the lane's uint32 and the mask; 3-bit codes combine their pair with
// their spare bit from sub-step 2 at bit 8·(i mod 4) + J[i/4] (PackedTile16.Code3). Used by the fp32 GEMV and the GEMM's tile decode.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Simd;

internal static unsafe class PackedFields
{
    /// <summary>Sub-step, lane bit offset and mask of code i for a width (3-bit: the low pair).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (int Sub, int Shift, uint Mask) Field(int bits, int i) => bits switch
    {
        8 => (i >> 2, 8 * (i & 3), 0xFFu),
        4 => (i >> 3, 8 * (i & 3) + 4 * ((i >> 2) & 1), 0xFu),
        _ => (i >> 4, 8 * (i & 3) + 2 * ((i >> 2) & 3), 3u),
    };

    /// <summary>Bit offset of the high bit of 3-bit code i inside its lane of sub-step 2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int HighShift(int i) => 8 * (i & 3) + PackedTile16.HighBit3[i >> 2];

    /// <summary>Code i of lanes h·8..h·8+7 of the chunk at p (h = half), as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Code256(byte* p, int bits, int i, int h)
    {
        var (sub, shift, mask) = Field(bits, i);
        var c = Vector256.ShiftRightLogical(Vector256.Load((uint*)(p + 64 * sub + 32 * h)), shift) & Vector256.Create(mask);
        if (bits == 3)
        {
            var b = Vector256.ShiftRightLogical(Vector256.Load((uint*)(p + 128 + 32 * h)), HighShift(i)) & Vector256.Create(1u);
            c = PackedTile16.TopPair3(i >> 2) ? (c << 1) | b : c | (b << 2);
        }
        return c.AsInt32();
    }

    /// <summary>Code i of lanes k·4..k·4+3 of the chunk at p (k = quarter), as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Code128(byte* p, int bits, int i, int k)
    {
        var (sub, shift, mask) = Field(bits, i);
        var c = Vector128.ShiftRightLogical(Vector128.Load((uint*)(p + 64 * sub + 16 * k)), shift) & Vector128.Create(mask);
        if (bits == 3)
        {
            var b = Vector128.ShiftRightLogical(Vector128.Load((uint*)(p + 128 + 16 * k)), HighShift(i)) & Vector128.Create(1u);
            c = PackedTile16.TopPair3(i >> 2) ? (c << 1) | b : c | (b << 2);
        }
        return c.AsInt32();
    }
}
