// MatqArtifactWriter.SpillTo: staging tensors in a temp file beside the output writes the same bytes as holding them in
// memory, leaves no temp file behind (after a write, or after a failed one), and is refused once tensors were added.
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
}
