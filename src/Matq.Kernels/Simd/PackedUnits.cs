// Contract: SIMD extraction of the codes of one 32-code block of the packed layout (Reference/PackedBlock32 defines it):
// Units gives the four 8-code units (codes 8k..8k+7 in the low 8 bytes of u_k), Widen256/Widen128 zero-extend a unit to
// int32 lanes. Shared by the packed GEMV and GEMM kernels.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Matq.Kernels.Simd;

internal static unsafe class PackedUnits
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector128<uint>, Vector128<uint>) Widen8(Vector128<byte> u)
    {
        var s = Vector128.WidenLower(u);
        return (Vector128.WidenLower(s), Vector128.WidenUpper(s));
    }

    /// <summary>Extracts the four 8-code units of a block (low 8 bytes of each vector; r = 3 gives the low two bits)
    /// and widens unit k to int32 lanes (r = 3 adds bit 2 from the high-bit plane at p[8 + k]).</summary>
    internal interface IUnits
    {
        static abstract void Units(byte* p, out Vector128<byte> u0, out Vector128<byte> u1, out Vector128<byte> u2, out Vector128<byte> u3);
        static abstract Vector256<int> Widen256(Vector128<byte> u, byte* p, int k);
        static abstract (Vector128<uint> Lo, Vector128<uint> Hi) Widen128(Vector128<byte> u, byte* p, int k);
    }

    internal struct Unit8 : IUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Units(byte* p, out Vector128<byte> u0, out Vector128<byte> u1, out Vector128<byte> u2, out Vector128<byte> u3)
        {
            var a = Vector128.Load(p);
            var b = Vector128.Load(p + 16);
            u0 = a; u1 = Vector128.Shuffle(a.AsUInt64(), Vector128.Create(1UL, 0UL)).AsByte();
            u2 = b; u3 = Vector128.Shuffle(b.AsUInt64(), Vector128.Create(1UL, 0UL)).AsByte();
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Widen256(Vector128<byte> u, byte* p, int k) => Avx2.ConvertToVector256Int32(p + 8 * k);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector128<uint>, Vector128<uint>) Widen128(Vector128<byte> u, byte* p, int k) => Widen8(u);
    }

    internal struct Unit4 : IUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Units(byte* p, out Vector128<byte> u0, out Vector128<byte> u1, out Vector128<byte> u2, out Vector128<byte> u3)
        {
            var v = Vector128.Load(p);
            var m = Vector128.Create((byte)0x0F);
            var lo = v & m;
            var hi = Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & m;
            u0 = lo; u1 = Vector128.Shuffle(lo.AsUInt64(), Vector128.Create(1UL, 0UL)).AsByte();
            u2 = hi; u3 = Vector128.Shuffle(hi.AsUInt64(), Vector128.Create(1UL, 0UL)).AsByte();
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Widen256(Vector128<byte> u, byte* p, int k) => Avx2.ConvertToVector256Int32(u);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector128<uint>, Vector128<uint>) Widen128(Vector128<byte> u, byte* p, int k) => Widen8(u);
    }

    internal struct Unit2 : IUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Units(byte* p, out Vector128<byte> u0, out Vector128<byte> u1, out Vector128<byte> u2, out Vector128<byte> u3)
        {
            var v = Vector128.CreateScalar(Unsafe.ReadUnaligned<ulong>(p)).AsUInt16();
            var m = Vector128.Create((byte)3);
            u0 = v.AsByte() & m;
            u1 = Vector128.ShiftRightLogical(v, 2).AsByte() & m;
            u2 = Vector128.ShiftRightLogical(v, 4).AsByte() & m;
            u3 = Vector128.ShiftRightLogical(v, 6).AsByte() & m;
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Widen256(Vector128<byte> u, byte* p, int k) => Avx2.ConvertToVector256Int32(u);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector128<uint>, Vector128<uint>) Widen128(Vector128<byte> u, byte* p, int k) => Widen8(u);
    }

    internal struct Unit3 : IUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Units(byte* p, out Vector128<byte> u0, out Vector128<byte> u1, out Vector128<byte> u2, out Vector128<byte> u3)
        {
            Unit2.Units(p, out u0, out u1, out u2, out u3);
            // High-bit plane: byte p[8+k] expands through a 256-entry table to 8 bytes of 0 or 4 (bit j → byte j).
            fixed (ulong* t = HighBitTable)
            {
                u0 |= Vector128.CreateScalar(t[p[8]]).AsByte();
                u1 |= Vector128.CreateScalar(t[p[9]]).AsByte();
                u2 |= Vector128.CreateScalar(t[p[10]]).AsByte();
                u3 |= Vector128.CreateScalar(t[p[11]]).AsByte();
            }
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Widen256(Vector128<byte> u, byte* p, int k) => Avx2.ConvertToVector256Int32(u);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector128<uint>, Vector128<uint>) Widen128(Vector128<byte> u, byte* p, int k) => Widen8(u);
    }

    /// <summary>Entry h: byte j = 4 when bit j of h is set (2 KiB, stays in L1).</summary>
    internal static readonly ulong[] HighBitTable = BuildHighBitTable();

    private static ulong[] BuildHighBitTable()
    {
        var t = new ulong[256];
        for (int h = 0; h < 256; h++)
            for (int j = 0; j < 8; j++)
                if ((h >> j & 1) != 0) t[h] |= 4UL << (8 * j);
        return t;
    }
}
