// Contract: round-to-nearest PTQ. Each selected linear W [out, in] gets α, z [out, nGroups] from min-max or the MSE
// clip search, then q = clamp(round(W/α) + z, 0, 2^c − 1); no calibration, no weight updates, no module swaps.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Rtn;

public sealed class RtnAlgorithm : QuantizationAlgorithm
{
    public const string MethodName = "rtn";

    /// <summary>The registry row: "rtn", no calibration, options clip / clip-min / clip-step.</summary>
    public static AlgorithmRegistration<RtnConfig> Registration { get; } = new(
        MethodName,
        "round-to-nearest with min-max or MSE-optimal clipping per group (no calibration)",
        NeedsCalibration: false,
        Options:
        [
            new AlgorithmOption(RtnConfig.ClipKey, "range per group: minmax, or mse (search shrink factors for the least squared error)", "minmax"),
            new AlgorithmOption(RtnConfig.ClipMinKey, "smallest shrink factor the mse search tries", "0.5"),
            new AlgorithmOption(RtnConfig.ClipStepKey, "distance between tried shrink factors", "0.05"),
        ],
        RtnConfig.Parse,
        (config, rtn) => new RtnAlgorithm(config, rtn));

    public RtnAlgorithm(QuantizationConfig config, RtnConfig rtn) : base(config) =>
        Rtn = rtn ?? throw new ArgumentNullException(nameof(rtn));

    public RtnConfig Rtn { get; }

    public override string Name => MethodName;

    public override bool Streams => true;

    public override JsonObject DescribeSettings() => new()
    {
        ["clip"] = Rtn.Clip == RtnClip.Mse ? "mse" : "minmax",
        ["clip_grid"] = Rtn.Clip == RtnClip.Mse ? new JsonArray(Rtn.Grid.Select(f => (JsonNode?)JsonValue.Create(f)).ToArray()) : null,
    };

    public override IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var selected = context.Selected;
        var progress = context.Progress;
        progress.Started();
        var results = new List<QuantizedLinearResult>(selected.Count);
        foreach (var block in selected.GroupBy(s => s.Block))
        {
            progress.BlockStarted(block.Key);
            using (context.Hold(block.Key))
            {
                foreach (var layer in block)
                {
                    context.Cancellation.ThrowIfCancellationRequested();
                    var result = Quantize(layer.Name, layer.Weight);
                    results.Add(context.CodeSpill is { } spill ? spill.Offload(result) : result);
                    progress.LayerDone(block.Key, result.Report);
                }
            }
            if (context.Blocks is not null) Runtime.HostMemoryRelease.AfterBlock();   // streamed: the block's buffers back to the OS
            progress.BlockDone(block.Key);
        }
        return results;
    }

    /// <summary>RTN of one weight [out, in] (any float dtype/device) under this config; the report's WeightMse is mean((W − Ŵ)²).</summary>
    public QuantizedLinearResult Quantize(string name, Tensor weight)
    {
        var sw = Stopwatch.StartNew();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var spec = Config.Spec;
        var w = weight.detach().to(ScalarType.Float32);
        int cols = checked((int)w.shape[1]);
        int g = spec.EffectiveGroupSize(cols);
        var (scales, zeros) = Rtn.Clip == RtnClip.Mse
            ? MseClipSearch.Params(w, spec, Rtn.Grid)
            : TensorAffineQuantizer.ComputeParams(w, spec);
        var codes = TensorAffineQuantizer.Quantize(w, scales, zeros, g, spec.Bits);
        var deq = TensorAffineQuantizer.Dequantize(codes, scales, zeros, g);
        double mse = (w - deq).square().mean().to(ScalarType.Float64).item<double>();
        var report = new LayerReport(name, checked((int)w.shape[0]), cols, spec.Bits, mse, null, null, sw.Elapsed.TotalSeconds);
        return QuantizedLinearResult.FromTensors(name, codes, scales, zeros, Config.StoredGroupSize(cols), null, report);
    }
}
