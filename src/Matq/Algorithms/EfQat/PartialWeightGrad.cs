// Contract: conv2d / linear whose backward computes grad_input in full but grad_weight only for the selected output
// channels (rows), leaving the other rows' gradient zero; an empty selection computes no weight gradient at all.
// This is where EfQAT's saving is real compute, not a mask applied afterwards. Exact implementations:
// Inject (default) runs the native op once on the detached weight (the device's own data-gradient kernel, no weight
// gradient) and adds a zero-valued S-row term op(x.detach(), w[rows]) − itself.detach() to the selected outputs, whose
// native backward is the device's weight-gradient kernel for S rows only (at the price of an S-row forward);
// Split runs the native op twice, on the selected rows and on the detached frozen rows, and interleaves the outputs;
// Unfold and Conv are custom autograd functions that compute the selected rows' weight gradient by im2col+bmm or by a
// swapped conv; Regrad re-runs an S-row op inside a custom backward.
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Matq.Algorithms.EfQat;

/// <summary>How the selected rows' conv weight gradient is computed (both exact; speed differs by device).</summary>
public enum ConvWeightGradMethod
{
    /// <summary>Native autograd on two ops: w[rows] (trained) and w[frozen].detach(); outputs interleaved by index_copy.</summary>
    Split,
    /// <summary>im2col: unfold(x) [N, Cin·k·k, L] and a batched matmul with the selected output gradients [N, S, L].</summary>
    Unfold,
    /// <summary>A conv2d of x with batch and channel swapped, the selected output gradients as the kernel (dilation = stride).</summary>
    Conv,
    /// <summary>The device's own weight-gradient kernel on the selected rows: inside the backward, autograd of a conv2d
    /// of x with an [S, Cin, k, k] stand-in weight (∂y/∂w does not depend on w), at the cost of that S-channel forward.</summary>
    Regrad,
    /// <summary>One native op on the detached weight (full data gradient, no weight gradient) plus a zero-valued
    /// S-row term op(x.detach(), w[rows]) − op(…).detach() index-added into the selected outputs: its native backward
    /// computes the weight gradient of the S rows only. Forward values are bit-identical to the plain op.</summary>
    Inject,
}

/// <summary>Partial-weight-gradient conv2d and linear.</summary>
public static class PartialWeightGrad
{
    // The method is the caller's choice, passed in (each EfQAT layer carries its own GradMethod); these are the defaults.
    /// <summary>Default method of <see cref="Conv2d"/>.</summary>
    public const ConvWeightGradMethod DefaultConvMethod = ConvWeightGradMethod.Inject;
    /// <summary>Default method of <see cref="Linear"/> and of NestedQuantLinear: Split, Inject, or else the custom function
    /// that gathers the selected columns of the output gradient and multiplies them with the input (one GEMM of S rows;
    /// NestedQuantLinear knows Inject and this one).</summary>
    public const ConvWeightGradMethod DefaultLinearMethod = ConvWeightGradMethod.Inject;

    /// <summary>y = conv2d(x, w) (x [N, Cin, H, W], w [Cout, Cin, k, k] → [N, Cout, Ho, Wo], no bias, square stride and
    /// padding); rows = selected output channels (int64 [S]), null = all rows (full gradient); frozen = the other rows
    /// (computed when null).</summary>
    public static Tensor Conv2d(Tensor x, Tensor w, long stride, long padding, Tensor? rows, Tensor? frozen = null,
        ConvWeightGradMethod method = DefaultConvMethod)
    {
        Tensor Op(Tensor xt, Tensor wt) => nn.functional.conv2d(xt, wt, strides: new[] { stride, stride }, padding: new[] { padding, padding });
        return method switch
        {
            ConvWeightGradMethod.Split => SplitRows(wt => Op(x, wt), w, rows, frozen, dim: 1),
            ConvWeightGradMethod.Inject => InjectRows(Op, x, w, rows, dim: 1),
            _ => ConvFunction.apply(x, w, stride, padding, rows!, method),
        };
    }

