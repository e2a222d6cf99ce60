// Contract: MatQuant's nested QAT objective (QatObjective): the loss of the model at every width of R, weighted by λ,
// with optional distillation from the float model and co-distillation between slices. Single-width QAT is R = {c}.
//
// Loss per step on inputs x [B, T] and targets y [B·T], ℓ_r = logits of the model sliced to r:
//   L = Σ_{r∈R} λ_r · CE(ℓ_r, y)                                        the nested objective
//     + distill · Σ_{r∈R} λ_r · KL(softmax ℓ_float ‖ softmax ℓ_r)          optional, teacher = the frozen float model
//     + w_cd · Σ_{(a→b)} KL(softmax ℓ_a.detach() ‖ softmax ℓ_b)           co-distillation (teacher slice detached)
// KL and CE are token means in fp32. Gradients reach W, α, z through every slice (NestedQuantLinear's STE).
using Matq.Algorithms.Qat;
using Matq.Models;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Algorithms.MatQuant;

public class NestedObjective(MatQuantConfig config) : QatObjective
{
    public MatQuantConfig Config { get; } = config ?? throw new ArgumentNullException(nameof(config));

    public override string Label => "qat";

    public override bool ExtraPrecision => Config.ExtraPrecision;

    /// <summary>Every setting that changes the trajectory: the objective, the budget, the seed and the data's shape.</summary>
    public override string RunKey(QatConfig budget, int seed, CalibrationTokens data) =>
        $"matquant;bits={string.Join(",", Config.Bits)};lambda={string.Join(",", Config.Lambda)};steps={budget.Steps};batch={budget.Batch};" +
        $"lr={budget.Lr:R};slr={budget.ScaleLr:R};cd={string.Join(",", Config.Codistill)};distill={Config.Distill:R};extra={Config.ExtraPrecision};seed={seed};n={data.Count}x{data.Length}" +
        (budget.Grid == QatGrid.Learned ? "" : $";grid={budget.Grid.ToString().ToLowerInvariant()}");

    /// <summary>The header's L; the terms are each width's CE (detached, R's order; 0 for a width that is not computed).</summary>
    public override (Tensor Loss, Tensor[] Terms) Loss(LlamaForCausalLM model, IReadOnlyList<NestedQuantLinear> modules, Tensor x, Tensor y)
    {
        Tensor? teacher = null;
        if (Config.Distill > 0)
        {
            using var noGrad = no_grad();
            QatTrainer.SetBits(modules, 0);
            teacher = F.log_softmax(model.call(x).flatten(0, 1), 1);                        // [B·T, V] float model
        }
        var logp = new Dictionary<int, Tensor>();
        var ce = new Tensor[Config.Bits.Count];
        Tensor total = zeros(Array.Empty<long>(), device: x.device);
        for (int i = 0; i < Config.Bits.Count; i++)
        {
            int r = Config.Bits[i];
            bool needed = Config.Lambda[i] > 0 || Config.Codistill.Any(p => p.Teacher == r || p.Student == r);
            if (!needed) { ce[i] = zeros(Array.Empty<long>()); continue; }
            QatTrainer.SetBits(modules, r);
            var lp = F.log_softmax(model.call(x).flatten(0, 1), 1);                         // [B·T, V]
            logp[r] = lp;
            var c = F.nll_loss(lp, y);
            ce[i] = c.detach();
            if (Config.Lambda[i] > 0)
            {
                total = total + c * Config.Lambda[i];
                if (teacher is not null) total = total + Kl(teacher, lp) * (Config.Distill * Config.Lambda[i]);
            }
        }
        foreach (var p in Config.Codistill)
            total = total + Kl(logp[p.Teacher].detach(), logp[p.Student]) * Config.CodistillWeight;
        QatTrainer.SetBits(modules, modules.Count > 0 ? modules[0].MasterBits : 0);
        return (total, ce);
    }

    // KL(p ‖ q) per token, mean over tokens, from log-probabilities [N, V].
    private static Tensor Kl(Tensor logP, Tensor logQ) => logP.exp().mul(logP - logQ).sum(dim: 1L).mean();
}
