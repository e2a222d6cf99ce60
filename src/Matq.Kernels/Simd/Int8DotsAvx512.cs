// Contract: the AVX-512BW integer loops of GemvInt8Simd: one 512-bit register holds a whole 64-byte sub-step (16 lanes =
// the tile's 16 rows). vpmaddubsw multiplies u8 code fields by the 4 broadcast s8 activations and adds byte pairs into
// int16 (saturating, so every bound below stays under 32767); int16 partial sums are added while they fit, then
// vpmaddwd against 1 (or 16, for high nibbles) folds each lane's two int16 into its int32. Bounds per width:
//   8-bit: codes split into nibbles (≤ 15): pair ≤ 2·15·127 = 3810; one chunk (8 sub-steps) per nibble ≤ 30480.
//   4-bit: nibbles in two int16 sums of ≤ 4·3810 each per chunk; their sum ≤ 30480.
//   2-bit: pairs 0, 1 in place (v & 3, scale 1; v & 0x0C, scale 4), pairs 2, 3 the same after one 16-bit shift by 4;
//          per chunk Σ scale-1 ≤ 4·762, Σ scale-4 ≤ 4·3048; folded as vpmaddwd(4·S1 + S4, 1) ≤ 24384, D = acc >> 2.
//   3-bit: the selects of AVX-VNNI (Int8DotsVnni.W3): codes at scale 1 (quads 0, 3, 4, 7; pair-3 codes shifted down
//          from 32·code), 4 (≤ 28) and 16 (≤ 112); per chunk Σ scale-1 ≤ 4·1778, Σ scale-4 ≤ 2·7112, each scale-16
//          product (≤ 28448) folded at once; all into one ×16 accumulator.
// The 3-bit select of the two planes is one vpternlogd. Dots512 leaves the 16 lanes' D in a register for the 512-bit
// epilogue of GemvInt8Simd.Tiles512 (no store and reload per group).
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8DotsAvx512
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> X(sbyte* x) => Vector512.Create(*(int*)x).AsSByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> B(byte v) => Vector512.Create(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Mul(Vector512<byte> u, Vector512<sbyte> x) => Avx512BW.MultiplyAddAdjacent(u, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Fold(Vector512<short> s, short by) => Avx512BW.MultiplyAddAdjacent(s, Vector512.Create(by));

    // bits of l where the mask is set, of h elsewhere (one vpternlogd)
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Select(Vector512<byte> mask, Vector512<byte> l, Vector512<byte> h) => Vector512.ConditionalSelect(mask, l, h);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Srl(Vector512<byte> v, [ConstantExpected] byte n) => Avx512BW.ShiftRightLogical(v.AsUInt16(), n).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Sll(Vector512<byte> v, [ConstantExpected] byte n) => Avx512BW.ShiftLeftLogical(v.AsUInt16(), n).AsByte();

    internal struct W8 : IInt8Dots512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Dots512(p, x, chunks).Store(d);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Dots512(byte* p, sbyte* x, int chunks)
        {
            Vector512<int> acc = default, acc2 = default;
            for (int c = 0; c < chunks; c++, p += 512, x += 32)
            {
                Vector512<short> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
                for (int s = 0; s < 8; s += 2)
                {
                    var v = Vector512.Load(p + 64 * s);
                    var xv = X(x + 4 * s);
                    lo0 += Mul(v & B(0x0F), xv);
                    hi0 += Mul(Srl(v, 4) & B(0x0F), xv);
                    v = Vector512.Load(p + 64 * s + 64);
                    xv = X(x + 4 * s + 4);
                    lo1 += Mul(v & B(0x0F), xv);
                    hi1 += Mul(Srl(v, 4) & B(0x0F), xv);
                }
                acc += Fold(lo0 + lo1, 1);
                acc2 += Fold(hi0 + hi1, 16);
            }
            return acc + acc2;
        }
    }

    internal struct W4 : IInt8Dots512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Dots512(p, x, chunks).Store(d);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Dots512(byte* p, sbyte* x, int chunks)
        {
            Vector512<int> acc = default, acc2 = default;
            for (int c = 0; c < chunks; c++, p += 256, x += 32)
            {
                Vector512<short> t0 = default, t1 = default;
                for (int s = 0; s < 4; s++)
                {
                    var v = Vector512.Load(p + 64 * s);
                    t0 += Mul(v & B(0x0F), X(x + 8 * s));
                    t1 += Mul(Srl(v, 4) & B(0x0F), X(x + 8 * s + 4));
                }
                if ((c & 1) == 0) acc += Fold(t0 + t1, 1);
                else acc2 += Fold(t0 + t1, 1);
            }
            return acc + acc2;
        }
    }

    internal struct W2 : IInt8Dots512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Dots512(p, x, chunks).Store(d);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Dots512(byte* p, sbyte* x, int chunks)
        {
            Vector512<int> acc = default, acc2 = default;
            for (int c = 0; c < chunks; c++, p += 128, x += 32)
            {
                Vector512<short> s1 = default, s4 = default;
                for (int s = 0; s < 2; s++)
                {
                    var v = Vector512.Load(p + 64 * s);
                    var w = Srl(v, 4);
                    sbyte* xs = x + 16 * s;
                    s1 += Mul(v & B(0x03), X(xs));
                    s4 += Mul(v & B(0x0C), X(xs + 4));
                    s1 += Mul(w & B(0x03), X(xs + 8));
                    s4 += Mul(w & B(0x0C), X(xs + 12));
                }
                var f = Fold(Avx512BW.ShiftLeftLogical(s1, 2) + s4, 1);
                if ((c & 1) == 0) acc += f;
                else acc2 += f;
            }
            return Avx512F.ShiftRightArithmetic(acc + acc2, 2);
        }
    }

    internal struct W3 : IInt8Dots512
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d) => Dots512(p, x, chunks).Store(d);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> Dots512(byte* p, sbyte* x, int chunks)
        {
            Vector512<int> acc = default, acc16 = default;
            for (int c = 0; c < chunks; c++, p += 192, x += 32)
            {
                // the selects and masks of Int8DotsVnni.W3; 32·code (pair 3) is shifted down to code for vpmaddubsw
                var h = Vector512.Load(p + 128);
                var l = Vector512.Load(p);
                var n = Select(B(0x33), l, h);
                var m = Select(B(0xCC), l, h);
                var s1 = Mul(n & B(0x07), X(x)) + Mul(Srl(m, 5) & B(0x07), X(x + 12));    // quads 0, 3: scale 1
                var s4 = Mul(m & B(0x1C), X(x + 4));                                      // quad 1: scale 4
                var p2 = Mul(n & B(0x70), X(x + 8));                                      // quad 2: scale 16
                l = Vector512.Load(p + 64);
                n = Select(B(0x33), l, Srl(h, 1));
                m = Select(B(0xCC), l, Sll(h, 4));
                s1 += Mul(n & B(0x07), X(x + 16)) + Mul(Srl(m, 5) & B(0x07), X(x + 28));  // quads 4, 7
                s4 += Mul(m & B(0x1C), X(x + 20));                                        // quad 5
                var p6 = Mul(n & B(0x70), X(x + 24));                                     // quad 6
                acc += Fold(s1, 16) + Fold(s4, 4);
                acc16 += Fold(p2, 1) + Fold(p6, 1);
            }
            return Avx512F.ShiftRightArithmetic(acc + acc16, 4);
        }
    }
}
