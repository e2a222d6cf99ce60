// Contract: the AVX2 integer loops of GemvInt8Simd (no VNNI): the arithmetic of Int8DotsAvx512 (vpmaddubsw of code fields
// into int16, vpmaddwd into int32, the same bounds) on 256-bit halves of each 64-byte sub-step (lanes 0..7, bytes
// 0..31; lanes 8..15, bytes 32..63), the two halves sharing each activation broadcast.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Matq.Kernels.Simd.Int8Lanes256;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8DotsAvx2
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Mul(Vector256<byte> u, Vector256<sbyte> x) => Avx2.MultiplyAddAdjacent(u, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Fold(Vector256<short> s, short by) => Avx2.MultiplyAddAdjacent(s, Vector256.Create(by));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Srl(Vector256<byte> v, [ConstantExpected] byte n) => Avx2.ShiftRightLogical(v.AsUInt16(), n).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Sll(Vector256<byte> v, [ConstantExpected] byte n) => Avx2.ShiftLeftLogical(v.AsUInt16(), n).AsByte();

    internal struct W8 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a = default, b = default;
            for (int c = 0; c < chunks; c++, p += 512, x += 32)
            {
                Vector256<short> alo = default, ahi = default, blo = default, bhi = default;
                for (int s = 0; s < 8; s++)
                {
                    var v0 = Avx.LoadVector256(p + 64 * s);
                    var v1 = Avx.LoadVector256(p + 64 * s + 32);
                    var xv = X(x + 4 * s);
                    alo += Mul(v0 & B(0x0F), xv);
                    ahi += Mul(Srl(v0, 4) & B(0x0F), xv);
                    blo += Mul(v1 & B(0x0F), xv);
                    bhi += Mul(Srl(v1, 4) & B(0x0F), xv);
                }
                a += Fold(alo, 1) + Fold(ahi, 16);
                b += Fold(blo, 1) + Fold(bhi, 16);
            }
            Store(d, a, b);
        }
    }

    internal struct W4 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a = default, b = default;
            for (int c = 0; c < chunks; c++, p += 256, x += 32)
            {
                Vector256<short> ta = default, tb = default;
                for (int s = 0; s < 4; s++)
                {
                    var v0 = Avx.LoadVector256(p + 64 * s);
                    var v1 = Avx.LoadVector256(p + 64 * s + 32);
                    var x0 = X(x + 8 * s);
                    var x1 = X(x + 8 * s + 4);
                    ta += Mul(v0 & B(0x0F), x0) + Mul(Srl(v0, 4) & B(0x0F), x1);
                    tb += Mul(v1 & B(0x0F), x0) + Mul(Srl(v1, 4) & B(0x0F), x1);
                }
                a += Fold(ta, 1);
                b += Fold(tb, 1);
            }
            Store(d, a, b);
        }
    }

    internal struct W2 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a = default, b = default;
            for (int c = 0; c < chunks; c++, p += 128, x += 32)
            {
                Vector256<short> a1 = default, a4 = default, b1 = default, b4 = default;
                for (int s = 0; s < 2; s++)
                {
                    var v0 = Avx.LoadVector256(p + 64 * s);
                    var v1 = Avx.LoadVector256(p + 64 * s + 32);
                    var w0 = Srl(v0, 4);
                    var w1 = Srl(v1, 4);
                    sbyte* xs = x + 16 * s;
                    var x0 = X(xs);
                    a1 += Mul(v0 & B(0x03), x0);
                    b1 += Mul(v1 & B(0x03), x0);
                    var x1 = X(xs + 4);
                    a4 += Mul(v0 & B(0x0C), x1);
                    b4 += Mul(v1 & B(0x0C), x1);
                    var x2 = X(xs + 8);
                    a1 += Mul(w0 & B(0x03), x2);
                    b1 += Mul(w1 & B(0x03), x2);
                    var x3 = X(xs + 12);
                    a4 += Mul(w0 & B(0x0C), x3);
                    b4 += Mul(w1 & B(0x0C), x3);
                }
                a += Fold(Avx2.ShiftLeftLogical(a1, 2) + a4, 1);
                b += Fold(Avx2.ShiftLeftLogical(b1, 2) + b4, 1);
            }
            Store(d, Avx2.ShiftRightArithmetic(a, 2), Avx2.ShiftRightArithmetic(b, 2));
        }
    }

    internal struct W3 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a = default, b = default;
            for (int c = 0; c < chunks; c++, p += 192, x += 32)
            {
                a += Half(p, x);
                b += Half(p + 32, x);
            }
            Store(d, Avx2.ShiftRightArithmetic(a, 4), Avx2.ShiftRightArithmetic(b, 4));
        }

        // 16·D of one half over one chunk (the arithmetic of Int8DotsAvx512.W3)
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> Half(byte* p, sbyte* x)
        {
            var h = Avx.LoadVector256(p + 128);
            var l = Avx.LoadVector256(p);
            var n = Vector256.ConditionalSelect(B(0x33), l, h);
            var m = Vector256.ConditionalSelect(B(0xCC), l, h);
            var s1 = Mul(n & B(0x07), X(x)) + Mul(Srl(m, 5) & B(0x07), X(x + 12));
            var s4 = Mul(m & B(0x1C), X(x + 4));
            var f = Fold(Mul(n & B(0x70), X(x + 8)), 1);
            l = Avx.LoadVector256(p + 64);
            n = Vector256.ConditionalSelect(B(0x33), l, Srl(h, 1));
            m = Vector256.ConditionalSelect(B(0xCC), l, Sll(h, 4));
            s1 += Mul(n & B(0x07), X(x + 16)) + Mul(Srl(m, 5) & B(0x07), X(x + 28));
            s4 += Mul(m & B(0x1C), X(x + 20));
            f += Fold(Mul(n & B(0x70), X(x + 24)), 1);
            return Fold(s1, 16) + Fold(s4, 4) + f;
        }
    }
}
