// Sliding-window perplexity of any ids [B,T] int64 → logits [B,T,V] module over one token stream. Token i ≥ 1 is
// scored exactly once, by the first window that predicts it with at least Context − Stride + 1 tokens of context.
// EvaluatePacked scores the same windows through the packed CPU runtime (a PackedLlamaSession: r-bit kernels, no
// TorchSharp model), one window at a time: the unscored prefix runs without the head, the scored tail with all logits.

namespace Matq.Evaluation;

public sealed record PerplexityOptions
{
    public int Context { get; init; } = 256;
    /// <summary>Window step; each window after the first scores only its last Stride tokens.</summary>
    public int Stride { get; init; } = 128;
    public int Batch { get; init; } = 8;

    public void Validate()
    {
        if (Context < 2) throw new MatqException($"--context {Context} is out of range: at least 2");
        if (Stride < 1 || Stride > Context) throw new MatqException($"--stride {Stride} is out of range: 1..{Context} (the context)");
        if (Batch < 1) throw new MatqException($"--batch {Batch} is out of range: at least 1");
    }
}

/// <summary>Totals over the scored tokens; Bytes is the UTF-8 length of the evaluated text.</summary>
public sealed record PerplexityResult(double TotalNll, long Tokens, long Bytes, int Windows)
{
    /// <summary>Mean negative log-likelihood in nats per scored token.</summary>
    public double MeanNll => TotalNll / Tokens;
    public double Perplexity => Math.Exp(MeanNll);
    /// <summary>Total NLL in bits per UTF-8 byte: comparable across tokenizers.</summary>
    public double BitsPerByte => TotalNll / (Math.Log(2) * Bytes);
}

/// <summary>
/// One model input: tokens [Begin, Begin + Length), which predict stream positions Begin+1 … Begin+Length;
/// of those, positions ≥ ScoreFrom are scored.
/// </summary>
public readonly record struct ScoringWindow(int Begin, int Length, int ScoreFrom);

public static class Perplexity
{
    /// <summary>
    /// The windows for a stream of <paramref name="tokens"/>: inputs of length L = min(C, N−1) beginning at 0, S, 2S, …,
    /// the last one moved back to predict exactly up to the stream's end (so all windows batch without padding).
    /// The first window scores positions 1…L; every later one the positions after its predecessor's last, i.e. its
    /// last S predictions, each with at least L − S + 1 tokens of context.
    /// </summary>
    public static IReadOnlyList<ScoringWindow> Windows(int tokens, int context, int stride)
    {
        var list = new List<ScoringWindow>();
        if (tokens < 2) return list;
        int length = Math.Min(context, tokens - 1);
        int next = 1;                                   // the first stream position not yet scored
        for (int begin = 0; next < tokens; begin += stride)
        {
            int b = Math.Min(begin, tokens - 1 - length);
            list.Add(new ScoringWindow(b, length, next));
            next = b + length + 1;
        }
        return list;
    }

