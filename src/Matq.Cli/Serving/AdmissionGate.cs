// Contract: bounds the work of `matq serve`: at most MaxConcurrent requests generate at once, at most MaxQueue more wait
// (first come, first served) for a slot, and anything beyond that is refused at once (the server answers 429). A waiter
// whose client goes away leaves the queue.
namespace Matq.Cli.Serving;

public sealed class AdmissionGate
{
    private readonly SemaphoreSlim _slots;
    private int _waiting;

    public AdmissionGate(int maxConcurrent, int maxQueue)
    {
        if (maxConcurrent < 1) throw new MatqException($"--max-concurrency {maxConcurrent} is out of range: 1 or more");
        if (maxQueue < 0) throw new MatqException($"--max-queue {maxQueue} is out of range: 0 (refuse when busy) or more");
        MaxConcurrent = maxConcurrent;
        MaxQueue = maxQueue;
        _slots = new SemaphoreSlim(maxConcurrent, maxConcurrent);
    }

    public int MaxConcurrent { get; }
    public int MaxQueue { get; }
    /// <summary>Requests holding a slot now.</summary>
    public int Active => MaxConcurrent - _slots.CurrentCount;
    /// <summary>Requests waiting for a slot now.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>A slot (dispose it to free the slot), waiting in the queue when all are taken; null when the queue is full too.</summary>
    public async Task<IDisposable?> TryEnterAsync(CancellationToken cancel = default)
    {
        // SemaphoreSlim hands a released slot to the oldest waiter, so this fast path cannot overtake the queue.
        if (_slots.Wait(0)) return new Slot(_slots);
        if (Interlocked.Increment(ref _waiting) > MaxQueue)
        {
            Interlocked.Decrement(ref _waiting);
            return null;
        }
        try
        {
            await _slots.WaitAsync(cancel).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
        return new Slot(_slots);
    }

    private sealed class Slot(SemaphoreSlim slots) : IDisposable
    {
        private int _released;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) slots.Release();
        }
    }
}
