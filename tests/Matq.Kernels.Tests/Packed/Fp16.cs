// Contract: the rounding the packed layout applies to a group parameter (Packed/PackedGroupParams: fp16 times a per-tensor
// power of two), for values that land in fp16's normal range there — so tests can state exact expected values.
namespace Matq.Kernels.Tests.Packed;

internal static class Fp16
{
    /// <summary>v rounded to 11 significant bits (round half to even), as a normal fp16 scaled by a power of two.</summary>
    public static float Round(float v)
    {
        if (v == 0) return 0;
        int e = Math.ILogB(v);
        return MathF.ScaleB((float)(Half)MathF.ScaleB(v, -e), e);
    }
}