    /// <summary>
    /// Scores <paramref name="tokens"/> with <paramref name="model"/> (put in eval mode; its device is <paramref name="device"/>).
    /// <paramref name="utf8Bytes"/> is the UTF-8 length of the text these tokens encode. progress(done, total) counts windows.
    /// </summary>
    public static PerplexityResult Evaluate(nn.Module<Tensor, Tensor> model, int[] tokens, long utf8Bytes, PerplexityOptions options,
        Device device, Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        options.Validate();
        if (tokens.Length < 2) throw new MatqException($"the text has {tokens.Length} token(s): at least 2 are needed to score one");
        if (utf8Bytes < 1) throw new ArgumentOutOfRangeException(nameof(utf8Bytes), utf8Bytes, "the text must have at least one byte");
        var windows = Windows(tokens.Length, options.Context, options.Stride);
        model.eval();
        double total = 0;
        long count = 0;
        using (no_grad())
            for (int first = 0; first < windows.Count; first += options.Batch)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                int rows = Math.Min(options.Batch, windows.Count - first);
                int len = windows[first].Length;   // all windows share one length (see Windows)
                // Only logits from the earliest scored offset on are needed: window offset j predicts stream position Begin+j+1.
                int from = int.MaxValue;
                for (int r = 0; r < rows; r++) from = Math.Min(from, windows[first + r].ScoreFrom - windows[first + r].Begin - 1);
                int n = len - from;                // predicted positions per row
                var ids = new long[rows * len];
                var targets = new long[rows * n];
                var mask = new float[rows * n];
                for (int r = 0; r < rows; r++)
                {
                    var w = windows[first + r];
                    for (int j = 0; j < len; j++) ids[r * len + j] = tokens[w.Begin + j];
                    for (int j = 0; j < n; j++)
                    {
                        int pos = w.Begin + from + j + 1;               // stream position predicted by offset from+j
                        targets[r * n + j] = tokens[pos];
                        if (pos >= w.ScoreFrom) { mask[r * n + j] = 1; count++; }
                    }
                }
                var input = tensor(ids, [rows, len], ScalarType.Int64).to(device);
                var logits = model.call(input).narrow(1, from, n);                           // [rows, n, V]
                var nll = nn.functional.cross_entropy(logits.flatten(0, 1).to_type(ScalarType.Float32),
                    tensor(targets, ScalarType.Int64).to(device), reduction: nn.Reduction.None); // [rows·n]
                // Summed in fp64 so long streams do not lose the small per-token terms.
                total += (nll.to_type(ScalarType.Float64) * tensor(mask).to(device).to_type(ScalarType.Float64)).sum().item<double>();
                progress?.Invoke(Math.Min(first + rows, windows.Count), windows.Count);
            }
        return new PerplexityResult(total, count, utf8Bytes, windows.Count);
    }

    /// <summary>
    /// <see cref="Evaluate"/> through the packed runtime: the same windows and the same scored positions; each token's
    /// NLL is log Σ exp(logits) − logit[target] from the fp32 logits (in fp64), summed in fp64. Batch is ignored (the
    /// session runs one window at a time, in chunks of its MaxBatch tokens).
    /// </summary>
    public static PerplexityResult EvaluatePacked(Matq.Runtime.Packed.PackedLlamaSession session, int[] tokens, long utf8Bytes, PerplexityOptions options,
        Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (tokens.Length < 2) throw new MatqException($"the text has {tokens.Length} token(s): at least 2 are needed to score one");
        if (utf8Bytes < 1) throw new ArgumentOutOfRangeException(nameof(utf8Bytes), utf8Bytes, "the text must have at least one byte");
        var windows = Windows(tokens.Length, options.Context, options.Stride);
        int vocab = session.Model.Config.VocabSize;
        double total = 0;
        long count = 0;
        var logits = new float[(long)windows[0].Length * vocab];   // reused: [scored offsets, V]
        for (int wi = 0; wi < windows.Count; wi++)
        {
            cancel.ThrowIfCancellationRequested();
            var w = windows[wi];
            int from = w.ScoreFrom - w.Begin - 1;          // window offset j predicts stream position Begin + j + 1
            var ids = tokens.AsSpan(w.Begin, w.Length);
            session.Reset();
            if (from > 0) session.Forward(ids[..from]);
            session.Forward(ids[from..], logits.AsSpan(0, (int)((long)(w.Length - from) * vocab)), allLogits: true);
            for (int j = from; j < w.Length; j++)
            {
                var row = logits.AsSpan((int)((long)(j - from) * vocab), vocab);
                float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                double sum = 0;
                foreach (float v in row) sum += Math.Exp(v - (double)max);
                total += Math.Log(sum) + max - row[tokens[w.Begin + j + 1]];
                count++;
            }
            progress?.Invoke(wi + 1, windows.Count);
        }
        return new PerplexityResult(total, count, utf8Bytes, windows.Count);
    }
}
