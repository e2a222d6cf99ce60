// Contract: whole-model GPTQ-exact/Athena for a Llama-family model: sequential calibration (Matq.Calibration) feeding
// every decoder linear to AthenaSolver; the model's linears end up holding ŵ, and per-linear results come back on the CPU.
using Matq.Calibration;
using Matq.Data;
using Matq.Models;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

public static class AthenaModelQuantizer
{
    /// <summary>Quantizes every decoder linear of <paramref name="model"/> in place (weights become ŵ in the model dtype)
    /// from calibration windows <paramref name="samples"/>; returns results in execution order (codes/scales/zeros on the CPU).</summary>
    public static IReadOnlyList<LayerQuantResult> Quantize(LlamaForCausalLM model, IReadOnlyList<int[]> samples, AthenaConfig config,
        int batchSize = 8, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var results = new List<LayerQuantResult>();
        try
        {
            SequentialCalibrator.Run(model, samples, linear =>
            {
                var result = AthenaSolver.Quantize(linear.Name, linear.Weight, linear.Hessian, config);
                Tensor wHat = result.Dequantize();
                results.Add(ToCpu(result));
                var r = result.Report;
                progress?.Invoke($"{r.Layer}: H-error {r.FinalError:G4} (RTN {r.RtnError:G4}, ×{r.RatioVsRtn:F3}), damp {r.PercDampUsed:G2}, {r.Seconds:F2}s");
                result.Dispose();
                return wHat;
            }, batchSize, progress: progress);
            return results;
        }
        catch
        {
            foreach (var r in results) r.Dispose();
            throw;
        }
    }

    /// <summary>Same, drawing <paramref name="count"/> windows of <paramref name="length"/> tokens from a token stream (seeded).</summary>
    public static IReadOnlyList<LayerQuantResult> Quantize(LlamaForCausalLM model, ReadOnlySpan<int> tokens, int count, int length, int seed,
        AthenaConfig config, int batchSize = 8, Action<string>? progress = null) =>
        Quantize(model, CalibrationSampler.Sample(tokens, count, length, seed), config, batchSize, progress);

    private static LayerQuantResult ToCpu(LayerQuantResult r)
    {
        var w = r.Weights;
        var cpu = new QuantizedTensor(OwnCpuCopy(w.Codes), OwnCpuCopy(w.Scales), OwnCpuCopy(w.Zeros), w.Spec, w.GroupSize);
        return new LayerQuantResult(cpu, r.Report);
    }

    // a tensor of its own (never an alias of the disposed original), outside every dispose scope
    private static Tensor OwnCpuCopy(Tensor t) => (t.device_type == DeviceType.CPU ? t.clone() : t.cpu()).DetachFromDisposeScope();
}
