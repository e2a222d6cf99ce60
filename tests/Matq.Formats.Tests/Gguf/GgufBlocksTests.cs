// GGUF block encoders against hand-built bytes of the published layouts (f16 d first, little-endian; nibbles: low =
// values 0..15, high = 16..31), and a writer → reader round trip of header, metadata, tensor infos and aligned data.
using Matq.Formats.Gguf;

namespace Matq.Formats.Tests.Gguf;

public sealed class GgufBlocksTests
{
    [Fact]
    public void Q8_0BlockIsHalfScaleThenSignedBytes()
    {
        var x = new float[32];
        x[0] = 127f; x[1] = -1f; x[31] = -127f;                 // max |x| = 127 → d = 1.0 = 0x3C00
        var b = GgufBlocks.Encode(GgmlType.Q8_0, x);
        var want = new byte[34];
        want[0] = 0x00; want[1] = 0x3C; want[2] = 127; want[3] = 0xFF; want[33] = 0x81;
        Assert.Equal(want, b);
    }

    [Fact]
    public void Q4_0BlockPutsValueJLowAndJPlus16High()
    {
        var x = new float[32];
        x[0] = -16f;                                             // largest magnitude → q = 0, d = -16/-8 = 2.0 = 0x4000
        x[16] = 14f;                                             // 14/2 + 8 = 15
        x[1] = 2f;                                               // 2/2 + 8 = 9
        var b = GgufBlocks.Encode(GgmlType.Q4_0, x);
        var want = new byte[18];
        want[0] = 0x00; want[1] = 0x40;
        for (int j = 0; j < 16; j++) want[2 + j] = 0x88;        // zeros encode as q = 8 in both nibbles
        want[2] = 0xF0;                                          // low nibble value 0 → 0, high nibble value 16 → 15
        want[3] = 0x89;                                          // value 1 → 9, value 17 → 8
        Assert.Equal(want, b);
        Assert.Equal(x, GgufBlocks.Decode(GgmlType.Q4_0, b, 32));
    }

    [Fact]
    public void Q4_1BlockIsScaleMinThenNibbles()
    {
        var x = Enumerable.Range(0, 32).Select(i => (float)(i % 16) - 1f).ToArray(); // min −1, max 14 → d = 1, m = −1
        var b = GgufBlocks.Encode(GgmlType.Q4_1, x);
        var want = new byte[20];
        want[0] = 0x00; want[1] = 0x3C;                          // d = 1.0
        want[2] = 0x00; want[3] = 0xBC;                          // m = −1.0
        for (int j = 0; j < 16; j++) want[4 + j] = (byte)(j | j << 4);
        Assert.Equal(want, b);
        Assert.Equal(x, GgufBlocks.Decode(GgmlType.Q4_1, b, 32));
    }

    [Fact]
    public void WriterAndReaderRoundTrip()
    {
        var path = Path.Combine(Path.GetTempPath(), $"matq-gguf-{Guid.NewGuid():N}.gguf");
        try
        {
            var q = new float[64];
            for (int i = 0; i < 64; i++) q[i] = i - 30;
            new GgufWriter()
                .Add("general.architecture", "llama").Add("llama.block_count", 4u).Add("llama.rope.freq_base", 10000f)
                .Add("tokenizer.ggml.tokens", new[] { "a", "b" }).Add("tokenizer.ggml.token_type", new[] { 1, 3 })
                .AddTensor("output_norm.weight", [3], GgmlType.F32, GgufBlocks.Encode(GgmlType.F32, [1f, 2f, 3f]))
                .AddTensor("blk.0.attn_q.weight", [32, 2], GgmlType.Q8_0, GgufBlocks.Encode(GgmlType.Q8_0, q))
                .Write(path);
            var bytes = File.ReadAllBytes(path);
            Assert.Equal("GGUF"u8.ToArray(), bytes[..4]);
            Assert.Equal(3u, BitConverter.ToUInt32(bytes, 4));
            Assert.Equal(2ul, BitConverter.ToUInt64(bytes, 8));
            Assert.Equal(5ul, BitConverter.ToUInt64(bytes, 16));
            var g = GgufFile.Open(path);
            Assert.Equal("llama", g.Get("general.architecture"));
            Assert.Equal(4u, g.Get("llama.block_count"));
            Assert.Equal(new object[] { "a", "b" }, (object[])g.Get("tokenizer.ggml.tokens")!);
            Assert.Equal(0, g.DataOffset % 32);
            var t = g.Tensors[1];
            Assert.Equal("blk.0.attn_q.weight", t.Name);
            Assert.Equal(new long[] { 2, 32 }, t.Shape);
            Assert.Equal(32, t.Offset);                          // 12 bytes of F32 padded to the 32-byte alignment
            var back = GgufBlocks.Decode(GgmlType.Q8_0, g.ReadTensorBytes(t), 64);
            for (int i = 0; i < 64; i++) Assert.Equal(q[i], back[i], 0.2f);
            Assert.Equal(new[] { 1f, 2f, 3f }, GgufBlocks.Decode(GgmlType.F32, g.ReadTensorBytes(g.Tensors[0]), 3));
            File.WriteAllBytes(path, bytes[..40]);
            Assert.Throws<MatqException>(() => GgufFile.Open(path));
        }
        finally { File.Delete(path); }
    }
}
