// The kernels' worker pool and thread split: every part runs exactly once whatever the thread count, calls from several
// threads at once and nested calls all complete, an exception in a part reaches the caller, and small calls stay on one
// thread while large ones split up to the cap.
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Simd;

public sealed class WorkerPoolTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 3)]
    [InlineData(64, 4)]
    [InlineData(1000, 16)]
    public void EveryPartRunsExactlyOnce(int parts, int threads)
    {
        for (int round = 0; round < 20; round++)
        {
            var hits = new int[parts];
            WorkerPool.Run(parts, threads, p => Interlocked.Increment(ref hits[p]));
            Assert.All(hits, h => Assert.Equal(1, h));
        }
    }

    [Fact]
    public void ConcurrentAndNestedCallsComplete()
    {
        var total = new long[4];
        Parallel.For(0, 4, c =>
        {
            for (int round = 0; round < 50; round++)
                WorkerPool.Run(8, 4, p => WorkerPool.Run(3, 4, q => Interlocked.Add(ref total[c], 1)));
        });
        Assert.All(total, t => Assert.Equal(50 * 8 * 3, t));
    }

    [Fact]
    public void AnExceptionInAPartReachesTheCaller()
    {
        var e = Assert.Throws<AggregateException>(() => WorkerPool.Run(16, 4, p => { if (p == 11) throw new InvalidOperationException("part 11"); }));
        Assert.Contains("part 11", e.InnerException!.Message);
        var hits = new int[5];
        WorkerPool.Run(5, 4, p => hits[p]++);   // the pool still works afterwards
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void SmallCallsStayOnOneThreadAndLargeOnesSplitUpToTheCap()
    {
        Assert.Equal(1, KernelThreads.ThreadsFor(16, 16, 16 * 256));             // a 256×256 GEMV: 65536 weights
        Assert.Equal(2, KernelThreads.ThreadsFor(24, 16, 16 * 384));             // 384×384: 147456 weights
        Assert.Equal(16, KernelThreads.ThreadsFor(3142, 16, 16 * 384));          // a 50257×384 head
        Assert.Equal(2, KernelThreads.ThreadsFor(3142, 2, 16 * 384));
        Assert.Equal(3, KernelThreads.ThreadsFor(3, 16, 1 << 20));               // never more threads than items
        var seen = new int[100];
        KernelThreads.For(100, 8, 1 << 20, (a, b) => { for (int i = a; i < b; i++) seen[i]++; });
        Assert.All(seen, s => Assert.Equal(1, s));
    }
}
