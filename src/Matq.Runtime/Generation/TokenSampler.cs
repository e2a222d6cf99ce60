// Picks the next token from one row of logits [V]: greedy (temperature 0: argmax, lowest id on ties) or
// temperature + top-k + top-p (nucleus) sampling from a seeded generator. Runs on the host in fp64, so it is
// device-independent. Top-p keeps the shortest run of the top-k candidates (most likely first) whose probability
// reaches p; p = 1 keeps all k, and then the draw is exactly the plain top-k draw.
// GenerationOptions: how many tokens to make, the context length, the sampling and the stop ids (both engines).
namespace Matq.Runtime.Generation;

public sealed record SamplingOptions
{
    /// <summary>0 = greedy; otherwise logits are divided by it before the softmax.</summary>
    public double Temperature { get; init; } = 0.8;
    /// <summary>Keep only the K most likely tokens; 0 = all.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Nucleus: keep the most likely candidates until their probability reaches TopP; 1 = no cut.</summary>
    public double TopP { get; init; } = 1.0;
    public int Seed { get; init; } = 1234;

    public void Validate()
    {
        if (Temperature < 0 || double.IsNaN(Temperature) || double.IsInfinity(Temperature))
            throw new MatqException($"--temperature {Temperature} is out of range: 0 (greedy) or a positive number");
        if (TopK < 0) throw new MatqException($"--top-k {TopK} is out of range: 0 (no limit) or more");
        if (!(TopP > 0 && TopP <= 1)) throw new MatqException($"--top-p {TopP} is out of range: more than 0, at most 1");
    }
}

public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;

    public TokenSampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);   // seeded System.Random: a fixed sequence for a fixed seed
    }

    public int Next(ReadOnlySpan<float> logits)
    {
        if (logits.Length == 0) throw new ArgumentException("empty logits");
        if (_options.Temperature == 0) return ArgMax(logits);

        // Top-k: ids sorted by logit, descending, ties by id, so the candidate set is deterministic.
        var ids = new int[logits.Length];
        for (int i = 0; i < ids.Length; i++) ids[i] = i;
        var values = logits.ToArray();
        Array.Sort(ids, (a, b) => values[b] != values[a] ? values[b].CompareTo(values[a]) : a.CompareTo(b));
        int k = _options.TopK == 0 ? ids.Length : Math.Min(_options.TopK, ids.Length);

        // Softmax over the kept logits / T, shifted by the max for stability.
        double max = values[ids[0]];
        var weights = new double[k];
        double sum = 0;
        for (int i = 0; i < k; i++) { weights[i] = Math.Exp((values[ids[i]] - max) / _options.Temperature); sum += weights[i]; }
        if (_options.TopP < 1)
        {
            // shortest prefix (candidates sorted by probability, descending) whose mass reaches p·sum; at least one
            double target = _options.TopP * sum, mass = 0;
            int kept = 0;
            while (kept < k && mass < target) mass += weights[kept++];
            k = Math.Max(1, kept);
            sum = mass;
        }
        double u = _random.NextDouble() * sum;
        for (int i = 0; i < k; i++)
        {
            u -= weights[i];
            if (u < 0) return ids[i];
        }
        return ids[k - 1];
    }

    /// <summary>The lowest id of the largest logit (NaNs never win unless logits[0] is one; +0 and −0 tie).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        // vectorized for the usual case (no NaN, a nonzero maximum): the first index holding the largest value
        if (logits.IsEmpty || float.IsNaN(logits[0])) return 0;
        int idx = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
        float m = logits[idx];
        if (!float.IsNaN(m) && m != 0) return logits.IndexOf(m);
        return ArgMaxScalar(logits);
    }

    /// <summary>The definition ArgMax follows: a strict-greater scan from id 0.</summary>
    private static int ArgMaxScalar(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}

public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    /// <summary>The model's maximum sequence length; longer prompts keep only their last tokens.</summary>
    public int ContextLength { get; init; } = 256;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Generation stops after emitting one of these ids (e.g. end-of-text); it is included in the output.</summary>
    public IReadOnlyCollection<int> StopIds { get; init; } = Array.Empty<int>();
}
