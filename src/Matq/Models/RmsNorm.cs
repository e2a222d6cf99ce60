// RMSNorm as HF computes it. Llama: normalize in fp32 (x * rsqrt(mean(x^2) + eps)), cast back to the input dtype, then
// multiply by the weight. Gemma (offset): multiply the fp32 normalized x by (1 + w) in fp32, then cast to the input dtype.
// Input [..., H] -> output [..., H].
using Matq.Runtime;
using TorchSharp.Utils;

namespace Matq.Models;

public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    // field name = registered name, so Module.to() re-registers the converted parameter under "weight"
    [ComponentName(Name = "weight")]
    private Parameter weight;

    public double Eps { get; }
    /// <summary>True for Gemma's (1 + w) scaling.</summary>
    public bool Offset { get; }
    public Parameter Weight => weight;

    /// <param name="weightInit">[H] initial weight (taken over, not copied); null means the identity (ones, or zeros with an offset).</param>
    public RmsNorm(long hidden, double eps, Tensor? weightInit = null, Device? device = null, ScalarType? dtype = null, bool offset = false) : base("RmsNorm")
    {
        Eps = eps;
        Offset = offset;
        _eps = eps.ToScalar();
        var w = weightInit ?? (offset ? zeros(hidden, dtype: dtype ?? ScalarType.Float32, device: device) : ones(hidden, dtype: dtype ?? ScalarType.Float32, device: device));
        if (w.ndim != 1 || w.shape[0] != hidden) throw new ArgumentException($"RmsNorm weight must be [{hidden}], got [{string.Join(", ", w.shape)}]");
        weight = ModelInit.Param(w);
        RegisterComponents();
    }

    // TorchSharp 0.107 passes an implicit Scalar temporary's raw handle to the native call, so the GC's finalizer thread
    // can free it mid-call ("Unknown scalar type" seen in CI); the norm's constants are Scalars the module holds.
    private readonly Scalar _eps;
    private static readonly Scalar One = 1.0.ToScalar();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inputType = x.dtype;
        var h = x.to(ScalarType.Float32);
        var variance = h.Squared().mean(new long[] { -1 }, keepdim: true);
        if (Offset)
            return (h * variance.add(_eps).rsqrt() * weight.to(ScalarType.Float32).add(One)).to(inputType).MoveToOuterDisposeScope();
        var normed = (h * variance.add(_eps).rsqrt()).to(inputType);
        return (weight * normed).MoveToOuterDisposeScope();
    }
}
