// ModelSource opens HF folders, lone .safetensors files and .matq artifacts by content, and finds the tokenizer folder.
using Matq.Loading;
using Matq.Quantization.Pipeline;
using Matq.Tests.Models;
using Matq.Tests.Pipeline;

namespace Matq.Tests.Loading;

public sealed class ModelSourceTests
{
    [Fact]
    public void Hf_folder_and_safetensors_file_open_as_float_models()
    {
        using var folder = ModelSource.Open(PipelineFixtures.TinyPath);
        Assert.Equal(ModelSourceKind.HfFolder, folder.Kind);
        Assert.Equal(PipelineFixtures.TinyPath, folder.TokenizerFolder);
        Assert.Null(folder.Served);

        var dir = HfFixtures.CopyToTemp(PipelineFixtures.Tiny);
        var file = Path.Combine(dir, "weights.safetensors");
        File.Move(Path.Combine(dir, "model.safetensors"), file);
        using var single = ModelSource.Open(file);
        Assert.Equal(ModelSourceKind.SafetensorsFile, single.Kind);
        Assert.Equal(dir, single.TokenizerFolder);
        Assert.Equal(PipelineFixtures.Floats(folder.Model.get_parameter("lm_head.weight")!), PipelineFixtures.Floats(single.Model.get_parameter("lm_head.weight")!));

        Assert.Contains("--bits 4 applies to .matq artifacts", Assert.Throws<MatqException>(() => ModelSource.Open(PipelineFixtures.TinyPath, bits: 4)).Message);
        Assert.Contains("does not exist", Assert.Throws<MatqException>(() => ModelSource.Open(Path.Combine(dir, "nope"))).Message);
    }

    [Fact]
    public void Matq_artifact_opens_served_with_its_tokenizer_folder()
    {
        var src = PipelineFixtures.TinyWithTokenizer();
        var (path, _) = PipelineFixtures.WriteTinyArtifact(PipelineFixtures.Rtn(8), src);
        using (var opened = ModelSource.Open(path))
        {
            Assert.Equal(ModelSourceKind.MatqArtifact, opened.Kind);
            Assert.Equal(8, opened.Served!.Bits);
            Assert.Equal(ArtifactExport.TokenizerFolderFor(path), opened.RequireTokenizerFolder());
            Assert.Contains("served at 8 bits", opened.Describe());
        }
        using (var at3 = ModelSource.Open(path, bits: 3))
            Assert.Equal(3, at3.Served!.Bits);

        // detection is by content: the same artifact renamed to .safetensors is still served
        var renamed = Path.ChangeExtension(path, ".safetensors");
        File.Copy(path, renamed);
        using (var again = ModelSource.Open(renamed, bits: 2))
        {
            Assert.Equal(ModelSourceKind.MatqArtifact, again.Kind);
            Assert.Equal(ArtifactExport.TokenizerFolderFor(path), again.TokenizerFolder);   // the reference names the folder
        }

        Directory.Delete(ArtifactExport.TokenizerFolderFor(path), recursive: true);
        using var orphan = ModelSource.Open(path);
        Assert.Null(orphan.TokenizerFolder);
        Assert.Contains("is missing", Assert.Throws<MatqException>(() => orphan.RequireTokenizerFolder()).Message);
    }
}
