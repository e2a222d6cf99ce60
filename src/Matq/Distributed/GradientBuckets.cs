// Contract: data-parallel gradient averaging in buckets. Consecutive gradients are packed into fp32 buckets of at most
// BucketBytes (a tensor larger than that is a bucket of its own), each bucket is all-reduced once and divided by the world
// size, and the values are copied back: a few large collectives instead of one per tensor. The sum of each element is
// the same whatever the bucketing (collectives are element-wise), so the result does not depend on the bucket size.
// Bucketing runs after backward: TorchSharp 0.107 exposes no per-tensor gradient hooks, so overlapping a bucket's
// all-reduce with the rest of the backward pass (as PyTorch's DDP does) is not possible from here.
using static TorchSharp.torch;

namespace Matq.Distributed;

public static class GradientBuckets
{
    public const long DefaultBucketBytes = 25L << 20;

    /// <summary>Indices of consecutive tensors per bucket, for tensors of <paramref name="numels"/> fp32 elements.</summary>
    public static List<List<int>> Plan(IReadOnlyList<long> numels, long bucketBytes = DefaultBucketBytes)
    {
        if (bucketBytes < 4) throw new ArgumentOutOfRangeException(nameof(bucketBytes), bucketBytes, "a bucket holds at least one fp32 value");
        var buckets = new List<List<int>>();
        long used = 0;
        for (int i = 0; i < numels.Count; i++)
        {
            long bytes = 4 * numels[i];
            if (buckets.Count == 0 || used + bytes > bucketBytes && used > 0) { buckets.Add(new List<int>()); used = 0; }
            buckets[^1].Add(i);
            used += bytes;
        }
        return buckets;
    }

    /// <summary>Every rank's <paramref name="grads"/> (fp32, one device) become their mean over ranks, in place.</summary>
    public static void AllReduceMean(ProcessGroup group, IReadOnlyList<Tensor> grads, long bucketBytes = DefaultBucketBytes)
    {
        if (group.WorldSize == 1 || grads.Count == 0) return;
        foreach (var bucket in Plan(grads.Select(g => g.numel()).ToList(), bucketBytes))
        {
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                var flat = bucket.Count == 1 && grads[bucket[0]].is_contiguous()
                    ? grads[bucket[0]].view(-1)
                    : cat(bucket.Select(i => grads[i].reshape(-1)).ToList(), 0);
                group.AllReduceMean(flat);
                if (bucket.Count == 1 && grads[bucket[0]].is_contiguous()) continue;   // reduced in place
                long offset = 0;
                foreach (var i in bucket)
                {
                    long n = grads[i].numel();
                    grads[i].copy_(flat.narrow(0, offset, n).view(grads[i].shape));
                    offset += n;
                }
            }
        }
    }
}
