// Contract: EfQAT importance and selection: importance of output channel c of a layer = mean |W[c, ...]|; returns,
// per layer, the sorted int64 indices of the channels whose weights are trained (empty = layer frozen).
// Counts: ceil(fraction·n) for fraction > 0 (so 5% of a small layer still trains one channel), 0 for fraction 0.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.EfQat;

public static class ChannelSelector
{
    /// <summary>Mean |W| per output channel: w [out, ...] → float[out].</summary>
    public static float[] Importance(Tensor w)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return w.detach().reshape(w.shape[0], -1).abs().mean(new long[] { 1 }).to(ScalarType.Float32).cpu().data<float>().ToArray();
    }

    /// <summary>Selected channels per layer for the given importances (one array per layer, in layer order).</summary>
    public static int[][] Select(IReadOnlyList<float[]> importance, EfQatMode mode, double fraction)
    {
        if (!(fraction >= 0 && fraction <= 1)) throw new MatqException($"fraction = {fraction} is out of range: allowed 0..1");
        int layers = importance.Count;
        var result = new int[layers][];
        switch (mode)
        {
            case EfQatMode.ChannelPerLayer:
                for (int l = 0; l < layers; l++)
                    result[l] = TopK(importance[l], Count(fraction, importance[l].Length));
                break;
            case EfQatMode.ChannelPerNetwork:
            {
                var all = new List<(float Imp, int Layer, int Channel)>();
                for (int l = 0; l < layers; l++)
                    for (int c = 0; c < importance[l].Length; c++) all.Add((importance[l][c], l, c));
                int k = Count(fraction, all.Count);
                var chosen = all.OrderByDescending(e => e.Imp).ThenBy(e => e.Layer).ThenBy(e => e.Channel).Take(k).ToList();
                for (int l = 0; l < layers; l++)
                    result[l] = chosen.Where(e => e.Layer == l).Select(e => e.Channel).OrderBy(c => c).ToArray();
                break;
            }
            case EfQatMode.LayerPerNetwork:
            {
                float[] layerImp = importance.Select(i => i.Length == 0 ? 0f : i.Average()).ToArray();
                var top = TopK(layerImp, Count(fraction, layers)).ToHashSet();
                for (int l = 0; l < layers; l++)
                    result[l] = top.Contains(l) ? Enumerable.Range(0, importance[l].Length).ToArray() : [];
                break;
            }
            default:
                throw new MatqException($"mode = {(int)mode} is not an EfQAT mode");
        }
        return result;
    }

    private static int Count(double fraction, int n) => fraction <= 0 ? 0 : Math.Min(n, (int)Math.Ceiling(fraction * n - 1e-9));

    /// <summary>Indices of the k largest values (ties: lower index first), sorted ascending.</summary>
    private static int[] TopK(float[] v, int k) =>
        Enumerable.Range(0, v.Length).OrderByDescending(i => v[i]).ThenBy(i => i).Take(k).OrderBy(i => i).ToArray();
}
