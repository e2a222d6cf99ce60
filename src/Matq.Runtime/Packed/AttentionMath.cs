// Contract: the two inner loops of the packed runtime's attention, over one head: Scores (sc[s] = q·K[s] for the n cached
// rows of K [n, D]) and WeightedSum (out = Σ_s p[s]·V[s] for V [n, D]). For D a multiple of 8 up to 256 they run in
// Vector256 registers — four key rows per pass sharing each q load; output blocks of 32 values in registers over all
// rows — else through TensorPrimitives. Float sums in another order than torch: within float rounding.
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Matq.Runtime.Packed;

internal static class AttentionMath
{
    public static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, int n, Span<float> sc)
    {
        int d = q.Length;
        if (!Vector256.IsHardwareAccelerated || d % 8 != 0 || d > 256)
        {
            for (int s = 0; s < n; s++) sc[s] = TensorPrimitives.Dot(q, keys.Slice(s * d, d));
            return;
        }
        ref float q0 = ref MemoryMarshal.GetReference(q);
        ref float k0 = ref MemoryMarshal.GetReference(keys);
        int r = 0;
        for (; r + 4 <= n; r += 4)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            nuint b = (nuint)(r * d);
            for (int j = 0; j < d; j += 8)
            {
                var qv = Vector256.LoadUnsafe(ref q0, (nuint)j);
                a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref k0, b + (nuint)j), qv, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref k0, b + (nuint)(d + j)), qv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref k0, b + (nuint)(2 * d + j)), qv, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref k0, b + (nuint)(3 * d + j)), qv, a3);
            }
            sc[r] = Vector256.Sum(a0);
            sc[r + 1] = Vector256.Sum(a1);
            sc[r + 2] = Vector256.Sum(a2);
            sc[r + 3] = Vector256.Sum(a3);
        }
        for (; r < n; r++)
        {
            var a = Vector256<float>.Zero;
            for (int j = 0; j < d; j += 8)
                a = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref k0, (nuint)(r * d + j)), Vector256.LoadUnsafe(ref q0, (nuint)j), a);
            sc[r] = Vector256.Sum(a);
        }
    }

    public static void WeightedSum(ReadOnlySpan<float> p, ReadOnlySpan<float> v, Span<float> output)
    {
        int d = output.Length;
        if (!Vector256.IsHardwareAccelerated || d % 8 != 0 || d > 256)
        {
            output.Clear();
            for (int s = 0; s < p.Length; s++) TensorPrimitives.MultiplyAdd(v.Slice(s * d, d), p[s], output, output);
            return;
        }
        ref float v0 = ref MemoryMarshal.GetReference(v);
        ref float o0 = ref MemoryMarshal.GetReference(output);
        for (int j = 0; j < d; j += 32)   // 32 outputs (four registers) per pass over the rows; 8, 16 or 24 at the end
        {
            int w = Math.Min(32, d - j);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int s = 0; s < p.Length; s++)
            {
                var ps = Vector256.Create(p[s]);
                nuint b = (nuint)(s * d + j);
                a0 = Vector256.FusedMultiplyAdd(ps, Vector256.LoadUnsafe(ref v0, b), a0);
                if (w > 8) a1 = Vector256.FusedMultiplyAdd(ps, Vector256.LoadUnsafe(ref v0, b + 8), a1);
                if (w > 16) a2 = Vector256.FusedMultiplyAdd(ps, Vector256.LoadUnsafe(ref v0, b + 16), a2);
                if (w > 24) a3 = Vector256.FusedMultiplyAdd(ps, Vector256.LoadUnsafe(ref v0, b + 24), a3);
            }
            a0.StoreUnsafe(ref o0, (nuint)j);
            if (w > 8) a1.StoreUnsafe(ref o0, (nuint)j + 8);
            if (w > 16) a2.StoreUnsafe(ref o0, (nuint)j + 16);
            if (w > 24) a3.StoreUnsafe(ref o0, (nuint)j + 24);
        }
    }
}
