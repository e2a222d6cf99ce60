// Contract: the 256-bit helpers the AVX2 and AVX-VNNI integer loops share: an activation quad broadcast to every int32
// lane, a byte mask broadcast, and the store of a tile's two 8-lane halves (rows 0..7, 8..15) of int32 dots.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8Lanes256
{
    /// <summary>The 4 s8 activations at <paramref name="x"/>, repeated in every int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> X(sbyte* x) => Vector256.Create(*(int*)x).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> B(byte v) => Vector256.Create(v);

    /// <summary>Lanes 0..7 to d[0..7] and lanes 8..15 to d[8..15].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Store(int* d, Vector256<int> lo, Vector256<int> hi)
    {
        lo.Store(d);
        hi.Store(d + 8);
    }
}
