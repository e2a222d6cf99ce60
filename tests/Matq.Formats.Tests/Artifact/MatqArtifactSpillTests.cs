// MatqArtifactWriter.SpillTo: staging tensors in a temp file beside the output writes the same bytes as holding them in
// memory, leaves no temp file behind (after a write, or after a failed one), and is refused once tensors were added.
// AddQuantizedStreamed: codes produced in pieces at write time give the same file as codes held, and a piece out of
// range or a short stream fails the write with nothing written.
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Artifact;

public sealed class MatqArtifactSpillTests
{
    private static MatqArtifactWriter Filled(string? spillTo)
    {
        var w = new MatqArtifactWriter("rtn", 4, 16, false, [4]);
        if (spillTo is not null) w.SpillTo(spillTo);
        var rng = new Random(3);
        var weights = Enumerable.Range(0, 24 * 40).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        w.AddQuantized(ArtifactTestData.Rtn("model.layers.0.mlp.up_proj.weight", weights, 24, 40, 16, 4));
        w.AddFloat("model.norm.weight", [40], Enumerable.Range(0, 40).Select(i => 1f + i / 64f).ToArray(), SafetensorsDtype.BF16);
        w.AddFloatRaw("model.embed_tokens.weight", SafetensorsDtype.F16, [3, 40],
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(Enumerable.Range(0, 120).Select(i => (Half)(i / 100f)).ToArray().AsSpan()).ToArray());
        return w;
    }

    [Fact]
    public void A_spilled_write_equals_the_in_memory_write_and_leaves_no_temp_file()
    {
        using var tmp = new TempDir();
        var held = tmp.File("held.matq");
        using (var w = Filled(null)) w.Write(held);
        var spilled = tmp.File("spilled.matq");
        using (var w = Filled(spilled))
        {
            Assert.Equal(2, Directory.GetFiles(tmp.Path, "*", SearchOption.AllDirectories).Length);   // held.matq + the staging file
            w.Write(spilled);
        }
        Assert.Equal(File.ReadAllBytes(held), File.ReadAllBytes(spilled));
        Assert.Equal(["held.matq", "spilled.matq"], Directory.GetFiles(tmp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(3, MatqArtifact.Open(spilled).Floats.Count + MatqArtifact.Open(spilled).Quantized.Count);
    }

    [Fact]
    public void A_writer_disposed_without_writing_leaves_nothing()
    {
        using var tmp = new TempDir();
        using (Filled(tmp.File("never.matq"))) { }
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }

    [Fact]
    public void SpillTo_after_a_tensor_was_added_is_refused()
    {
        using var tmp = new TempDir();
        using var w = Filled(null);
        Assert.Throws<InvalidOperationException>(() => w.SpillTo(tmp.File("late.matq")));
    }

    private static MatqArtifactWriter Streamed(string spillTo, Func<byte[], IEnumerable<ReadOnlyMemory<byte>>> pieces)
    {
        var w = new MatqArtifactWriter("rtn", 4, 16, false, [4]);
        w.SpillTo(spillTo);
        var rng = new Random(3);
        var weights = Enumerable.Range(0, 24 * 40).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var t = ArtifactTestData.Rtn("model.layers.0.mlp.up_proj.weight", weights, 24, 40, 16, 4);
        w.AddQuantizedStreamed(t.Name, t.OutFeatures, t.InFeatures, t.GroupSize, t.Scales, t.Zeros, t.Perm, () => pieces(t.Codes));
        w.AddFloat("model.norm.weight", [40], Enumerable.Range(0, 40).Select(i => 1f + i / 64f).ToArray(), SafetensorsDtype.BF16);
        w.AddFloatRaw("model.embed_tokens.weight", SafetensorsDtype.F16, [3, 40],
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(Enumerable.Range(0, 120).Select(i => (Half)(i / 100f)).ToArray().AsSpan()).ToArray());
        return w;
    }

    // the codes in uneven pieces (7 values, then 100 at a time), as a reader of a file would hand them out
    private static IEnumerable<ReadOnlyMemory<byte>> Pieces(byte[] codes)
    {
        yield return codes.AsMemory(0, 7);
        for (int at = 7; at < codes.Length; at += 100) yield return codes.AsMemory(at, Math.Min(100, codes.Length - at));
    }

    [Fact]
    public void Streamed_codes_write_the_same_file_as_held_codes()
    {
        using var tmp = new TempDir();
        var held = tmp.File("held.matq");
        using (var w = Filled(null)) w.Write(held);
        var streamed = tmp.File("streamed.matq");
        using (var w = Streamed(streamed, Pieces)) w.Write(streamed);
        Assert.Equal(File.ReadAllBytes(held), File.ReadAllBytes(streamed));
    }

    [Theory]
    [InlineData("range", "code 16 at [1, 3] does not fit master_bits = 4")]
    [InlineData("short", "its codes hold 959 values, [24, 40] needs 960")]
    [InlineData("long", "its codes hold more than the 960 values of [24, 40]")]
    public void A_bad_code_stream_fails_the_write_and_writes_nothing(string fault, string message)
    {
        using var tmp = new TempDir();
        var path = tmp.File("bad.matq");
        IEnumerable<ReadOnlyMemory<byte>> Bad(byte[] codes)
        {
            var c = (byte[])codes.Clone();
            if (fault == "range") c[43] = 16;
            if (fault == "short") c = c[..^1];
            if (fault == "long") c = [.. c, 0];
            return Pieces(c);
        }
        using (var w = Streamed(path, Bad))
        {
            var e = Assert.Throws<MatqException>(() => w.Write(path));
            Assert.Contains(message, e.Message, StringComparison.Ordinal);
        }
        Assert.Empty(Directory.GetFiles(tmp.Path, "*", SearchOption.AllDirectories));
    }
}
