// RTN with a CodeSpill (what `matq quantize` and `bench scale` give a streamed rtn run): every linear's codes go to the
// hidden file beside the artifact and are read back bit-identical to a run that keeps them in memory, through the
// block-streamed model as through the resident one, whole or as the pieces the artifact writer streams, and into the
// artifact; the file is gone after dispose.
using Matq.Formats.Artifact;
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Rtn;

public class RtnCodeSpillTests
{
    [Fact]
    public void Offloaded_codes_are_bit_identical_and_the_spill_file_is_deleted()
    {
        var config = PipelineFixtures.Rtn(4, group: 32);
        var dir = HfFixtures.TempDir();
        using var model = PipelineFixtures.LoadTiny();
        var kept = QuantizationRunner.Run(config, new QuantizationContext(model, CPU, seed: 7));
        string spillPath;
        using (var stream = LlamaBlockStream.Open(PipelineFixtures.TinyPath, CPU))
        using (var spill = new CodeSpill(Path.Combine(dir, "tiny.matq")))
        {
            spillPath = spill.Path;
            Assert.True(File.Exists(spillPath));
            Assert.StartsWith(".tiny.matq.", Path.GetFileName(spillPath));
            var offloaded = QuantizationRunner.Run(config, new QuantizationContext(stream.Model, CPU, seed: 7) { Blocks = stream, CodeSpill = spill });
            Assert.Equal(kept.Layers.Count, offloaded.Layers.Count);
            Assert.Equal(kept.Layers.Sum(l => (long)l.Codes.Length), spill.Length);   // every linear's codes are in the file
            for (int i = 0; i < kept.Layers.Count; i++)
            {
                var (a, b) = (kept.Layers[i], offloaded.Layers[i]);
                Assert.Equal(a.Name, b.Name);
                Assert.Equal(a.Codes, b.Codes);
                Assert.Equal(a.Scales, b.Scales);
                Assert.Equal(a.Zeros, b.Zeros);
                // the pieces the artifact writer streams are the same bytes, in order
                Assert.NotNull(b.CodePieces);
                Assert.Equal(a.Codes, b.CodePieces!().SelectMany(p => p.ToArray()).ToArray());
            }
            // the artifact written from the offloaded results holds the same codes (read back from the spill at write time)
            var spilledPath = Path.Combine(dir, "tiny.matq");
            ArtifactExport.Write(offloaded, stream.Model, spilledPath, null, stream.ReadSource);
            var artifact = MatqArtifact.Open(spilledPath);
            foreach (var layer in kept.Layers)
            {
                var stored = artifact.GetQuantized(layer.WeightName);
                Assert.Equal(layer.Codes, stored.Codes);
                Assert.Equal(layer.Scales, stored.Scales);
            }
        }
        Assert.False(File.Exists(spillPath));
    }
}
