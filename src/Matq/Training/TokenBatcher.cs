// Training batches as a pure function of (seed, step): row r of step s is the window tokens[o, o+T+1) with
// o = hash(seed, s, r) mod (N − T − 1). No sampler state exists, so a resumed run sees exactly the same batches.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Training;

public sealed class TokenBatcher : IDisposable
{
    private readonly Tensor _tokens;   // [N] int64 on the training device
    private readonly Tensor _window;   // [T+1] int64: 0..T

    public TokenBatcher(ReadOnlySpan<int> tokens, int batchSize, int contextLength, long seed, Device device)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch size must be >= 1");
        if (contextLength < 1) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "context length must be >= 1");
        if (tokens.Length < contextLength + 2)
            throw new MatqException($"the training text has {tokens.Length} tokens, fewer than one window of {contextLength + 1}: use more text or a shorter context");
        var longs = new long[tokens.Length];
        for (int i = 0; i < longs.Length; i++) longs[i] = tokens[i];
        _tokens = tensor(longs, ScalarType.Int64).to(device);
        _window = arange(contextLength + 1, ScalarType.Int64).to(device);
        TokenCount = tokens.Length;
        BatchSize = batchSize;
        ContextLength = contextLength;
        Seed = seed;
    }

    public long TokenCount { get; }
    public int BatchSize { get; }
    public int ContextLength { get; }
    public long Seed { get; }

    /// <summary>Start offsets of the rows of <paramref name="step"/>, each in [0, N − T − 1).</summary>
    public long[] Offsets(long step)
    {
        long span = TokenCount - ContextLength - 1;
        var offsets = new long[BatchSize];
        for (int r = 0; r < BatchSize; r++)
            offsets[r] = (long)(Mix((ulong)Seed, (ulong)step, (ulong)r) % (ulong)span);
        return offsets;
    }

    /// <summary>Token windows [B, T+1] (int64, on the device): inputs are [:, :T], next-token targets [:, 1:].</summary>
    public Tensor Batch(long step)
    {
        using var scope = NewDisposeScope();
        var starts = tensor(Offsets(step), ScalarType.Int64).to(_tokens.device);   // [B]
        var index = starts.unsqueeze(1) + _window.unsqueeze(0);                    // [B, T+1]
        return _tokens.index_select(0, index.flatten()).view(BatchSize, ContextLength + 1).MoveToOuterDisposeScope();
    }

    // SplitMix64 over a combination of the three inputs: well mixed, platform-independent, stateless.
    private static ulong Mix(ulong seed, ulong step, ulong row)
    {
        ulong x = seed * 0x9E3779B97F4A7C15UL ^ (step + 1) * 0xBF58476D1CE4E5B9UL ^ (row + 1) * 0x94D049BB133111EBUL;
        for (int i = 0; i < 2; i++)
        {
            x += 0x9E3779B97F4A7C15UL;
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
            x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
            x ^= x >> 31;
        }
        return x;
    }

    public void Dispose()
    {
        _tokens.Dispose();
        _window.Dispose();
    }
}
