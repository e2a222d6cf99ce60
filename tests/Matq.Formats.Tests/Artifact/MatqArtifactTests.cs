// .matq round trips (a small hand-made artifact and the whole tiny-llama fixture), the dequantization reference,
// the stored layout, and what the writer refuses.
using System.Text.Json;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Artifact;

public sealed class MatqArtifactTests
{
    [Fact]
    public void Small_artifact_round_trips_every_part()
    {
        using var tmp = new TempDir();
        var path = tmp.File("small.matq");
        var writer = ArtifactTestData.SmallWriter();
        writer.Write(path);
        var a = MatqArtifact.Open(path);

        var md = a.Metadata;
        Assert.Equal(1, md.FormatVersion);
        Assert.Equal("rtn", md.Algorithm);
        Assert.Equal(4, md.MasterBits);
        Assert.Equal(4, md.GroupSize);
        Assert.False(md.Symmetric);
        Assert.Equal([4, 2], md.TrainedBits);
        Assert.Equal(1.0, md.AlgorithmConfig.GetProperty("clip").GetDouble());
        Assert.Equal("llama", md.ModelConfig.GetProperty("model_type").GetString());
        Assert.Equal("hf-tokenizer-json", md.Tokenizer!.Kind);
        Assert.Equal(["tokenizer.json"], md.Tokenizer.Files);
        Assert.Equal("matq tests", md.CreatedBy);
        Assert.Null(md.Extra);
        Assert.Equal(["layers.0.proj.weight", "layers.1.proj.weight"], md.Quantized.Select(q => q.Name));

        var expected0 = ArtifactTestData.Rtn("layers.0.proj.weight", Bytes.Seeded(30, 1), 5, 6, 4, 4, ArtifactTestData.SeededPerm(6, 2));
        var q0 = a.GetQuantized("layers.0.proj.weight");
        Assert.Equal((5, 6, 4, 2), (q0.OutFeatures, q0.InFeatures, q0.GroupSize, q0.GroupCount));
        Assert.Equal(expected0.Codes, q0.Codes);
        Assert.Equal(expected0.Scales, q0.Scales);
        Assert.Equal(expected0.Zeros, q0.Zeros);
        Assert.Equal(expected0.Perm, q0.Perm);
        var side = Assert.Single(q0.SideTensors);
        Assert.Equal("overflow", side.Suffix);
        Assert.Equal([2L, 2], side.Shape);
        Assert.Equal(17, BitConverter.ToInt32(side.Data, 8));

        var q1 = a.GetQuantized("layers.1.proj.weight");
        Assert.Equal((-1, 6, 1), (q1.GroupSize, q1.GroupWidth, q1.GroupCount));
        Assert.Null(q1.Perm);
        Assert.Empty(q1.SideTensors);

        Assert.Equal(["norm.weight", "embed.weight"], a.Floats.Select(f => f.Name));
        Assert.Equal([1, 1, 1, 0.5f, 2, 1], a.GetFloat("norm.weight").Values);
        var embed = a.GetFloat("embed.weight");
        Assert.Equal(SafetensorsDtype.BF16, embed.StoredDtype);
        Assert.Equal([4L, 6], embed.Shape);
        var bf = SafetensorsDtypes.ToFloat32(SafetensorsDtype.BF16, SafetensorsDtypes.Float32ToBf16(Bytes.Seeded(24, 4)), "e");
        Assert.Equal(bf, embed.Values);

        Assert.True(a.IsQuantized("layers.1.proj.weight"));
        Assert.False(a.IsQuantized("norm.weight"));
        MatqAssert.Throws(() => a.GetQuantized("norm.weight"), "small.matq", "norm.weight");
        MatqAssert.Throws(() => a.GetFloat("missing"), "small.matq", "missing");
        Assert.Equal(md.ToJson(), MatqArtifact.ReadMetadata(path).ToJson());
        Assert.Equal(writer.BuildMetadata().ToJson(), md.ToJson());
    }

