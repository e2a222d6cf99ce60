// k-quant tensors (q2_K..q6_K, 256-value super-blocks) and the q5_0/q5_1 fallbacks in a GGUF file: written, read back
// with their byte lengths and values intact; a k-quant row that is not a multiple of 256 is a one-line error naming the
// file and tensor. (The block layouts themselves are checked against ggml in tests/Matq.Tests/Export/GgufKQuantTests.cs.)
using System.Buffers.Binary;
using Matq.Formats.Gguf;

namespace Matq.Formats.Tests.Gguf;

public sealed class GgufKQuantFileTests
{
    [Theory]
    [InlineData(GgmlType.Q2_K, 84)]
    [InlineData(GgmlType.Q3_K, 110)]
    [InlineData(GgmlType.Q4_K, 144)]
    [InlineData(GgmlType.Q5_K, 176)]
    [InlineData(GgmlType.Q6_K, 210)]
    [InlineData(GgmlType.Q5_0, 22)]
    [InlineData(GgmlType.Q5_1, 24)]
    public void A_tensor_of_each_type_round_trips_through_a_file(GgmlType type, int blockBytes)
    {
        using var tmp = new TempDir();
        var rng = new Random(5);
        var x = Enumerable.Range(0, 3 * 512).Select(_ => (float)(rng.NextDouble() - 0.4)).ToArray();
        var data = GgufBlocks.Encode(type, x);
        int per = GgufBlocks.BlockValuesOf(type);
        Assert.Equal(x.Length / per * blockBytes, data.Length);
        var path = tmp.File("k.gguf");
        new GgufWriter().Add("general.architecture", "llama").AddTensor("blk.0.ffn_down.weight", [512, 3], type, data).Write(path);
        var f = GgufFile.Open(path);
        var t = f.Tensors.Single();
        Assert.Equal(type, t.Type);
        Assert.Equal(data.Length, t.ByteLength);
        Assert.Equal(data, f.ReadTensorBytes(t));
        var y = GgufBlocks.Decode(type, f.ReadTensorBytes(t), t.Count);
        // a 2..6-bit grid of [-0.4, 0.6): every value within a step of its source
        double step = 1.0 / ((1 << (type switch { GgmlType.Q2_K => 2, GgmlType.Q3_K => 3, GgmlType.Q4_K => 4, GgmlType.Q6_K => 6, _ => 5 })) - 1);
        for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(x[i] - y[i]) <= step, $"{type} value {i}: {x[i]} → {y[i]}");
    }

    [Fact]
    public void A_k_quant_row_that_is_not_a_multiple_of_256_names_the_file_and_tensor()
    {
        using var tmp = new TempDir();
        var data = GgufBlocks.Encode(GgmlType.Q4_K, new float[512]);
        var bytes = new GgufWriter().Add("general.architecture", "llama").AddTensor("blk.0.ffn_down.weight", [512, 1], GgmlType.Q4_K, data).ToBytes();
        int at = GgufReaderTests.InfoOf(bytes, "blk.0.ffn_down.weight") + 4;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at), 128);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(at + 8), 4);
        var path = tmp.File("m.gguf");
        File.WriteAllBytes(path, bytes);
        MatqAssert.Throws(() => GgufFile.Open(path), "m.gguf", "blk.0.ffn_down.weight", "multiple of 256");
    }
}
