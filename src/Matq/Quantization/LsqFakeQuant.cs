// Contract: LSQ fake quantization with a learnable step size s (Esser et al. 2020, "Learned Step Size Quantization"):
// v̂ = round(clip(v/s, −Qn, Qp))·s; ∂v̂/∂v = 1 inside (−Qn < v/s < Qp), else 0; ∂v̂/∂s = round(v/s) − v/s inside,
// −Qn below, Qp above; the step gradient is multiplied by g = 1/sqrt(N·Qp), N = elements sharing one step.
// s is a scalar ([] or [1]) or any shape broadcastable to v (e.g. [out, 1] per channel) and must be positive.
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Matq.Quantization;

/// <summary>Learned-step-size fake quantization; codes map to matq's unsigned form with z = Qn.</summary>
public static class LsqFakeQuant
{
    /// <summary>Signed: Qn = 2^(b−1), Qp = 2^(b−1) − 1 (b ≥ 2); unsigned: Qn = 0, Qp = 2^b − 1 (b ≥ 1).</summary>
    public static (int Qn, int Qp) Bounds(int bits, bool signed)
    {
        Kernels.Quantization.QuantSpec.ValidateBits(bits);
        if (signed && bits < 2) throw new MatqException($"bits = {bits} is out of range for signed LSQ: allowed 2..8; use 2 or more bits or unsigned LSQ.");
        return signed ? (1 << (bits - 1), (1 << (bits - 1)) - 1) : (0, (1 << bits) - 1);
    }

    /// <summary>The paper's initial step 2·mean|v|/sqrt(Qp) (per tensor), as a 0-dim float32 tensor.</summary>
    public static Tensor InitialStep(Tensor v, int bits, bool signed = true)
    {
        (_, int qp) = Bounds(bits, signed);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return v.detach().to(ScalarType.Float32).abs().mean().mul(2.0 / Math.Sqrt(qp)).MoveToOuterDisposeScope();
    }

    /// <summary>v̂ = round(clip(v/s, −Qn, Qp))·s with the LSQ gradients for v and s. <paramref name="gradScale"/>
    /// overrides g = 1/sqrt(N·Qp).</summary>
    public static Tensor Apply(Tensor v, Tensor step, int bits, bool signed = true, double? gradScale = null)
    {
        (int qn, int qp) = Bounds(bits, signed);
        long perStep = v.numel() / Math.Max(1, step.numel());
        double g = gradScale ?? 1.0 / Math.Sqrt((double)perStep * qp);
        if (!is_grad_enabled() || !(v.requires_grad || step.requires_grad))
        {
            // values only: skip the mask and step-gradient tensors the autograd function saves
            using var scope = NewDisposeScope();
            return v.div(step).clamp_(-qn, qp).round_().mul_(step).MoveToOuterDisposeScope();
        }
        return LsqFunction.apply(v, step, qn, qp, g);
    }

    /// <summary>Unsigned uint8 codes round(clip(v/s, −Qn, Qp)) + Qn (signed LSQ therefore stores z = 2^(b−1),
    /// matching the symmetric convention of the kernels).</summary>
    public static Tensor Codes(Tensor v, Tensor step, int bits, bool signed = true)
    {
        (int qn, int qp) = Bounds(bits, signed);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return v.detach().div(step.detach()).clamp(-qn, qp).round().add(qn).to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>Sums <paramref name="t"/> over the dimensions that were broadcast to reach it from <paramref name="shape"/>.</summary>
    internal static Tensor SumToShape(Tensor t, long[] shape)
    {
        Tensor r = t;
        while (r.dim() > shape.Length) r = r.sum(dim: 0L);   // a bare literal 0 would bind to sum(ScalarType)
        for (int d = 0; d < shape.Length; d++)
            if (shape[d] == 1 && r.shape[d] != 1) r = r.sum(d, keepdim: true);
        return r.reshape(shape);
    }

    private sealed class LsqFunction : SingleTensorFunction<LsqFunction>
    {
        public override string Name => "matq.LsqFakeQuant";

        // vars: [0] v, [1] step s, [2] Qn (int), [3] Qp (int), [4] gradient scale g (double)
        // Forward saves what backward needs instead of v: the inside mask m and ∂v̂/∂s, written with c = clip(v/s) as
        // round(c) − c·m (inside: round(u) − u; below: −Qn; above: Qp), so backward is two products and a reduction.
        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var v = (Tensor)vars[0];
            var s = (Tensor)vars[1];
            int qn = (int)vars[2], qp = (int)vars[3];
            using var scope = NewDisposeScope();
            Tensor u = v.div(s), c = u.clamp(-qn, qp), rc = c.round();
            Tensor m = c.eq(u);
            Tensor ds = rc.sub(c.mul(m));
            ctx.save_for_backward(new List<Tensor> { m.MoveToOuterDisposeScope(), ds.MoveToOuterDisposeScope() });
            ctx.save_data("sshape", s.shape);
            ctx.save_data("g", (double)vars[4]);
            return rc.mul(s).MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
        {
            BackwardTensors.Begin();
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor m = saved[0], ds = saved[1];
            var sshape = (long[])ctx.get_data("sshape");
            double g = (double)ctx.get_data("g");
            using var scope = NewDisposeScope();
            Tensor gv = gradOutput.mul(m);
            Tensor gs = SumToShape(gradOutput.mul(ds), sshape).mul(g);
            return BackwardTensors.Hand(new List<Tensor> { gv.MoveToOuterDisposeScope(), gs.MoveToOuterDisposeScope(), null!, null!, null! },
                [gradOutput, .. saved]);
        }
    }
}
