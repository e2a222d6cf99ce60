// Contract: RtnAlgorithm.Quantize works through a weight RowChunk rows at a time (so a vocabulary-sized head needs fp32
// temporaries of one chunk); its codes, scales and zeros equal those of TensorAffineQuantizer over the whole weight, for
// min-max and the MSE clip search, with a short last chunk, and its WeightMse is the whole weight's mean squared error.
using Matq.Algorithms.Rtn;
using Matq.Quantization;
using Matq.Quantization.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Rtn;

public sealed class RtnRowChunkTests
{
    [Theory]
    [InlineData("minmax", 32)]
    [InlineData("mse", -1)]
    public void A_weight_of_several_row_chunks_quantizes_as_a_whole(string clip, int group)
    {
        var config = new QuantizationConfig("rtn", 4, group, options: new Dictionary<string, string> { ["clip"] = clip });
        var rtn = (RtnAlgorithm)AlgorithmRegistry.Create(config);
        int rows = 2 * RtnAlgorithm.RowChunk + 5, cols = 64;
        using var scope = NewDisposeScope();
        var w = randn(rows, cols, generator: manual_seed(11)).mul(0.02f);
        var got = rtn.Quantize("model.layers.0.mlp.down_proj", w);
        var spec = config.Spec;
        var (a, z) = clip == "mse" ? MseClipSearch.Params(w, spec, rtn.Rtn.Grid) : TensorAffineQuantizer.ComputeParams(w, spec);
        int g = spec.EffectiveGroupSize(cols);
        var q = TensorAffineQuantizer.Quantize(w, a, z, g, spec.Bits);
        Assert.Equal(q.to(ScalarType.Byte).contiguous().data<byte>().ToArray(), got.Codes);
        Assert.Equal(a.contiguous().data<float>().ToArray(), got.Scales);
        Assert.Equal(z.to(ScalarType.Float32).contiguous().data<float>().ToArray(), got.Zeros);
        double mse = (w - TensorAffineQuantizer.Dequantize(q, a, z, g)).square().mean().to(ScalarType.Float64).item<double>();
        Assert.Equal(mse, got.Report.WeightMse, mse * 1e-6);
    }
}
