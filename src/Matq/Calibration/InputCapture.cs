// Contract: a stand-in for a linear during calibration: feeds its input into a HessianAccumulator, then returns the
// wrapped linear's output unchanged. Swapped in with ReplaceLinear and swapped back out after the capture pass.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Calibration;

internal sealed class InputCapture : nn.Module<Tensor, Tensor>
{
    // Held as a delegate, never as a module field: module registration scans fields, and a registered original
    // would be disposed together with this wrapper.
    private readonly Func<Tensor, Tensor> _inner;
    private readonly HessianAccumulator _accumulator;

    public InputCapture(nn.Module<Tensor, Tensor> inner, HessianAccumulator accumulator) : base("InputCapture")
    {
        _inner = inner.call;
        _accumulator = accumulator;
    }

    /// <summary>x [B, T, in] → the linear's [B, T, out]; x is accumulated first.</summary>
    public override Tensor forward(Tensor x)
    {
        _accumulator.Add(x);
        return _inner(x);
    }
}
