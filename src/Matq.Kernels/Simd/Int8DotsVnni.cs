// Contract: the AVX-VNNI integer loops of GemvInt8Simd (256-bit vpdpbusd: per int32 lane, Σ of 4 u8 code bytes × 4 s8
// activations), one struct per width over the tile layout of Reference/PackedTile16. A 256-bit register holds 8 lanes
// (rows), so a tile runs as two halves (bytes 0..31 and 32..63 of every 64-byte sub-step) sharing each activation
// broadcast. Code fields are masked in place, never shifted down: pair p of a 2-bit byte is (v & 3·4^p) = 4^p·code and
// goes to accumulator p; the high nibble (v & 0xF0) = 16·code to its own accumulator; each accumulator's lanes are
// exact multiples of its scale, so the group dot is Σ (acc_p >> 2p) (arithmetic shifts, exact). 3-bit: a bitwise select
// of the 2-bit and 1-bit planes and one AND give whole codes scaled by 1, 4, 16 and 32 (see W3); no code is shifted.
// Four accumulators per half keep four independent vpdpbusd chains per half in flight.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Matq.Kernels.Simd.Int8Lanes256;

namespace Matq.Kernels.Simd;

internal static unsafe class Int8DotsVnni
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dp(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> x) => AvxVnni.MultiplyWideningAndAdd(acc, u, x);

    /// <summary>8 sub-steps of 64 bytes per chunk; sub-step s holds codes 4s..4s+3 of every lane.</summary>
    internal struct W8 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int c = 0; c < chunks; c++, p += 512, x += 32)
                for (int s = 0; s < 8; s += 4)
                {
                    byte* q = p + 64 * s;
                    var x0 = X(x + 4 * s);
                    a0 = Dp(a0, Avx.LoadVector256(q), x0);
                    b0 = Dp(b0, Avx.LoadVector256(q + 32), x0);
                    var x1 = X(x + 4 * s + 4);
                    a1 = Dp(a1, Avx.LoadVector256(q + 64), x1);
                    b1 = Dp(b1, Avx.LoadVector256(q + 96), x1);
                    var x2 = X(x + 4 * s + 8);
                    a2 = Dp(a2, Avx.LoadVector256(q + 128), x2);
                    b2 = Dp(b2, Avx.LoadVector256(q + 160), x2);
                    var x3 = X(x + 4 * s + 12);
                    a3 = Dp(a3, Avx.LoadVector256(q + 192), x3);
                    b3 = Dp(b3, Avx.LoadVector256(q + 224), x3);
                }
            Store(d, (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3));
        }
    }

    /// <summary>4 sub-steps per chunk; low nibbles codes 8s..8s+3, high nibbles 8s+4..8s+7.</summary>
    internal struct W4 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int c = 0; c < chunks; c++, p += 256, x += 32)
                for (int s = 0; s < 4; s += 2)
                {
                    byte* q = p + 64 * s;
                    var v0 = Avx.LoadVector256(q);
                    var v1 = Avx.LoadVector256(q + 32);
                    var x0 = X(x + 8 * s);
                    a0 = Dp(a0, v0 & B(0x0F), x0);
                    b0 = Dp(b0, v1 & B(0x0F), x0);
                    var x1 = X(x + 8 * s + 4);
                    a1 = Dp(a1, v0 & B(0xF0), x1);
                    b1 = Dp(b1, v1 & B(0xF0), x1);
                    v0 = Avx.LoadVector256(q + 64);
                    v1 = Avx.LoadVector256(q + 96);
                    var x2 = X(x + 8 * s + 8);
                    a2 = Dp(a2, v0 & B(0x0F), x2);
                    b2 = Dp(b2, v1 & B(0x0F), x2);
                    var x3 = X(x + 8 * s + 12);
                    a3 = Dp(a3, v0 & B(0xF0), x3);
                    b3 = Dp(b3, v1 & B(0xF0), x3);
                }
            Store(d, (a0 + a2) + Vector256.ShiftRightArithmetic(a1 + a3, 4), (b0 + b2) + Vector256.ShiftRightArithmetic(b1 + b3, 4));
        }
    }

    /// <summary>2 sub-steps per chunk; bit pair p holds codes 16s + 4p..16s + 4p + 3.</summary>
    internal struct W2 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int c = 0; c < chunks; c++, p += 128, x += 32)
                for (int s = 0; s < 2; s++)
                {
                    byte* q = p + 64 * s;
                    sbyte* xs = x + 16 * s;
                    var v0 = Avx.LoadVector256(q);
                    var v1 = Avx.LoadVector256(q + 32);
                    var x0 = X(xs);
                    a0 = Dp(a0, v0 & B(0x03), x0);
                    b0 = Dp(b0, v1 & B(0x03), x0);
                    var x1 = X(xs + 4);
                    a1 = Dp(a1, v0 & B(0x0C), x1);
                    b1 = Dp(b1, v1 & B(0x0C), x1);
                    var x2 = X(xs + 8);
                    a2 = Dp(a2, v0 & B(0x30), x2);
                    b2 = Dp(b2, v1 & B(0x30), x2);
                    var x3 = X(xs + 12);
                    a3 = Dp(a3, v0 & B(0xC0), x3);
                    b3 = Dp(b3, v1 & B(0xC0), x3);
                }
            Store(d, Sum2(a0, a1, a2, a3), Sum2(b0, b1, b2, b3));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> Sum2(Vector256<int> a0, Vector256<int> a1, Vector256<int> a2, Vector256<int> a3) =>
            (a0 + Vector256.ShiftRightArithmetic(a1, 2)) + (Vector256.ShiftRightArithmetic(a2, 4) + Vector256.ShiftRightArithmetic(a3, 6));
    }

    /// <summary>Chunk = 2-bit plane (2 sub-steps) + 1-bit plane (1 sub-step); quad q = 4s + p of sub-step s, pair p.</summary>
    internal struct W3 : IInt8Dots
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Dots(byte* p, sbyte* x, int chunks, int* d)
        {
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (int c = 0; c < chunks; c++, p += 192, x += 32)
            {
                Half(p, x, ref a0, ref a1, ref a2, ref a3);
                Half(p + 32, x, ref b0, ref b1, ref b2, ref b3);
            }
            Store(d, Sum3(a0, a1, a2, a3), Sum3(b0, b1, b2, b3));
        }

        // pair p of quads p and 4 + p → a_p at scale 1, 4, 16, 32 (pair 3 holds the top bits: 32·code ≤ 224)
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<int> Sum3(Vector256<int> a0, Vector256<int> a1, Vector256<int> a2, Vector256<int> a3) =>
            (a0 + Vector256.ShiftRightArithmetic(a1, 2)) + (Vector256.ShiftRightArithmetic(a2, 4) + Vector256.ShiftRightArithmetic(a3, 5));

        // One half: a select of the planes takes bits 0, 1, 4, 5 (n) or 2, 3, 6, 7 (m) from the 2-bit plane and the rest
        // from the 1-bit plane; one AND then leaves a whole scaled code: n & 0x07 = code (J = 2), m & 0x1C = 4·code
        // (J = 4), n & 0x70 = 16·code (J = 6), m & 0xE0 = 32·code (J = 5). Quads 4..7 take the 1-bit plane shifted right
        // by 1 (J = 3, 7) and left by 4 (J = 0, 1).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Half(byte* p, sbyte* x, ref Vector256<int> a0, ref Vector256<int> a1, ref Vector256<int> a2, ref Vector256<int> a3)
        {
            var h = Avx.LoadVector256(p + 128);
            var l = Avx.LoadVector256(p);
            var n = Vector256.ConditionalSelect(B(0x33), l, h);
            var m = Vector256.ConditionalSelect(B(0xCC), l, h);
            a0 = Dp(a0, n & B(0x07), X(x));
            a1 = Dp(a1, m & B(0x1C), X(x + 4));
            a2 = Dp(a2, n & B(0x70), X(x + 8));
            a3 = Dp(a3, m & B(0xE0), X(x + 12));
            l = Avx.LoadVector256(p + 64);
            n = Vector256.ConditionalSelect(B(0x33), l, Vector256.ShiftRightLogical(h.AsUInt16(), 1).AsByte());
            m = Vector256.ConditionalSelect(B(0xCC), l, Vector256.ShiftLeft(h.AsUInt16(), 4).AsByte());
            a0 = Dp(a0, n & B(0x07), X(x + 16));
            a1 = Dp(a1, m & B(0x1C), X(x + 20));
            a2 = Dp(a2, n & B(0x70), X(x + 24));
            a3 = Dp(a3, m & B(0xE0), X(x + 28));
        }
    }
}