    [Fact]
    public void Stored_layout_is_the_documented_one()
    {
        using var tmp = new TempDir();
        var path = tmp.File("layout.matq");
        ArtifactTestData.SmallWriter().Write(path);
        using var f = SafetensorsFile.Open(path);
        string[] names = ["layers.0.proj.weight.qcodes", "layers.0.proj.weight.scales", "layers.0.proj.weight.zeros",
            "layers.0.proj.weight.perm", "layers.0.proj.weight.overflow", "norm.weight",
            "layers.1.proj.weight.qcodes", "layers.1.proj.weight.scales", "layers.1.proj.weight.zeros", "embed.weight"];
        Assert.Equal(names, f.Tensors.Select(t => t.Name));
        Assert.Equal((SafetensorsDtype.U8, "[5, 6]"), (f.Get(names[0]).Dtype, f.Get(names[0]).ShapeText));
        Assert.Equal((SafetensorsDtype.F32, "[5, 2]"), (f.Get(names[1]).Dtype, f.Get(names[1]).ShapeText));
        Assert.Equal((SafetensorsDtype.F32, "[5, 2]"), (f.Get(names[2]).Dtype, f.Get(names[2]).ShapeText));
        Assert.Equal((SafetensorsDtype.I32, "[6]"), (f.Get(names[3]).Dtype, f.Get(names[3]).ShapeText));
        Assert.Equal((SafetensorsDtype.F32, "[3, 1]"), (f.Get(names[7]).Dtype, f.Get(names[7]).ShapeText));
        Assert.Equal("4", f.Metadata["matq.master_bits"]);
        Assert.Equal("4,2", f.Metadata["matq.trained_bits"]);
        Assert.Equal("rtn", f.Metadata["matq.algorithm"]);
        using var doc = JsonDocument.Parse(f.Metadata["matq"]);
        var q = doc.RootElement.GetProperty("quantized")[0];
        Assert.Equal("""{"name":"layers.0.proj.weight","shape":[5,6],"group_size":4,"perm":true,"side":["overflow"]}""", q.GetRawText());
        Assert.True(MatqArtifact.IsArtifact(f));
    }

    [Fact]
    public void Dequantize_follows_perm_and_groups_and_stays_within_half_a_step()
    {
        int outF = 7, inF = 13, g = 4;
        var w = Bytes.Seeded(outF * inF, 21);
        var perm = ArtifactTestData.SeededPerm(inF, 22);
        var q = ArtifactTestData.Rtn("w", w, outF, inF, g, 8, perm);
        Assert.Equal(4, q.GroupCount); // ceil(13 / 4), last group 1 column wide
        var deq = q.Dequantize();
        for (int o = 0; o < outF; o++)
        {
            for (int k = 0; k < inF; k++)
            {
                float scale = q.Scales[o * q.GroupCount + k / g];
                int col = perm[k];
                Assert.InRange(Math.Abs(deq[o * inF + col] - w[o * inF + col]), 0, scale / 2 + 1e-6f);
            }
        }
        // closed form: one row, one group, scale 0.5, zero 2 -> 0.5 * (code - 2)
        var tiny = new MatqQuantizedTensor("t", 1, 3, -1, [0, 2, 5], [0.5f], [2f], [2, 0, 1]);
        Assert.Equal([0f, 1.5f, -1f], tiny.Dequantize()); // stored k -> original perm[k]
    }

    [Fact]
    public void Tiny_llama_quantized_to_an_artifact_reads_back_whole()
    {
        using var tmp = new TempDir();
        var path = tmp.File("tiny-llama.matq");
        var configJson = File.ReadAllText(Fixtures.Path("tiny-llama", "config.json"));
        var writer = new MatqArtifactWriter("matquant", 8, 32, false, [8, 4, 2])
        {
            ModelConfig = MatqMetadata.ParseObject(configJson, "model_config"),
            AlgorithmConfig = MatqMetadata.ParseObject("""{"base":"rtn","weights":{"8":0.1,"4":0.1,"2":1.0}}""", "algorithm_config"),
            Tokenizer = new MatqTokenizerRef("gpt2-bpe", ["encoder.json", "vocab.bpe"]),
            Extra = MatqMetadata.ParseObject("""{"note":"test"}""", "extra"),
        };
        var originals = new Dictionary<string, float[]>();
        using (var ck = SafetensorsCheckpoint.Open(Fixtures.Path("tiny-llama")))
        {
            foreach (var name in ck.TensorNames.Order(StringComparer.Ordinal))
            {
                var info = ck.Get(name);
                var values = ck.ReadFloat32(name);
                originals[name] = values;
                if (name.StartsWith("model.layers.") && info.Shape.Length == 2)
                    writer.AddQuantized(ArtifactTestData.Rtn(name, values, (int)info.Shape[0], (int)info.Shape[1], 32, 8));
                else
                    writer.AddFloatRaw(name, info.Dtype, info.Shape, ck.ReadBytes(name));
            }
        }
        writer.Write(path);
        var a = MatqArtifact.Open(path);
        Assert.Equal(14, a.Quantized.Count);
        Assert.Equal(7, a.Floats.Count);
        Assert.Equal(64, a.Metadata.ModelConfig.GetProperty("hidden_size").GetInt32());
        Assert.Equal([8, 4, 2], a.Metadata.TrainedBits);
        Assert.Equal("test", a.Metadata.Extra!.Value.GetProperty("note").GetString());
        var down = a.GetQuantized("model.layers.0.mlp.down_proj.weight");
        Assert.Equal((64, 176, 6), (down.OutFeatures, down.InFeatures, down.GroupCount));
        foreach (var q in a.Quantized)
        {
            var deq = q.Dequantize();
            var orig = originals[q.Name];
            for (int i = 0; i < deq.Length; i++)
                Assert.InRange(Math.Abs(deq[i] - orig[i]), 0, q.Scales[i / q.InFeatures * q.GroupCount + i % q.InFeatures / q.GroupWidth] / 2 + 1e-6f);
        }
        Assert.Equal(originals["model.embed_tokens.weight"], a.GetFloat("model.embed_tokens.weight").Values);
    }

