// RMSNorm as HF Llama computes it: normalize in fp32 (x * rsqrt(mean(x^2) + eps)), cast back to the input dtype,
// then multiply by the weight. Input [..., H] -> output [..., H] in the promoted dtype of input and weight.
using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models;

public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    // field name = registered name, so Module.to() re-registers the converted parameter under "weight"
    [ComponentName(Name = "weight")]
    private Parameter weight;

    public double Eps { get; }
    public Parameter Weight => weight;

    /// <param name="weightInit">[H] initial weight (taken over, not copied); null means ones.</param>
    public RmsNorm(long hidden, double eps, Tensor? weightInit = null, Device? device = null, ScalarType? dtype = null) : base("RmsNorm")
    {
        Eps = eps;
        var w = weightInit ?? ones(hidden, dtype: dtype ?? ScalarType.Float32, device: device);
        if (w.ndim != 1 || w.shape[0] != hidden) throw new ArgumentException($"RmsNorm weight must be [{hidden}], got [{string.Join(", ", w.shape)}]");
        weight = ModelInit.Param(w);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inputType = x.dtype;
        var h = x.to(ScalarType.Float32);
        var variance = h.square().mean(new long[] { -1 }, keepdim: true);
        var normed = (h * (variance + Eps).rsqrt()).to(inputType);
        return (weight * normed).MoveToOuterDisposeScope();
    }
}
