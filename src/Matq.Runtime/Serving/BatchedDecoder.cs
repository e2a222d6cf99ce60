// Contract: continuous batching for one packed precision. Sequences join between steps; a joining sequence is
// prefilled alone (its prompt is a GEMM already), then every step decodes one token for each active sequence with a
// single pass over the packed weights (PackedLlamaSession.DecodeBatch: the linears run as a GEMM of B rows, each row
// attends to its own KV cache). Sampling, stop ids, the context slide and the statistics follow PackedTextGenerator
// exactly, so a sequence gets the tokens it would get alone, up to the GEMM's summation order. One loop thread per
// decoder; it ends when no sequence has been active for a while, and the next Submit starts another.
using System.Diagnostics;
using Matq.Runtime.Generation;
using Matq.Runtime.Packed;

namespace Matq.Runtime.Serving;

public sealed class BatchedDecoder
{
    private sealed class Job(int[] prompt, GenerationOptions options, Func<int, bool> onToken, CancellationToken cancel)
    {
        public readonly int[] Prompt = prompt;
        public readonly GenerationOptions Options = options;
        public readonly Func<int, bool> OnToken = onToken;
        public readonly CancellationToken Cancel = cancel;
        public readonly TaskCompletionSource<PackedGenerationStats> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public PackedPrecision.SessionLease? Lease;
        public TokenSampler? Sampler;
        public List<int>? Ids;
        public int Produced, Context;
        public double PrefillSeconds;
        public Stopwatch Clock = new();
        public int Last;
    }

    private readonly PackedPrecision _precision;
    private readonly object _gate = new();
    private readonly Queue<Job> _incoming = new();
    private bool _running;

    /// <summary>The precision whose sessions this decoder runs.</summary>
    public PackedPrecision Precision => _precision;

    /// <summary>Most sequences decoded in one step (1..PackedLlamaSession.MaxBatch).</summary>
    public int MaxBatch { get; }

    /// <summary>Steps run and the rows they decoded, for reports (mean batch = rows / steps).</summary>
    public long Steps => Interlocked.Read(ref _steps);
    public long Rows => Interlocked.Read(ref _rows);
    /// <summary>Seconds spent inside the batched steps (DecodeBatch), for the pure decode rate rows ÷ seconds.</summary>
    public double StepSeconds => Interlocked.Read(ref _stepTicks) / (double)Stopwatch.Frequency;
    private long _steps, _rows, _stepTicks;

    public BatchedDecoder(PackedPrecision precision, int maxBatch)
    {
        _precision = precision ?? throw new ArgumentNullException(nameof(precision));
        if (maxBatch < 1 || maxBatch > PackedLlamaSession.MaxBatch)
            throw new MatqException($"--batch {maxBatch} is out of range: 1..{PackedLlamaSession.MaxBatch} sequences decoded together");
        MaxBatch = maxBatch;
    }

    /// <summary>Generates for <paramref name="prompt"/> as PackedTextGenerator.GenerateWhile does, sharing each decode step
    /// with the other sequences in flight. <paramref name="onToken"/> runs on the decoder's thread; returning false stops
    /// the sequence (the id is kept). The task ends with the sequence's statistics, or its exception.</summary>
    public Task<PackedGenerationStats> Submit(IReadOnlyList<int> prompt, GenerationOptions options, Func<int, bool> onToken, CancellationToken cancel = default) =>
        SubmitAll([prompt], options, onToken, cancel)[0];

    /// <summary>As <see cref="Submit"/> for several prompts at once: they are queued together, so the decoder starts them
    /// in the same step (up to MaxBatch) whatever the thread timing — what a benchmark of N concurrent sequences needs.</summary>
    public Task<PackedGenerationStats>[] SubmitAll(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, Func<int, bool> onToken,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(onToken);
        if (options.MaxNewTokens < 0) throw new MatqException($"--max-tokens {options.MaxNewTokens} is out of range: 0 or more");
        foreach (var prompt in prompts)
        {
            ArgumentNullException.ThrowIfNull(prompt);
            if (prompt.Count == 0) throw new MatqException("the prompt encodes to no tokens: give a non-empty --prompt");
        }
        var jobs = prompts.Select(p => new Job(p.ToArray(), options, onToken, cancel)).ToArray();
        lock (_gate)
        {
            foreach (var job in jobs) _incoming.Enqueue(job);
            if (!_running)
            {
                _running = true;
                new Thread(Loop) { IsBackground = true, Name = "matq batched decoder" }.Start();
            }
            Monitor.Pulse(_gate);
        }
        return jobs.Select(j => j.Done.Task).ToArray();
    }

