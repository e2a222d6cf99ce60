// Contract: round-to-nearest PTQ. Each selected linear W [out, in] gets α, z [out, nGroups] from min-max or the MSE
// clip search, then q = clamp(round(W/α) + z, 0, 2^c − 1); no calibration, no weight updates, no module swaps.
using Matq.Runtime;
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

    /// <summary>Rows quantized per pass: α, z and codes are per row (per channel or per group of a row), so a weight is
    /// quantized in row chunks with the same result; a vocabulary-sized head (128256 × 4096) then needs fp32 temporaries
    /// of one chunk (8192 × 4096 × 4 B = 128 MiB each), not of the whole 2 GiB matrix (several of them: 14.9 GiB host
    /// peak on the Llama-3.1-8B head before).</summary>
    public const int RowChunk = 8192;

    /// <summary>RTN of one weight [out, in] (any float dtype/device) under this config; the report's WeightMse is mean((W − Ŵ)²).</summary>
    public QuantizedLinearResult Quantize(string name, Tensor weight)
    {
        var sw = Stopwatch.StartNew();
        using var noGrad = no_grad();
        var spec = Config.Spec;
        int rows = checked((int)weight.shape[0]), cols = checked((int)weight.shape[1]);
        int g = spec.EffectiveGroupSize(cols), groups = (cols + g - 1) / g;
        var codes = new byte[(long)rows * cols];
        var scales = new float[(long)rows * groups];
        var zeros = new float[(long)rows * groups];
        double mse = 0;
        for (int r0 = 0; r0 < rows; r0 += RowChunk)
        {
            using var scope = NewDisposeScope();
            int n = Math.Min(RowChunk, rows - r0);
            var w = (n == rows ? weight : weight.narrow(0, r0, n)).detach().to(ScalarType.Float32);
            var (a, z) = Rtn.Clip == RtnClip.Mse
                ? MseClipSearch.Params(w, spec, Rtn.Grid)
                : TensorAffineQuantizer.ComputeParams(w, spec);
            var q = TensorAffineQuantizer.Quantize(w, a, z, g, spec.Bits);
            var deq = TensorAffineQuantizer.Dequantize(q, a, z, g);
            double chunkMse = (w - deq).Squared().mean().to(ScalarType.Float64).item<double>();
            mse += n == rows ? chunkMse : chunkMse * n / rows;
            q.to(ScalarType.Byte).cpu().contiguous().data<byte>().CopyTo(codes, checked(r0 * cols));
            a.to(ScalarType.Float32).cpu().contiguous().data<float>().CopyTo(scales, r0 * groups);
            z.to(ScalarType.Float32).cpu().contiguous().data<float>().CopyTo(zeros, r0 * groups);
        }
        var report = new LayerReport(name, rows, cols, spec.Bits, mse, null, null, sw.Elapsed.TotalSeconds);
        return new QuantizedLinearResult(name, rows, cols, Config.StoredGroupSize(cols), codes, scales, zeros, null, report);
    }
}
