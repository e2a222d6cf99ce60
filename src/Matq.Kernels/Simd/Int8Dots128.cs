// Contract: the portable integer loop of GemvInt8Simd (Vector128, any ISA): per 16-byte quarter of a 64-byte sub-step
// (lanes 4k..4k+3 = 4 rows), each code field is shifted down and masked in its uint32 lane (shift 8b + field offset for
// lane byte b), multiplied by its sign-extended activation broadcast as int32 and added (|code·q| ≤ 255·127; exact).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Matq.Kernels.Reference;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8Dots128
{
    internal struct W8 : IInt8Dots { public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Run(8, p, x, chunks, d); }
    internal struct W4 : IInt8Dots { public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Run(4, p, x, chunks, d); }
    internal struct W3 : IInt8Dots { public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Run(3, p, x, chunks, d); }
    internal struct W2 : IInt8Dots { public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Run(2, p, x, chunks, d); }

    private static void Run(int bits, byte* p, sbyte* x, int chunks, int* d)
    {
        Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default;
        int cb = PackedTile16.ChunkBytes(bits);
        for (int c = 0; c < chunks; c++, p += cb, x += 32)
            for (int i = 0; i < 32; i++)   // code i of every lane
            {
                var xv = Vector128.Create((int)x[i]);
                a0 += PackedFields.Code128(p, bits, i, 0) * xv;
                a1 += PackedFields.Code128(p, bits, i, 1) * xv;
                a2 += PackedFields.Code128(p, bits, i, 2) * xv;
                a3 += PackedFields.Code128(p, bits, i, 3) * xv;
            }
        a0.Store(d);
        a1.Store(d + 4);
        a2.Store(d + 8);
        a3.Store(d + 12);
    }
}