    private void Loop()
    {
        var active = new List<Job>();
        var logits = new float[MaxBatch * (long)_precision.Model.Config.VocabSize];
        int vocab = _precision.Model.Config.VocabSize;
        while (true)
        {
            var joining = new List<Job>();
            lock (_gate)
            {
                if (active.Count == 0 && _incoming.Count == 0)
                {
                    Monitor.Wait(_gate, TimeSpan.FromSeconds(5));
                    if (_incoming.Count == 0) { _running = false; return; }
                }
                while (_incoming.Count > 0 && active.Count + joining.Count < MaxBatch) joining.Add(_incoming.Dequeue());
            }
            foreach (var job in joining)
                if (Guard(job, () => Start(job, logits, vocab))) active.Add(job);
            if (active.Count == 0) continue;

            // sequences whose next token would pass the context slide their window alone (a re-prefill), as GenerateWhile does
            var stepping = new List<Job>(active.Count);
            foreach (var job in active)
            {
                var session = job.Lease!.Session;
                if (session.Length + 1 > job.Context)
                {
                    if (!Guard(job, () =>
                    {
                        session.Reset();
                        session.Forward(job.Ids!.GetRange(job.Ids.Count - job.Context, job.Context).ToArray(), logits.AsSpan(0, vocab));
                        return Next(job, logits, 0, vocab);
                    })) job.Produced = -1;
                }
                else stepping.Add(job);
            }
            if (stepping.Count > 0)
            {
                var sessions = stepping.Select(j => j.Lease!.Session).ToArray();
                var ids = stepping.Select(j => j.Last).ToArray();
                bool ok = true;
                long t0 = Stopwatch.GetTimestamp();
                try { PackedLlamaSession.DecodeBatch(sessions, ids, logits.AsSpan(0, stepping.Count * vocab)); }
                catch (Exception e)
                {
                    ok = false;
                    foreach (var job in stepping) { Fail(job, e); job.Produced = -1; }
                }
                Interlocked.Add(ref _stepTicks, Stopwatch.GetTimestamp() - t0);
                Interlocked.Increment(ref _steps);
                Interlocked.Add(ref _rows, stepping.Count);
                if (ok)
                    for (int i = 0; i < stepping.Count; i++)
                    {
                        var job = stepping[i];
                        int at = i * vocab;
                        if (!Guard(job, () => Next(job, logits, at, vocab))) job.Produced = -1;
                    }
            }
            active.RemoveAll(j => j.Produced < 0);
        }
    }

    // Prefill and the first token; false when the sequence is already finished (or failed).
    private bool Start(Job job, float[] buffer, int vocab)
    {
        var logits = buffer.AsSpan(0, vocab);
        job.Lease = _precision.Rent();
        var session = job.Lease.Session;
        job.Context = Math.Min(job.Options.ContextLength, session.ContextLength);
        if (job.Prompt.Length > job.Context)
            throw new MatqException($"the prompt is {job.Prompt.Length} tokens, longer than the model's context of {job.Context} tokens; shorten --prompt");
        job.Sampler = new TokenSampler(job.Options.Sampling);
        job.Ids = new List<int>(job.Prompt);
        session.Reset();
        if (job.Options.MaxNewTokens == 0)
        {
            Complete(job, new PackedGenerationStats(job.Prompt.Length, 0, 0, 0));
            return false;
        }
        job.Clock.Restart();
        session.Forward(job.Prompt, logits);
        job.PrefillSeconds = job.Clock.Elapsed.TotalSeconds;
        job.Clock.Restart();
        return Next(job, buffer, 0, vocab);
    }

    // Samples the next id from the logits and hands it on; false when the sequence ends here.
    private bool Next(Job job, float[] buffer, int offset, int vocab)
    {
        var logits = buffer.AsSpan(offset, vocab);
        job.Cancel.ThrowIfCancellationRequested();
        int next = job.Sampler!.Next(logits);
        job.Ids!.Add(next);
        job.Produced++;
        job.Last = next;
        bool more = job.OnToken(next);
        if (!more || job.Produced >= job.Options.MaxNewTokens || job.Options.StopIds.Contains(next))
        {
            Complete(job, new PackedGenerationStats(job.Prompt.Length, job.PrefillSeconds, job.Produced - 1, job.Clock.Elapsed.TotalSeconds));
            return false;
        }
        return true;
    }

    // Runs a step of one job; a failure (its callback, cancellation, a bad prompt) ends that job alone. False when the job ended.
    private bool Guard(Job job, Func<bool> step)
    {
        try { return step(); }
        catch (Exception e)
        {
            Fail(job, e);
            return false;
        }
    }

    private static void Complete(Job job, PackedGenerationStats stats)
    {
        job.Lease?.Dispose();
        job.Lease = null;
        job.Done.TrySetResult(stats);
    }

    private static void Fail(Job job, Exception e)
    {
        job.Lease?.Dispose();
        job.Lease = null;
        if (e is OperationCanceledException oce) job.Done.TrySetCanceled(oce.CancellationToken);
        else job.Done.TrySetException(e);
    }
}
