// Contract: builds Mix'n'Match plans for an artifact's quantized layers: uniform (every layer at r), pyramid (more bits
// in the middle decoder blocks, as MatQuant's paper found best) and budget (greedy by measured sensitivity), the latter
// two under a parameter-weighted average-bits budget, using only the allowed bit levels.
//
// Notation: layers ℓ with n_ℓ parameters, level set L = {l_1 < … < l_m} ⊆ 1..c, bits b_ℓ ∈ L,
//   avg(b) = Σ n_ℓ b_ℓ / Σ n_ℓ  must stay ≤ B (the budget); every plan starts from b_ℓ = l_1 (B < l_1 is refused).
// Pyramid: blocks (decoder index i of L blocks; lm_head counts as the last) are ranked by |i − (L−1)/2| (middle first);
//   rounds over that ranking raise a whole block one level when the budget allows, until a round raises nothing. A
//   block is only ever raised to a level its more central neighbours already hold, so middle ≥ outer.
// Budget: sensitivity s_ℓ(l) ≥ 0 is the loss increase when only ℓ drops from the top level to l (s_ℓ(l_m) = 0);
//   assuming additivity, greedily apply the single-level raise with the largest (s_ℓ(cur) − s_ℓ(next)) / (n_ℓ·Δbits)
//   that fits the budget, until none fits.
using Matq.Formats.Artifact;

namespace Matq.Runtime.Plans;

/// <summary>A quantized layer as the strategies see it: HF module name, decoder block (lm_head: after the last), parameters.</summary>
public sealed record PlanLayer(string Name, int Block, long Parameters)
{
    public static IReadOnlyList<PlanLayer> From(MatqArtifact artifact)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var layers = artifact.Quantized.Select(q => (Name: q.Name[..^7], q)).ToList();
        int maxBlock = layers.Select(l => BlockOf(l.Name)).DefaultIfEmpty(-1).Max();
        return layers.Select(l => new PlanLayer(l.Name, BlockOf(l.Name) is var b && b >= 0 ? b : maxBlock + 1,
            (long)l.q.OutFeatures * l.q.InFeatures)).ToArray();
    }

    private static int BlockOf(string name)
    {
        const string prefix = "model.layers.";
        int dot = name.IndexOf('.', Math.Min(prefix.Length, name.Length));
        return name.StartsWith(prefix, StringComparison.Ordinal) && dot > 0 && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), out var i) ? i : -1;
    }
}

public static class PlanStrategies
{
    public static readonly IReadOnlyList<string> Names = ["uniform", "pyramid", "budget"];

    /// <summary>Every layer at <paramref name="bits"/>.</summary>
    public static Dictionary<string, int> Uniform(IReadOnlyList<PlanLayer> layers, int bits) =>
        layers.ToDictionary(l => l.Name, _ => bits, StringComparer.Ordinal);

    /// <summary>The pyramid of the header under budget <paramref name="avgBits"/>.</summary>
    public static Dictionary<string, int> Pyramid(IReadOnlyList<PlanLayer> layers, double avgBits, IReadOnlyList<int> levels)
    {
        var lv = CheckLevels(levels, avgBits);
        var level = layers.ToDictionary(l => l.Name, _ => 0, StringComparer.Ordinal);
        var blocks = layers.GroupBy(l => l.Block).Select(g => g.ToArray()).ToList();
        int count = blocks.Count == 0 ? 0 : layers.Max(l => l.Block) + 1;
        double centre = (count - 1) / 2.0;
        var ranked = blocks.OrderBy(b => Math.Abs(b[0].Block - centre)).ThenBy(b => b[0].Block).ToList();
        double total = layers.Sum(l => (double)l.Parameters), used = layers.Sum(l => (double)l.Parameters * lv[0]);
        for (bool raised = true; raised;)
        {
            raised = false;
            foreach (var block in ranked)
            {
                int at = level[block[0].Name];
                if (at + 1 >= lv.Length) continue;
                double extra = block.Sum(l => (double)l.Parameters) * (lv[at + 1] - lv[at]);
                if ((used + extra) / total > avgBits + 1e-12) continue;
                foreach (var l in block) level[l.Name] = at + 1;
                used += extra;
                raised = true;
            }
        }
        return level.ToDictionary(kv => kv.Key, kv => lv[kv.Value], StringComparer.Ordinal);
    }

    /// <summary>The greedy budget allocation of the header; <paramref name="sensitivity"/>(layer, bits) ≥ 0 for every level.</summary>
    public static Dictionary<string, int> Budget(IReadOnlyList<PlanLayer> layers, double avgBits, IReadOnlyList<int> levels,
        Func<string, int, double> sensitivity)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        var lv = CheckLevels(levels, avgBits);
        var level = layers.ToDictionary(l => l.Name, _ => 0, StringComparer.Ordinal);
        double total = layers.Sum(l => (double)l.Parameters), used = layers.Sum(l => (double)l.Parameters * lv[0]);
        double S(string name, int i) => i == lv.Length - 1 ? 0 : Math.Max(0, sensitivity(name, lv[i]));
        while (true)
        {
            PlanLayer? best = null;
            double bestRatio = double.NegativeInfinity;
            foreach (var l in layers)
            {
                int at = level[l.Name];
                if (at + 1 >= lv.Length) continue;
                double cost = (double)l.Parameters * (lv[at + 1] - lv[at]);
                if ((used + cost) / total > avgBits + 1e-12) continue;
                double ratio = (S(l.Name, at) - S(l.Name, at + 1)) / cost;
                if (ratio > bestRatio) { bestRatio = ratio; best = l; }
            }
            if (best is null) break;
            int from = level[best.Name];
            used += (double)best.Parameters * (lv[from + 1] - lv[from]);
            level[best.Name] = from + 1;
        }
        return level.ToDictionary(kv => kv.Key, kv => lv[kv.Value], StringComparer.Ordinal);
    }

    /// <summary>Σ n_ℓ b_ℓ / Σ n_ℓ.</summary>
    public static double AverageBits(IReadOnlyList<PlanLayer> layers, IReadOnlyDictionary<string, int> bits) =>
        layers.Sum(l => (double)l.Parameters * bits[l.Name]) / layers.Sum(l => (double)l.Parameters);

    private static int[] CheckLevels(IReadOnlyList<int> levels, double avgBits)
    {
        if (levels is null || levels.Count == 0) throw new MatqException("plan levels are empty: give the bit-widths a layer may take, e.g. 2,4,8");
        var lv = levels.Distinct().OrderBy(b => b).ToArray();
        if (lv[0] < 1 || lv[^1] > 8) throw new MatqException($"plan levels {string.Join(",", levels)}: each must be in 1..8");
        if (!(avgBits >= lv[0])) throw new MatqException($"--avg-bits {avgBits} is below the lowest level {lv[0]}: no plan fits");
        return lv;
    }
}
