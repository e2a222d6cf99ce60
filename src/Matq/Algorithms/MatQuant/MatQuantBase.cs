// Contract: the bases MatQuant wraps, as an explicit table of implementations (no reflection): each names itself, says
// whether it trains the slices together (co-distillation applies) and resumes block by block, declares its options, and
// runs the nested objective of a MatQuantAlgorithm on a run (returning one result per selected linear, model order).
using Matq.Runtime;
using System.Text.Json.Nodes;
using Matq.Algorithms.Athena;
using Matq.Algorithms.OmniQuant;
using Matq.Algorithms.Qat;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Algorithms.MatQuant;

public abstract class MatQuantBase
{
    /// <summary>End-to-end next-token training of the quantized weights and their scales/zeros (STE), through QatTrainer.</summary>
    public static MatQuantBase Qat { get; } = new QatBase();

    /// <summary>Second-order column-by-column rounding on the calibration Hessian (GPTQ/Athena error feedback).</summary>
    public static MatQuantBase Athena { get; } = new AthenaBase();

    /// <summary>Block-wise learnable weight clipping trained on block-output reconstruction (OmniQuant LWC).</summary>
    public static MatQuantBase OmniQuant { get; } = new OmniQuantBase();

    /// <summary>Every base, in the order `--option base=` lists them; adding a base = one implementation + one row here.</summary>
    public static IReadOnlyList<MatQuantBase> All { get; } = [Qat, Athena, OmniQuant];

    /// <summary>The name typed after --option base= and recorded in the artifact.</summary>
    public abstract string Name { get; }

    /// <summary>Whether the slices' outputs are compared during training (co-distillation pairs apply).</summary>
    public abstract bool TrainsSlices { get; }

    /// <summary>Whether the base walks the model block by block with a resume checkpoint.</summary>
    public abstract bool SupportsResume { get; }

    /// <summary>Whether the base reads the model one block at a time through <see cref="QuantizationContext.Hold"/>, so it
    /// runs on a block-streamed model (<see cref="QuantizationAlgorithm.Streams"/>).</summary>
    public abstract bool Streams { get; }

    /// <summary>Whether the base quantizes through SequentialQuantization (see <see cref="QuantizationAlgorithm.LayerParallel"/>).</summary>
    public virtual bool LayerParallel => false;

    /// <summary>The base's own options (the matquant registry row declares them all).</summary>
    public abstract IReadOnlyList<AlgorithmOption> Options { get; }

    /// <summary>Adds the base's settings to the artifact's algorithm_config.</summary>
    public abstract void Describe(MatQuantAlgorithm algorithm, JsonObject settings);

    public abstract IReadOnlyList<QuantizedLinearResult> Convert(MatQuantAlgorithm algorithm, QuantizationContext context);

    public override string ToString() => Name;

    private sealed class QatBase : MatQuantBase
    {
        public override string Name => "qat";
        public override bool TrainsSlices => true;
        public override bool SupportsResume => false;   // trains the whole model at once
        public override bool Streams => false;          // needs the whole model resident
        public override IReadOnlyList<AlgorithmOption> Options => QatConfig.Options;

        public override void Describe(MatQuantAlgorithm algorithm, JsonObject o)
        {
            var m = algorithm.MatQuant;
            o["codistill"] = string.Join(",", m.Codistill);
            o["codistill_weight"] = m.CodistillWeight;
            o["distill"] = m.Distill;
            o["steps"] = m.Qat.Steps;
            o["batch"] = m.Qat.Batch;
            o["lr"] = m.Qat.Lr;
            o["scale_lr"] = m.Qat.ScaleLr;
            o["warmup"] = m.Qat.Warmup;
            o["clip"] = m.Qat.ClipNorm;
            o["grid"] = m.Grid == QatGrid.MinMax ? "minmax" : "learned";
        }

        public override IReadOnlyList<QuantizedLinearResult> Convert(MatQuantAlgorithm algorithm, QuantizationContext context) =>
            QatTrainer.Run(context, algorithm.Config, algorithm.MatQuant.Qat, new NestedObjective(algorithm.MatQuant), algorithm.Name, algorithm.StepLog);
    }

    private sealed class AthenaBase : MatQuantBase
    {
        public override string Name => "athena";
        public override bool TrainsSlices => false;
        public override bool SupportsResume => true;
        public override bool Streams => true;
        public override bool LayerParallel => true;
        public override IReadOnlyList<AlgorithmOption> Options => AthenaAlgorithm.AthenaRegistration.Options;

        public override void Describe(MatQuantAlgorithm algorithm, JsonObject o) =>
            o["athena"] = AthenaAlgorithm.Describe(algorithm.Athena);

        // Sequential calibration as in Athena; the weight installed for the next blocks is the λ-weighted mean of the
        // slices Σ λ_r ŵ_r / Σ λ: the single weight closest (in Σ λ_r‖·‖²) to every served precision, so later blocks are
        // calibrated on inputs between those of the widths they will be served at.
        public override IReadOnlyList<QuantizedLinearResult> Convert(MatQuantAlgorithm algorithm, QuantizationContext context)
        {
            var config = algorithm.Config;
            var mq = algorithm.MatQuant;
            return SequentialQuantization.Run(context, algorithm.Name, algorithm.Athena.CalibrationBatch, linear =>
            {
                var w = linear.Weight.to(context.Device);
                using var r = MatQuantAthena.Quantize(linear.Name, w, linear.Hessian, algorithm.Athena, mq);
                int cols = checked((int)r.Codes.shape[1]);
                Tensor mean = zeros_like(w);
                for (int i = 0; i < mq.Bits.Count; i++)
                {
                    int b = mq.Bits[i];
                    var sliced = mq.ExtraPrecision ? TensorNestedSlice.SliceExtra(r.Codes, config.Bits, b).Codes : TensorNestedSlice.Slice(r.Codes, config.Bits, b);
                    mean.add_(TensorNestedSlice.Dequantize(sliced, r.Scales, r.Zeros, r.GroupSize, config.Bits, b).mul(mq.Lambda[i]));
                }
                mean.div_(mq.LambdaSum);
                double mse = (w - TensorAffineQuantizer.Dequantize(r.Codes, r.Scales, r.Zeros, r.GroupSize)).Squared().mean().item<float>();
                var report = new LayerReport(linear.Name, checked((int)r.Codes.shape[0]), cols, config.Bits, mse, r.AthenaSlicedError, r.NestedError, r.Seconds);
                return (QuantizedLinearResult.FromTensors(linear.Name, r.Codes, r.Scales, r.Zeros, config.StoredGroupSize(cols), null, report), mean);
            });
        }
    }

    private sealed class OmniQuantBase : MatQuantBase
    {
        public override string Name => "omniquant";
        public override bool TrainsSlices => true;
        public override bool SupportsResume => true;
        public override bool Streams => true;
        public override IReadOnlyList<AlgorithmOption> Options => OmniQuantConfig.Options;

        public override void Describe(MatQuantAlgorithm algorithm, JsonObject o)
        {
            var m = algorithm.MatQuant;
            o["codistill"] = string.Join(",", m.Codistill);
            o["codistill_weight"] = m.CodistillWeight;
            o["omniquant"] = OmniQuantAlgorithm.Describe(algorithm.Omni, algorithm.Omni.MaxFor(m.Bits, m.MasterBits));
        }

        public override IReadOnlyList<QuantizedLinearResult> Convert(MatQuantAlgorithm algorithm, QuantizationContext context) =>
            OmniQuantBlockwise.Run(context, algorithm.Config, algorithm.MatQuant, algorithm.Omni, algorithm.Name, algorithm.EpochLog);
    }
}
