// Contract: a persistent pool for the kernels' fork/join calls (decode runs ~50 GEMVs per token, and Parallel.For's
// per-call cost is a large share of a small GEMV). Run(parts, threads, body) runs body(0..parts−1) on the calling thread
// plus up to threads − 1 workers and returns when every part is done. A call is a Job with its own counters, so a worker
// still finishing an old job can never take parts of a new one; a job admits at most threads − 1 workers (Slots).
// Workers spin for SpinMicroseconds after a job (the next GEMV of a decode step follows within microseconds), then
// sleep on their event. One call at a time: a call made inside a part, or while another call runs, runs inline.
using System.Diagnostics;

namespace Matq.Kernels.Simd;

public static class WorkerPool
{
    /// <summary>How long an idle worker spins for the next job before sleeping.</summary>
    public const int SpinMicroseconds = 100;

    private static readonly object Gate = new();
    private static readonly List<Worker> Workers = [];
    private static Job? _job;
    [ThreadStatic] private static bool _inside;

    private sealed class Job(Action<int> body, int parts, int slots)
    {
        public readonly Action<int> Body = body;
        public readonly int Parts = parts;
        public int Next, Pending = parts, Slots = slots;
        public Exception? Error;
    }

    public static void Run(int parts, int threads, Action<int> body)
    {
        if (parts <= 0) return;
        if (threads <= 1 || parts == 1 || _inside || !Monitor.TryEnter(Gate))
        {
            for (int p = 0; p < parts; p++) body(p);
            return;
        }
        try
        {
            int helpers = Math.Min(threads, parts) - 1;
            while (Workers.Count < helpers) Workers.Add(new Worker());
            var job = new Job(body, parts, helpers);
            Volatile.Write(ref _job, job);
            for (int i = 0; i < helpers; i++) Workers[i].Wake();
            _inside = true;
            try { Drain(job); }
            finally { _inside = false; }
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Pending) > 0) spin.SpinOnce(sleep1Threshold: -1);
            if (job.Error is not null) throw new AggregateException(job.Error);
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    private static void Drain(Job job)
    {
        while (true)
        {
            int p = Interlocked.Increment(ref job.Next) - 1;
            if (p >= job.Parts) return;
            try { job.Body(p); }
            catch (Exception e) { Interlocked.CompareExchange(ref job.Error, e, null); }
            finally { Interlocked.Decrement(ref job.Pending); }
        }
    }

    private sealed class Worker
    {
        private readonly ManualResetEventSlim _wake = new(false, 0);

        public Worker() => new Thread(Loop) { IsBackground = true, Name = "matq-kernels" }.Start();

        public void Wake() => _wake.Set();

        private void Loop()
        {
            _inside = true;
            Job? last = null;
            var spin = new SpinWait();   // spins, then yields to other threads (an oversubscribed machine keeps its cores for work)
            long idleSince = Stopwatch.GetTimestamp();
            while (true)
            {
                var job = Volatile.Read(ref _job);
                if (job is not null && !ReferenceEquals(job, last))
                {
                    last = job;
                    if (Interlocked.Decrement(ref job.Slots) >= 0) Drain(job);
                    idleSince = Stopwatch.GetTimestamp();
                    spin.Reset();
                    continue;
                }
                if (Stopwatch.GetElapsedTime(idleSince).TotalMicroseconds < SpinMicroseconds) { spin.SpinOnce(sleep1Threshold: -1); continue; }
                _wake.Wait();
                _wake.Reset();
                idleSince = Stopwatch.GetTimestamp();
                spin.Reset();
            }
        }
    }
}
