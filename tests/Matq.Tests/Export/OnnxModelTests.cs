// The hand-written ONNX protobuf encoder as ONNX Runtime reads it: attributes of every kind, int64/float/uint8 raw data,
// symbolic dims; MatMulNBitsLayout's reference dequantization is what ORT 1.31 computes for bits 2, 4 and 8 (ragged last
// block included); ORT 1.31 itself refuses bits = 3, which is why the exporter does; malformed graphs are refused.
using Matq.Formats.Onnx;
using Matq.Kernels.Packing;
using Matq.Tests.Models;
using Microsoft.ML.OnnxRuntime;

namespace Matq.Tests.Export;

public sealed class OnnxModelTests
{
    [Fact]
    public void A_hand_built_graph_with_every_attribute_kind_loads_and_runs_in_onnx_runtime()
    {
        // y = Concat(Gemm(x, W, b; alpha, transB), LeakyRelu(x; alpha)) over axis 1, then Gather rows by an int64 initializer
        var g = new OnnxGraph("t");
        g.Inputs.Add(new OnnxValueInfo("x", OnnxDataType.Float, ["batch", 3L]));
        float[] w = [1, 2, 3, 4, 5, 6]; // [2, 3], used transposed
        float[] b = [0.5f, -1f];
        g.Initializers.Add(OnnxTensor.FromFloats("W", [2, 3], w));
        g.Initializers.Add(OnnxTensor.FromFloats("b", [2], b));
        g.Initializers.Add(OnnxTensor.FromInt64("cols", [2], [4L, 0L]));
        g.Nodes.Add(new OnnxNode("Gemm", ["x", "W", "b"], ["gemm"], "gemm", [OnnxAttribute.Of("alpha", 2f), OnnxAttribute.Of("transB", 1L)]));
        g.Nodes.Add(new OnnxNode("LeakyRelu", ["x"], ["leaky"], "leaky", [OnnxAttribute.Of("alpha", 0.25f)]));
        g.Nodes.Add(new OnnxNode("Concat", ["gemm", "leaky"], ["cat"], "cat", [OnnxAttribute.Of("axis", 1L)]));
        g.Nodes.Add(new OnnxNode("Gather", ["cat", "cols"], ["y"], "gather", [OnnxAttribute.Of("axis", 1L)]));
        g.Outputs.Add(new OnnxValueInfo("y", OnnxDataType.Float, ["batch", 2L]));
        var model = new OnnxModel(g) { DocString = "test" };
        model.Metadata.Add(new("k", "v"));

        float[] x = [1, -2, 3, -4, 5, -6];
        var y = RunFloat(model, "x", x, [2, 3], "y");
        // row r: gemm = 2·(x·Wᵀ) + b; leaky = x ≥ 0 ? x : x/4; cat = [gemm0, gemm1, leaky0, leaky1, leaky2]; y = [cat4, cat0]
        float[] expected = new float[4];
        for (int r = 0; r < 2; r++)
        {
            float gemm0 = 2 * (x[r * 3] * w[0] + x[r * 3 + 1] * w[1] + x[r * 3 + 2] * w[2]) + b[0];
            float l2 = x[r * 3 + 2] >= 0 ? x[r * 3 + 2] : x[r * 3 + 2] / 4;
            expected[r * 2] = l2;
            expected[r * 2 + 1] = gemm0;
        }
        Assert.Equal(expected, y);
        using var session = new InferenceSession(model.ToBytes());
        Assert.Equal("v", session.ModelMetadata.CustomMetadataMap["k"]);
        Assert.Equal("matq", session.ModelMetadata.ProducerName);
    }

