// Contract: how the packed kernels split a call over threads. Items (row tiles) are cut into contiguous ranges; the number
// of threads is capped by the caller's maxThreads (−1 = all cores) and by the work, so that every thread gets at least
// MinWorkPerThread weights — small matrices (decode of a small model) run on the calling thread, where waking workers
// would cost more than the GEMV. Ranges run on the persistent WorkerPool (no per-call task allocation).
namespace Matq.Kernels.Simd;

public static class KernelThreads
{
    /// <summary>Weights per thread below which a call is not split further.</summary>
    public const long MinWorkPerThread = 1L << 16;

    /// <summary>Threads a call over <paramref name="items"/> items of <paramref name="workPerItem"/> weights would use.</summary>
    public static int ThreadsFor(int items, int maxThreads, long workPerItem)
    {
        int threads = maxThreads < 0 ? Environment.ProcessorCount : maxThreads;
        long byWork = Math.Max(1, (long)items * workPerItem / MinWorkPerThread);
        return (int)Math.Max(1, Math.Min(Math.Min(threads, byWork), items));
    }

    /// <summary>Runs body(i0, i1) over ranges covering [0, items).</summary>
    public static void For(int items, int maxThreads, long workPerItem, Action<int, int> body)
    {
        int threads = ThreadsFor(items, maxThreads, workPerItem);
        if (threads <= 1) { body(0, items); return; }
        // a few ranges per thread, so that a thread slowed by other load does not hold the call back
        int parts = Math.Min(items, threads * 4);
        WorkerPool.Run(parts, threads, p => body((int)((long)p * items / parts), (int)((long)(p + 1) * items / parts)));
    }
}