    /// <summary>y = x·wᵀ (x [..., in], w [out, in] → [..., out]); rows as in <see cref="Conv2d"/>.</summary>
    public static Tensor Linear(Tensor x, Tensor w, Tensor? rows, Tensor? frozen = null, ConvWeightGradMethod method = DefaultLinearMethod) =>
        method == ConvWeightGradMethod.Split ? SplitLinear(x, w, rows, frozen)
        : method == ConvWeightGradMethod.Inject ? InjectRows((xt, wt) => nn.functional.linear(xt, wt), x, w, rows, dim: x.dim() - 1)
        : rows is null || rows.numel() == w.shape[0] ? nn.functional.linear(x, w)
        : rows.numel() == 0 ? nn.functional.linear(x, w.detach())
        : LinearFunction.apply(x, w, rows);

    /// <summary>y = x·wᵀ for x [..., in] (any leading dims) with the Split method: only w[rows] gets a weight gradient.</summary>
    public static Tensor SplitLinear(Tensor x, Tensor w, Tensor? rows, Tensor? frozen = null) =>
        SplitRows(wt => nn.functional.linear(x, wt), w, rows, frozen, dim: x.dim() - 1);

    /// <summary>y = x·wFullᵀ (x [..., in], wFull [out, in] without gradient) where <paramref name="wSel"/> [S, in] =
    /// wFull[rows] is the differentiable copy of the selected rows: the backward returns ∂L/∂x = g·wFull and
    /// ∂L/∂wSel = g[:, rows]ᵀ·x (one GEMM of S rows) — nothing of size [out, in] is formed on the gradient side, so
    /// whatever produced wSel (e.g. a fake quantizer) also back-propagates through S rows only.</summary>
    public static Tensor LinearRows(Tensor x, Tensor wFull, Tensor wSel, Tensor rows) => LinearRowsFunction.apply(x, wFull, wSel, rows);

    /// <summary>y = x·wFullᵀ where only <paramref name="wSel"/> = wFull[rows] (differentiable, [S, in]) gets a weight
    /// gradient, by the Inject method: native linear on the detached full weight plus the zero-valued S-row term.</summary>
    public static Tensor InjectLinearRows(Tensor x, Tensor wFull, Tensor wSel, Tensor rows) =>
        InjectSelected((xt, wt) => nn.functional.linear(xt, wt), x, wFull, wSel, rows, dim: x.dim() - 1);

    /// <summary>conv2d(x, wFull) where only <paramref name="wSel"/> = wFull[rows] (differentiable, [S, Cin, k, k]) gets
    /// a weight gradient, by the Inject method; an empty <paramref name="rows"/> gives no weight gradient at all.</summary>
    public static Tensor InjectConv2dRows(Tensor x, Tensor wFull, Tensor wSel, Tensor rows, long stride, long padding) =>
        InjectSelected((xt, wt) => nn.functional.conv2d(xt, wt, strides: new[] { stride, stride }, padding: new[] { padding, padding }),
            x, wFull, wSel, rows, dim: 1);

    private static Tensor InjectSelected(Func<Tensor, Tensor, Tensor> op, Tensor x, Tensor wFull, Tensor wSel, Tensor rows, long dim)
    {
        if (rows.numel() == 0) return op(x, wFull.detach());
        using var scope = NewDisposeScope();
        Tensor y = op(x, wFull.detach());
        Tensor c = op(x.detach(), wSel);
        return y.index_add_(dim, rows, c.sub(c.detach()), 1).MoveToOuterDisposeScope();
    }

    /// <summary>The rows of [0, n) not in <paramref name="rows"/> (sorted, int64, on rows' device).</summary>
    public static Tensor Complement(Tensor rows, long n)
    {
        var keep = new bool[n];
        Array.Fill(keep, true);
        foreach (long r in rows.cpu().data<long>()) keep[r] = false;
        return tensor(Enumerable.Range(0, (int)n).Where(i => keep[i]).Select(i => (long)i).ToArray(), ScalarType.Int64).to(rows.device);
    }

    // op(w) maps a weight [rows, ...] to an output whose dimension `dim` indexes those rows; weight gradients flow only
    // through w[rows]: the frozen part is detached, so autograd never asks the device for its weight gradient.
    private static Tensor SplitRows(Func<Tensor, Tensor> op, Tensor w, Tensor? rows, Tensor? frozen, long dim)
    {
        if (rows is null) return op(w);
        if (rows.numel() == 0) return op(w.detach());
        if (rows.numel() == w.shape[0]) return op(w);
        using var scope = NewDisposeScope();
        frozen ??= Complement(rows, w.shape[0]);
        Tensor ySel = op(w.index_select(0, rows));
        Tensor yFrz = op(w.detach().index_select(0, frozen));
        var shape = (long[])ySel.shape.Clone();
        shape[dim] = w.shape[0];
        // rows ∪ frozen covers every index, so the uninitialized output is fully written (index_copy_ is differentiable)
        return empty(shape, ySel.dtype, ySel.device).index_copy_(dim, rows, ySel).index_copy_(dim, frozen, yFrz).MoveToOuterDisposeScope();
    }

