// Contract: the portable integer loop of GemvInt8Simd (Vector128, any ISA), one loop for every width: per 16-byte
// quarter of a chunk (lanes 4k..4k+3 = 4 rows), code i of each lane comes from its width's field extraction
// (IPackedWidth.Code128), is multiplied by its sign-extended activation broadcast as int32 and added (|code·q| ≤ 255·127;
// exact). Every row of the width table gets this path through Of<TW>.
using System.Runtime.Intrinsics;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8Dots128
{
    internal struct Of<TW> : IInt8Dots where TW : struct, IPackedWidth
    {
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int c = 0; c < chunks; c++, p += TW.ChunkBytes, x += 32)
                for (int i = 0; i < 32; i++)   // code i of every lane
                {
                    var xv = Vector128.Create((int)x[i]);
                    a0 += TW.Code128(p, i, 0) * xv;
                    a1 += TW.Code128(p, i, 1) * xv;
                    a2 += TW.Code128(p, i, 2) * xv;
                    a3 += TW.Code128(p, i, 3) * xv;
                }
            a0.Store(d);
            a1.Store(d + 4);
            a2.Store(d + 8);
            a3.Store(d + 12);
        }
    }
}
