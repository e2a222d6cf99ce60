// Seeded calibration set from a token stream: N non-overlapping windows of L tokens.
// Same tokens + N + L + seed → the same windows on every machine (System.Random with a seed is a fixed algorithm).
namespace Matq.Data;

public static class CalibrationSampler
{
    /// <summary>
    /// Picks <paramref name="count"/> windows of <paramref name="length"/> tokens: a seeded offset in [0, M mod L]
    /// aligns floor(M/L) disjoint chunks, and a seeded partial Fisher–Yates picks N distinct chunks, returned in
    /// draw order. Disjoint windows need M ≥ N·L, which is exactly the error condition.
    /// </summary>
    /// <returns>N arrays of L token ids.</returns>
    public static int[][] Sample(ReadOnlySpan<int> tokens, int count, int length, int seed)
    {
        if (count < 1) throw new MatqException($"calibration sample count is {count}: use at least 1");
        if (length < 1) throw new MatqException($"calibration sequence length is {length}: use at least 1");
        long needed = (long)count * length;
        if (tokens.Length < needed)
            throw new MatqException(
                $"calibration needs {count}×{length} = {needed} tokens but the split has only {tokens.Length}: lower the sample count or sequence length, or use a larger split");

        var rng = new Random(seed);
        int chunks = tokens.Length / length;
        int offset = rng.Next(tokens.Length - chunks * length + 1);
        var order = new int[chunks];
        for (int i = 0; i < chunks; i++) order[i] = i;

        var result = new int[count][];
        for (int i = 0; i < count; i++)
        {
            int j = i + rng.Next(chunks - i);
            (order[i], order[j]) = (order[j], order[i]);
            result[i] = tokens.Slice(offset + order[i] * length, length).ToArray();
        }
        return result;
    }
}
