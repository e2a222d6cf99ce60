// Contract: streaming H = 2XXᵀ/n for one linear's inputs (X [in, n] columns = tokens), fp32 [in, in] on a chosen device,
// updated batch by batch with the running token count; no activation is kept. Non-finite inputs stop it, naming the layer.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Calibration;

/// <summary>One [in, in] accumulator: after batches X_1..X_m of n_1..n_m tokens, H = 2/N Σ_b X_bᵀX_b with N = Σ n_b.</summary>
public sealed class HessianAccumulator : IDisposable
{
    private readonly Tensor _h;
    private long _count;

    public HessianAccumulator(string layer, long inFeatures, Device? device = null)
    {
        if (inFeatures < 1) throw new ArgumentOutOfRangeException(nameof(inFeatures));
        Layer = layer;
        InFeatures = inFeatures;
        _h = zeros(inFeatures, inFeatures, dtype: ScalarType.Float32, device: device);
    }

    /// <summary>The linear(s) whose input this is, for error messages.</summary>
    public string Layer { get; }

    public long InFeatures { get; }

    /// <summary>Tokens seen so far (N).</summary>
    public long Count => _count;

    /// <summary>
    /// x [..., in] (any dtype and leading shape; flattened to m token rows, fp32 on H's device). With N' = N + m:
    ///   H ← H·N/N' + (2/N')·xᵀx      (the second term as (√(2/N')x)ᵀ(√(2/N')x), as one matmul)
    /// </summary>
    public void Add(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() < 1 || x.shape[^1] != InFeatures)
            throw new ArgumentException($"{Layer}: input has shape [{string.Join(", ", x.shape)}], expected [..., {InFeatures}]");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Tensor rows = x.detach().reshape(-1, InFeatures).to(ScalarType.Float32, _h.device);   // [m, in]
        long m = rows.shape[0];
        if (m == 0) return;
        if (!rows.isfinite().all().item<bool>())
            throw new MatqException($"calibration activations entering {Layer} contain NaN or Inf (after {_count} tokens); the model overflows on the calibration text: check its dtype, weights and inputs.");
        long total = _count + m;
        _h.mul_((double)_count / total);
        rows = rows.mul(Math.Sqrt(2.0 / total));
        _h.addmm_(rows.t(), rows);
        _count = total;
    }

    /// <summary>H [in, in] fp32 (the accumulator itself; zeros before any input).</summary>
    public Tensor Hessian => _h;

    public void Dispose() => _h.Dispose();
}
