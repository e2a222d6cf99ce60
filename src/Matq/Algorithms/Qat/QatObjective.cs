// Contract: what a method trains for in the LM QAT loop (QatTrainer): the loss of one batch over the fake-quantized
// modules, plus optional hooks — the module factory (default: min-max parameters from the float weight), extra
// parameters trained with the scale learning rate, callbacks around each optimizer step — and the checkpoint run key.
using Matq.Kernels.Quantization;
using Matq.Algorithms.MatQuant;
using Matq.Models;
using Matq.Quantization.Pipeline;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Algorithms.Qat;

/// <summary>Loss of one logged step: total and the objective's per-term values (e.g. each width's CE, in R's order).</summary>
public sealed record QatStep(int Step, double Loss, IReadOnlyList<double> Terms);

public abstract class QatObjective
{
    /// <summary>Short name shown in progress lines ("qat step 10/300" for MatQuant, "efqat step ..." for EfQAT).</summary>
    public abstract string Label { get; }

    /// <summary>Train with the overflow bucket 2^r kept (the modules' ExtraPrecision).</summary>
    public virtual bool ExtraPrecision => false;

    /// <summary>The module that replaces <paramref name="linear"/> (default: min-max α, z of its float weight).</summary>
    public virtual NestedQuantLinear Create(SelectedLinear linear, QuantSpec spec) => new(linear.Name, linear.Weight, spec);

    /// <summary>Parameters outside the modules that train too, at the scale learning rate (e.g. RMSNorm weights).</summary>
    public virtual IReadOnlyList<Parameter> AlsoTrain => [];

    /// <summary>Called once the modules are in the model, before the first step.</summary>
    public virtual void Attached(IReadOnlyList<NestedQuantLinear> modules) { }

    /// <summary>Called before the forward of step <paramref name="step"/> (0-based).</summary>
    public virtual void BeforeStep(int step) { }

    /// <summary>Called after each optimizer step.</summary>
    public virtual void AfterStep() { }

    /// <summary>Called once after the last step, while the trained modules are still in the model.</summary>
    public virtual void Finished() { }

    /// <summary>The text that identifies a run in its training checkpoint: a checkpoint written under another key is refused.</summary>
    public abstract string RunKey(QatConfig budget, int seed, CalibrationTokens data);

    /// <summary>The loss for inputs x [B, T] and flat targets y [B·T], and the detached per-term values to log.</summary>
    public abstract (Tensor Loss, Tensor[] Terms) Loss(LlamaForCausalLM model, IReadOnlyList<NestedQuantLinear> modules, Tensor x, Tensor y);
}
