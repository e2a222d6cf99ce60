// Contract: the straight-through estimator as a TorchSharp custom autograd function: the forward value is
// computed by a given function of x (exactly, no x + (f(x) − x).detach() rounding), the backward returns the
// incoming gradient, optionally multiplied by a 0/1 mask of x (zero outside the clip range).
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Matq.Quantization;

/// <summary>How the STE treats gradients of values outside the quantizer's clip range.</summary>
public enum SteMode
{
    /// <summary>Gradient 1 everywhere (the default for weights: the grid is fitted to them, so nothing is clipped
    /// when parameters come from the weights themselves, and learnable weights should never get stuck).</summary>
    PassThrough,

    /// <summary>Gradient 1 where round(x/α) + z lies in [0, 2^c − 1], 0 where it was clipped (the usual choice
    /// for activations and for fixed/learned parameters).</summary>
    ClipMask,
}

/// <summary>Applies y = forward(x) with dy/dx = mask(x) (or 1).</summary>
public static class StraightThrough
{
    /// <summary>y = <paramref name="forward"/>(x) computed without autograd; ∂L/∂x = ∂L/∂y ⊙ <paramref name="mask"/>(x)
    /// (∂L/∂y when mask is null). Both functions receive x detached and must not keep their inputs.</summary>
    public static Tensor Apply(Tensor x, Func<Tensor, Tensor> forward, Func<Tensor, Tensor>? mask = null)
    {
        ArgumentNullException.ThrowIfNull(forward);
        return SteFunction.apply(x, forward, mask!);
    }

    private sealed class SteFunction : SingleTensorFunction<SteFunction>
    {
        public override string Name => "matq.StraightThrough";

        // vars: [0] x, [1] Func<Tensor, Tensor> forward value, [2] Func<Tensor, Tensor>? 0/1 gradient mask
        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var f = (Func<Tensor, Tensor>)vars[1];
            var m = vars[2] as Func<Tensor, Tensor>;
            using var scope = NewDisposeScope();
            Tensor y = f(x);
            ctx.save_data("masked", m is not null);
            if (m is not null)
            {
                Tensor mask = m(x).to(x.dtype).MoveToOuterDisposeScope();   // saved after forward returns
                ctx.save_for_backward(new List<Tensor> { mask });
            }
            return y.MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
        {
            BackwardTensors.Begin();
            var saved = (bool)ctx.get_data("masked") ? ctx.get_saved_variables() : [];
            Tensor g = saved.Count > 0 ? gradOutput.mul(saved[0]) : gradOutput.clone();
            return BackwardTensors.Hand(new List<Tensor> { g, null!, null! }, [gradOutput, .. saved]);
        }
    }
}