    // op(x, w) with output rows along `dim`: the full op runs on w.detach() (its backward gives ∂L/∂x only); the S-row
    // term c − c.detach() is exactly 0 for finite c, so the values are those of op(x, w), and its backward (x detached)
    // is the native weight gradient of w[rows] alone, reached through index_select's backward.
    private static Tensor InjectRows(Func<Tensor, Tensor, Tensor> op, Tensor x, Tensor w, Tensor? rows, long dim)
    {
        if (rows is null || rows.numel() == w.shape[0]) return op(x, w);
        return InjectSelected(op, x, w, w.index_select(0, rows), rows, dim);
    }

    /// <summary>∂L/∂w for the output channels of g: x [N, Cin, H, W], g [N, S, Ho, Wo] → [S, Cin, k, k].</summary>
    public static Tensor ConvWeightGrad(Tensor x, Tensor g, long kernel, long stride, long padding, ConvWeightGradMethod method)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], cin = x.shape[1], s = g.shape[1];
        Tensor result;
        if (method == ConvWeightGradMethod.Regrad)
        {
            using var grad = enable_grad();
            Tensor ws = zeros(new long[] { s, cin, kernel, kernel }, x.dtype, x.device).requires_grad_(true);
            Tensor ys = nn.functional.conv2d(x.detach(), ws, strides: new[] { stride, stride }, padding: new[] { padding, padding });
            result = autograd.grad(new List<Tensor> { ys }, new List<Tensor> { ws }, new List<Tensor> { g })[0];
        }
        else if (method == ConvWeightGradMethod.Unfold)
        {
            Tensor cols = nn.functional.unfold(x, kernel, dilation: 1, padding: padding, stride: stride);   // [N, Cin·k·k, L]
            Tensor gl = g.reshape(n, s, -1);                                                                  // [N, S, L]
            result = bmm(gl, cols.transpose(1, 2)).sum(dim: 0L).reshape(s, cin, kernel, kernel);              // [S, Cin·k·k]
        }
        else
        {
            // gw[o, i, a, b] = Σ_n Σ_p x[n, i, s·p + a − pad] g[n, o, p]: a conv over "channels" n with kernel g.
            Tensor y = nn.functional.conv2d(x.transpose(0, 1), g.transpose(0, 1), strides: new[] { 1L, 1L },
                padding: new[] { padding, padding }, dilation: new[] { stride, stride });                     // [Cin, S, k', k']
            result = y.narrow(2, 0, kernel).narrow(3, 0, kernel).transpose(0, 1).contiguous();
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>A full-shape weight gradient holding <paramref name="partial"/> in <paramref name="rows"/>, zeros elsewhere.</summary>
    private static Tensor Scatter(Tensor w, Tensor partial, Tensor rows) => zeros_like(w).index_copy_(0, rows, partial);

    // Tensors go through save_for_backward (TorchSharp warns about tensors in save_data); rows is optional.
    private static void SaveInputs(AutogradContext ctx, Tensor x, Tensor w, Tensor? rows)
    {
        ctx.save_for_backward(rows is null ? new List<Tensor> { x, w } : new List<Tensor> { x, w, rows });
        ctx.save_data("hasRows", rows is not null);
    }

    private sealed class ConvFunction : SingleTensorFunction<ConvFunction>
    {
        public override string Name => "matq.EfQatConv2d";

        // vars: [0] x, [1] w, [2] stride (long), [3] padding (long), [4] rows (Tensor?), [5] method
        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var w = (Tensor)vars[1];
            long stride = (long)vars[2], padding = (long)vars[3];
            SaveInputs(ctx, x, w, vars[4] as Tensor);
            ctx.save_data("stride", stride);
            ctx.save_data("padding", padding);
            ctx.save_data("method", vars[5]);
            ctx.save_data("xgrad", x.requires_grad);
            return nn.functional.conv2d(x, w, strides: new[] { stride, stride }, padding: new[] { padding, padding });
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor g)
        {
            BackwardTensors.Begin();
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor x = saved[0], w = saved[1];
            long stride = (long)ctx.get_data("stride"), padding = (long)ctx.get_data("padding");
            Tensor? rows = (bool)ctx.get_data("hasRows") ? saved[2] : null;
            var method = (ConvWeightGradMethod)ctx.get_data("method");
            long k = w.shape[2];
            using var scope = NewDisposeScope();
            Tensor? gx = null, gw = null;
            if ((bool)ctx.get_data("xgrad"))
            {
                // transposed conv = the data gradient; output_padding restores sizes lost to the stride's floor
                long oh = x.shape[2] - ((g.shape[2] - 1) * stride - 2 * padding + k);
                long ow = x.shape[3] - ((g.shape[3] - 1) * stride - 2 * padding + k);
                gx = nn.functional.conv_transpose2d(g, w, strides: new[] { stride, stride }, padding: new[] { padding, padding },
                    output_padding: new[] { oh, ow }).MoveToOuterDisposeScope();
            }
            if (rows is null)
                gw = ConvWeightGrad(x, g, k, stride, padding, method).MoveToOuterDisposeScope();
            else if (rows.numel() > 0)
                gw = Scatter(w, ConvWeightGrad(x, g.index_select(1, rows), k, stride, padding, method), rows).MoveToOuterDisposeScope();
            return BackwardTensors.Hand(new List<Tensor> { gx!, gw!, null!, null!, null!, null! }, [g, .. saved]);
        }
    }

    private sealed class LinearFunction : SingleTensorFunction<LinearFunction>
    {
        public override string Name => "matq.EfQatLinear";

        // vars: [0] x [..., in] (leading dims flattened for the weight gradient), [1] w [out, in], [2] rows (Tensor?)
        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var w = (Tensor)vars[1];
            SaveInputs(ctx, x, w, vars[2] as Tensor);
            ctx.save_data("xgrad", x.requires_grad);
            return x.matmul(w.t());
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor g)
        {
            BackwardTensors.Begin();
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor x = saved[0], w = saved[1];
            Tensor? rows = (bool)ctx.get_data("hasRows") ? saved[2] : null;
            using var scope = NewDisposeScope();
            Tensor? gx = (bool)ctx.get_data("xgrad") ? g.matmul(w).MoveToOuterDisposeScope() : null;
            Tensor? gw = null;
            Tensor g2 = g.reshape(-1, w.shape[0]), x2 = x.reshape(-1, w.shape[1]);                             // [N, out], [N, in]
            if (rows is null) gw = g2.t().matmul(x2).MoveToOuterDisposeScope();                                // [out, in]
            else if (rows.numel() > 0)
                gw = Scatter(w, g2.index_select(1, rows).t().matmul(x2), rows).MoveToOuterDisposeScope();      // [S, in] scattered
            return BackwardTensors.Hand(new List<Tensor> { gx!, gw!, null! }, [g, .. saved]);
        }
    }

    private sealed class LinearRowsFunction : SingleTensorFunction<LinearRowsFunction>
    {
        public override string Name => "matq.EfQatLinearRows";

        // vars: [0] x [..., in], [1] wFull [out, in] (values), [2] wSel [S, in] (gradient target), [3] rows int64 [S]
        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var wFull = (Tensor)vars[1];
            ctx.save_for_backward(new List<Tensor> { x, wFull, (Tensor)vars[3] });
            ctx.save_data("xgrad", x.requires_grad);
            return nn.functional.linear(x, wFull.detach());
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor g)
        {
            BackwardTensors.Begin();
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor x = saved[0], w = saved[1], rows = saved[2];
            using var scope = NewDisposeScope();
            Tensor? gx = (bool)ctx.get_data("xgrad") ? g.matmul(w).MoveToOuterDisposeScope() : null;
            Tensor g2 = g.reshape(-1, w.shape[0]), x2 = x.reshape(-1, w.shape[1]);
            Tensor gSel = g2.index_select(1, rows).t().matmul(x2).MoveToOuterDisposeScope();                 // [S, in]
            return BackwardTensors.Hand(new List<Tensor> { gx!, null!, gSel, null! }, [g, .. saved]);
        }
    }
}
