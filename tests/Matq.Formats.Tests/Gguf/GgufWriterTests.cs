// GgufWriter's produced tensors: bytes are made when the file is written (not when added), the file is the same as with
// the bytes given up front, a copied tensor is produced once, and a producer that returns the wrong length fails the
// write with the tensor named and nothing written.
using Matq.Formats.Gguf;

namespace Matq.Formats.Tests.Gguf;

public sealed class GgufWriterTests
{
    private static readonly float[] Values = Bytes.Seeded(128, 1);

    [Fact]
    public void A_produced_tensor_is_encoded_at_write_time_and_gives_the_same_file()
    {
        int produced = 0;
        var eager = new GgufWriter().Add("general.architecture", "llama")
            .AddTensor("a.weight", [64, 2], GgmlType.Q8_0, GgufBlocks.Encode(GgmlType.Q8_0, Values));
        var lazy = new GgufWriter().Add("general.architecture", "llama")
            .AddTensor("a.weight", [64, 2], GgmlType.Q8_0, () => { produced++; return GgufBlocks.Encode(GgmlType.Q8_0, Values); });
        Assert.Equal(0, produced);
        Assert.Equal(eager.ToBytes(), lazy.ToBytes());
        Assert.Equal(1, produced);
    }

    [Fact]
    public void A_copied_produced_tensor_is_produced_once()
    {
        int produced = 0;
        var w = new GgufWriter().Add("general.architecture", "llama")
            .AddTensor("token_embd.weight", [64, 2], GgmlType.Q8_0, () => { produced++; return GgufBlocks.Encode(GgmlType.Q8_0, Values); })
            .CopyTensor("token_embd.weight", "output.weight");
        using var tmp = new TempDir();
        var path = tmp.File("m.gguf");
        w.Write(path);
        Assert.Equal(1, produced);
        var f = GgufFile.Open(path);
        Assert.Equal(["token_embd.weight", "output.weight"], f.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void A_producer_of_the_wrong_length_fails_the_write_and_leaves_no_file()
    {
        var w = new GgufWriter().Add("general.architecture", "llama")
            .AddTensor("blk.0.attn_q.weight", [64, 2], GgmlType.Q8_0, () => new byte[10]);
        using var tmp = new TempDir();
        var path = tmp.File("m.gguf");
        var e = Assert.Throws<MatqException>(() => w.Write(path));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains("got 10", e.Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }
}
