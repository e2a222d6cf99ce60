namespace Matq.Kernels.Tests;

/// <summary>A seed from a test case's parameters that is the same in every process (HashCode.Combine is randomized per
/// process, so data drawn from it changed from run to run and a failure could not be reproduced).</summary>
internal static class TestSeed
{
    public static int Of(params int[] parts)
    {
        uint h = 2166136261;   // FNV-1a over the parts' bytes
        foreach (int part in parts)
            for (int b = 0; b < 4; b++) h = (h ^ (byte)(part >> (8 * b))) * 16777619;
        return (int)(h & 0x7fffffff);
    }
}
