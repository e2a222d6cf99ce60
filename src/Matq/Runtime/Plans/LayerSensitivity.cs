// Contract: measures each quantized layer's sensitivity s_ℓ(l) = mean-token KL(p_top ‖ p_ℓ→l) on calibration ids: the
// artifact is served with every layer at the top level, then only layer ℓ is re-sliced to l (and restored).
using Matq.Formats.Artifact;
using Matq.Loading;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Runtime.Plans;

public static class LayerSensitivity
{
    /// <summary>(module name, bits) → KL in nats/token, for every quantized layer and every level below the top one.
    /// <paramref name="ids"/> [B, T] int64 calibration windows.</summary>
    public static Dictionary<(string Layer, int Bits), double> Measure(MatqArtifact artifact, Tensor ids, IReadOnlyList<int> levels,
        bool extraPrecision = false, Device? device = null, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        device ??= CPU;
        var lv = levels.Distinct().OrderBy(b => b).ToArray();
        int top = lv[^1], c = artifact.Metadata.MasterBits;
        using var served = QuantizedModelLoader.LoadServed(artifact, top, device, ScalarType.Float32, extraPrecision, null);
        var model = served.Model;
        using var noGrad = no_grad();
        var x = ids.to(device);
        using var reference = F.log_softmax(model.call(x).flatten(0, 1), 1);          // [B·T, V]
        var result = new Dictionary<(string, int), double>();
        int done = 0, total = artifact.Quantized.Count * (lv.Length - 1);
        foreach (var q in artifact.Quantized)
        {
            var weight = model.get_parameter(q.Name) ?? throw new MatqException($"the served model has no '{q.Name}'");
            using var original = weight.detach().clone();
            foreach (var bits in lv.Take(lv.Length - 1))
            {
                using var scope = NewDisposeScope();
                var (w, _) = QuantizedModelLoader.ServedWeight(q, c, bits, extraPrecision, device);
                weight.copy_(w);
                var lp = F.log_softmax(model.call(x).flatten(0, 1), 1);
                result[(q.Name[..^7], bits)] = reference.exp().mul(reference - lp).sum(dim: 1L).mean().item<float>();
                progress?.Invoke(++done, total);
            }
            weight.copy_(original);
        }
        return result;
    }
}