    [Fact]
    public void Writer_refuses_what_the_reader_would_refuse()
    {
        MatqAssert.Throws(() => new MatqArtifactWriter("rtn", 9, -1, false, [8]), "master_bits", "1..8");
        MatqAssert.Throws(() => new MatqArtifactWriter("rtn", 8, 0, false, [8]), "group_size", "-1");
        MatqAssert.Throws(() => new MatqArtifactWriter("rtn", 4, -1, false, [8]), "trained_bits", "8");
        MatqAssert.Throws(() => new MatqArtifactWriter("", 4, -1, false, [4]), "algorithm");
        MatqAssert.Throws(() => new MatqArtifactWriter("rtn", 4, -1, false, []), "trained_bits");

        var w = new MatqArtifactWriter("rtn", 4, 2, false, [4]);
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 16], [1, 1], [0, 0]), "'a'", "code 16", "master_bits = 4");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3], [1, 1], [0, 0]), "'a'", "codes");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1], [0]), "'a'", "scales", "[1, 2]");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, float.NaN], [0, 0]), "'a'", "scale NaN", "[0, 1]");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, 0], [0, 0]), "'a'", "> 0");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, 1], [0, float.PositiveInfinity]), "'a'", "zero point");
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, 1], [0, 0], perm: [0, 1, 1, 3]), "'a'", "perm");
        w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, 1], [0, 0]);
        MatqAssert.Throws(() => w.AddQuantized("a", 1, 4, [1, 2, 3, 4], [1, 1], [0, 0]), "'a'", "already");
        MatqAssert.Throws(() => w.AddFloat("a", [1], [1f]), "'a'", "taken");
        MatqAssert.Throws(() => w.AddFloat("a.scales", [1], [1f]), "'a.scales'", "taken");
        MatqAssert.Throws(() => w.AddFloat("b.qcodes", [1], [1f]), "b.qcodes", "reserved");
        MatqAssert.Throws(() => w.AddFloat("n", [2], [1f, float.NaN]), "'n'", "NaN", "index 1");
        MatqAssert.Throws(() => w.AddFloat("h", [1], [1e6f], SafetensorsDtype.F16), "'h'", "overflowed");
        MatqAssert.Throws(() => w.AddFloatRaw("i", SafetensorsDtype.I64, [1], new byte[8]), "'i'", "I64");
        MatqAssert.Throws(() => w.AddFloat("s", [3], [1f, 2f]), "'s'", "shape");
        MatqAssert.Throws(() => new MatqQuantizedTensor("q", 1, 1, -1, [0], [1], [0], null,
            [new MatqSideTensor("qcodes", SafetensorsDtype.U8, [1], [0])]), "'q'", "qcodes");
        MatqAssert.Throws(() => new MatqSideTensor("x", SafetensorsDtype.F32, [1], BitConverter.GetBytes(float.NaN)), "side tensor 'x'", "NaN");
        MatqAssert.Throws(() => new MatqTokenizerRef("bpe", ["../secret"]), "tokenizer.files", "../secret");
        Assert.Single(w.BuildMetadata().Quantized);
    }

    [Fact]
    public void Failed_artifact_write_keeps_the_previous_file()
    {
        using var tmp = new TempDir();
        var path = tmp.File("m.matq");
        ArtifactTestData.SmallWriter().Write(path);
        var before = File.ReadAllBytes(path);
        Directory.CreateDirectory(tmp.File("blocker"));
        MatqAssert.Throws(() => ArtifactTestData.SmallWriter().Write(tmp.File("blocker")), "blocker", "cannot write");
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(Directory.GetFiles(tmp.Path, "*.tmp"));
    }
}