    [Theory]
    [InlineData(2, 16, 40)]
    [InlineData(4, 32, 80)]
    [InlineData(4, 16, 64)]
    [InlineData(8, 64, 100)]
    [InlineData(8, 128, 128)]
    public void Matmulnbits_computes_what_the_reference_layout_defines(int bits, int block, int k)
    {
        const int n = 5, m = 3;
        var rng = new Random(bits * 1000 + k);
        int blocks = (k + block - 1) / block, top = (1 << bits) - 1;
        var codes = Enumerable.Range(0, n * k).Select(_ => (byte)rng.Next(top + 1)).ToArray();
        var scales = Enumerable.Range(0, n * blocks).Select(_ => (float)(0.01 + rng.NextDouble() * 0.1)).ToArray();
        var zps = Enumerable.Range(0, n * blocks).Select(_ => (byte)rng.Next(top + 1)).ToArray();
        var w = MatMulNBitsLayout.Pack(codes, n, k, bits, block, scales, zps);
        var deq = MatMulNBitsLayout.Dequantize(w);
        // the reference itself against the unpacked inputs
        for (int i = 0; i < n * k; i++)
            Assert.Equal((codes[i] - zps[i / k * blocks + i % k / block]) * scales[i / k * blocks + i % k / block], deq[i]);

        var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var y = RunFloat(SingleMatMulNBits(w, m), "A", x, [m, k], "Y");
        for (int r = 0; r < m; r++)
            for (int c = 0; c < n; c++)
            {
                double e = 0;
                for (int j = 0; j < k; j++) e += (double)x[r * k + j] * deq[c * k + j];
                Assert.True(Math.Abs(y[r * n + c] - e) < 1e-4, $"bits {bits} block {block} K {k}: Y[{r}, {c}] = {y[r * n + c]}, reference {e}");
            }
    }

    [Fact]
    public void Onnx_runtime_1_31_refuses_matmulnbits_with_3_bits()
    {
        // packed by hand (the layout refuses 3 bits): K = 32, one block of 32·3/8 = 12 bytes per row
        const int n = 2, k = 32, block = 32;
        var b = new byte[n * 12];
        var w = new MatMulNBitsWeights(k, n, 3, block, b, [1f, 1f], BitPacking.PackU8([4, 4], 3));
        var model = SingleMatMulNBits(w with { ZeroPoints = [4, 4] }, 1);
        var e = Assert.ThrowsAny<OnnxRuntimeException>(() => new InferenceSession(model.ToBytes()).Dispose());
        Assert.Contains("Only 2b, 4b and 8b", e.Message);
    }

    [Fact]
    public void A_node_reading_an_undefined_value_is_refused_before_writing()
    {
        var g = new OnnxGraph("bad");
        g.Inputs.Add(new OnnxValueInfo("x", OnnxDataType.Float, [1L]));
        g.Nodes.Add(new OnnxNode("Add", ["x", "nope"], ["y"], "add", []));
        g.Outputs.Add(new OnnxValueInfo("y", OnnxDataType.Float, [1L]));
        var e = Assert.Throws<MatqException>(() => new OnnxModel(g).ToBytes());
        Assert.Contains("'nope'", e.Message);
        var path = Path.Combine(HfFixtures.TempDir(), "bad.onnx");
        Assert.Throws<MatqException>(() => new OnnxModel(g).Write(path));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_tensor_whose_bytes_do_not_match_its_shape_is_refused()
    {
        var g = new OnnxGraph("bad");
        g.Initializers.Add(new OnnxTensor("t", OnnxDataType.Float, [2, 2], new byte[12]));
        var e = Assert.Throws<MatqException>(() => new OnnxModel(g).ToBytes());
        Assert.Contains("needs 16 bytes, got 12", e.Message);
    }

    private static OnnxModel SingleMatMulNBits(MatMulNBitsWeights w, int m)
    {
        var g = new OnnxGraph("mmnb");
        g.Inputs.Add(new OnnxValueInfo("A", OnnxDataType.Float, [(long)m, (long)w.K]));
        g.Initializers.Add(OnnxTensor.FromBytes("B", w.BDims, w.B));
        g.Initializers.Add(OnnxTensor.FromFloats("scales", w.ScalesDims, w.Scales));
        g.Initializers.Add(OnnxTensor.FromBytes("zp", w.ZeroPointsDims, w.ZeroPoints));
        g.Nodes.Add(new OnnxNode("MatMulNBits", ["A", "B", "scales", "zp"], ["Y"], "mm",
            [OnnxAttribute.Of("K", (long)w.K), OnnxAttribute.Of("N", (long)w.N), OnnxAttribute.Of("bits", (long)w.Bits),
             OnnxAttribute.Of("block_size", (long)w.BlockSize)], OnnxModel.MicrosoftDomain));
        g.Outputs.Add(new OnnxValueInfo("Y", OnnxDataType.Float, [(long)m, (long)w.N]));
        var model = new OnnxModel(g);
        model.Opsets[OnnxModel.MicrosoftDomain] = 1;
        return model;
    }

    private static float[] RunFloat(OnnxModel model, string input, float[] x, long[] shape, string output)
    {
        using var session = new InferenceSession(model.ToBytes());
        using var value = OrtValue.CreateTensorValueFromMemory(x, shape);
        using var run = new RunOptions();
        using var outputs = session.Run(run, [input], [value], [output]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }
}
