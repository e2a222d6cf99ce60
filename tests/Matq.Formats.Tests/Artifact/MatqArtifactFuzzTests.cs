// Corrupt .matq inputs: truncations, flipped bytes, wrong dtypes and shapes, out-of-range codes, bad values and
// bad metadata must each end in one MatqException naming the file and the tensor or field.
using System.Text.Json.Nodes;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;
using Matq.Formats.Tests.Safetensors;

namespace Matq.Formats.Tests.Artifact;

public sealed class MatqArtifactFuzzTests
{
    private const string Q0 = "layers.0.proj.weight";
    private const string Q1 = "layers.1.proj.weight";

    private static string WriteValid(TempDir tmp)
    {
        var path = tmp.File("valid.matq");
        ArtifactTestData.SmallWriter().Write(path);
        return path;
    }

    [Fact]
    public void Every_truncation_is_a_MatqException()
    {
        using var tmp = new TempDir();
        var full = File.ReadAllBytes(WriteValid(tmp));
        var path = tmp.File("cut.matq");
        SafetensorsFuzzTests.WithinSeconds(120, () =>
        {
            for (int cut = 0; cut < full.Length; cut++)
            {
                File.WriteAllBytes(path, full[..cut]);
                MatqAssert.Throws(() => MatqArtifact.Open(path), "cut.matq");
            }
        });
        File.WriteAllBytes(path, full);
        Assert.Equal(2, MatqArtifact.Open(path).Quantized.Count);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Flipped_bytes_never_escape_as_other_exceptions(int seed)
    {
        using var tmp = new TempDir();
        var full = File.ReadAllBytes(WriteValid(tmp));
        var path = tmp.File("flip.matq");
        var rng = new Random(seed);
        int failures = 0, trials = 400;
        SafetensorsFuzzTests.WithinSeconds(120, () =>
        {
            for (int i = 0; i < trials; i++)
            {
                var bytes = (byte[])full.Clone();
                int pos = rng.Next(bytes.Length);
                bytes[pos] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(path, bytes);
                if (!MatqAssert.OpensOrMatqThrows(() => MatqArtifact.Open(path), $"seed {seed} trial {i} pos {pos}")) failures++;
            }
        });
        Assert.InRange(failures, trials / 5, trials);
    }

    [Fact]
    public void Flipped_bits_in_4_bit_codes_are_caught_when_they_leave_the_range()
    {
        using var tmp = new TempDir();
        var src = WriteValid(tmp);
        var dst = tmp.File("codes.matq");
        ArtifactTestData.Rewrite(src, dst, p =>
        {
            var codes = (byte[])p.Tensors[p.Index(Q1 + ".qcodes")].Data.Clone();
            codes[7] |= 0x80;
            p.Replace(Q1 + ".qcodes", SafetensorsDtype.U8, [3, 6], codes);
        });
        MatqAssert.Throws(() => MatqArtifact.Open(dst), "codes.matq", Q1, "[1, 1]", "master_bits = 4");
    }

    private static byte[] F32(params float[] v) => Bytes.Of(v);

    public static TheoryData<string, string[]> Corruptions() => new()
    {
        { "codes-as-f32", [Q0 + ".qcodes", "F32", "U8"] },
        { "scales-shape", [Q0 + ".scales", "[5, 3]", "ceil(in/g)"] },
        { "zeros-u8", [Q1 + ".zeros", "U8", "F32"] },
        { "perm-i64", [Q0 + ".perm", "I64"] },
        { "perm-not-permutation", [Q0, "perm", "permutation"] },
        { "nan-scale", [Q1, "scale NaN"] },
        { "negative-scale", [Q1, "scale -1", "> 0"] },
        { "inf-zero", [Q0, "zero point"] },
        { "nan-float", ["norm.weight", "NaN"] },
        { "inf-bf16-float", ["embed.weight", "Infinity"] },
        { "missing-codes", [Q1, Q1 + ".qcodes", "no"] },
        { "missing-side", [Q0 + ".overflow", "does not hold"] },
        { "unlisted-codes", ["extra.qcodes", "'extra'", "quantized"] },
        { "undeclared-perm", [Q1 + ".perm", "not declared"] },
        { "int-tensor", ["position_ids", "I64"] },
        { "no-metadata", ["not a .matq artifact", "'matq'"] },
        { "bad-json", ["'matq' metadata", "not valid JSON"] },
        { "metadata-array", ["'matq' metadata", "object"] },
        { "future-version", ["newer matq (format 2)", "upgrade matq"] },
        { "version-missing", ["format_version", "missing"] },
        { "master-bits-9", ["master_bits", "9", "1..8"] },
        { "master-bits-string", ["master_bits", "integer"] },
        { "trained-bits-too-wide", ["trained_bits", "5"] },
        { "group-size-0", ["group_size", "0"] },
        { "quantized-missing", ["quantized", "missing"] },
        { "quantized-twice", [Q0, "twice"] },
        { "quantized-3d-shape", [Q1, "shape", "[out, in]"] },
        { "listed-shape-disagrees", [Q1 + ".qcodes", "[3, 6]", "[4, 6]"] },
        { "symmetric-string", ["symmetric", "true or false"] },
        { "tokenizer-escape", ["tokenizer.files", "../tok.json"] },
        { "model-config-array", ["model_config", "object"] },
        { "flat-key-disagrees", ["matq.master_bits", "'8'", "disagrees"] },
        { "side-suffix-reserved", [Q0, "suffix", "zeros"] },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Corrupt_artifact_is_a_MatqException_naming_file_and_field(string corruption, string[] fragments)
    {
        using var tmp = new TempDir();
        var src = WriteValid(tmp);
        var dst = tmp.File($"{corruption}.matq");
        ArtifactTestData.Rewrite(src, dst, p => Corrupt(corruption, p));
        SafetensorsFuzzTests.WithinSeconds(10, () => MatqAssert.Throws(() => MatqArtifact.Open(dst), [$"{corruption}.matq", .. fragments]));
    }

    private static void Corrupt(string corruption, ArtifactTestData.Parts p)
    {
        JsonObject m;
        switch (corruption)
        {
            case "codes-as-f32": p.Replace(Q0 + ".qcodes", SafetensorsDtype.F32, [5, 6], new byte[120]); break;
            case "scales-shape": p.Replace(Q0 + ".scales", SafetensorsDtype.F32, [5, 3], F32(Enumerable.Repeat(1f, 15).ToArray())); break;
            case "zeros-u8": p.Replace(Q1 + ".zeros", SafetensorsDtype.U8, [3, 1], [1, 2, 3]); break;
            case "perm-i64": p.Replace(Q0 + ".perm", SafetensorsDtype.I64, [6], new byte[48]); break;
            case "perm-not-permutation": p.Replace(Q0 + ".perm", SafetensorsDtype.I32, [6], new byte[24]); break;
            case "nan-scale": p.Replace(Q1 + ".scales", SafetensorsDtype.F32, [3, 1], F32(1, float.NaN, 1)); break;
            case "negative-scale": p.Replace(Q1 + ".scales", SafetensorsDtype.F32, [3, 1], F32(1, 1, -1)); break;
            case "inf-zero": p.Replace(Q0 + ".zeros", SafetensorsDtype.F32, [5, 2], F32([.. Enumerable.Repeat(0f, 9), float.NegativeInfinity])); break;
            case "nan-float": p.Replace("norm.weight", SafetensorsDtype.F32, [6], F32(1, 1, float.NaN, 1, 1, 1)); break;
            case "inf-bf16-float":
                var e = SafetensorsDtypes.Float32ToBf16(Enumerable.Repeat(0.5f, 24).ToArray());
                e[2 * 5] = 0x80; e[2 * 5 + 1] = 0x7F; // bf16 +Inf at index 5
                p.Replace("embed.weight", SafetensorsDtype.BF16, [4, 6], e);
                break;
            case "missing-codes": p.Tensors.RemoveAt(p.Index(Q1 + ".qcodes")); break;
            case "missing-side": p.Tensors.RemoveAt(p.Index(Q0 + ".overflow")); break;
            case "unlisted-codes": p.Tensors.Add(("extra.qcodes", SafetensorsDtype.U8, [2], [1, 2])); break;
            case "undeclared-perm": p.Tensors.Add((Q1 + ".perm", SafetensorsDtype.I32, [6], new byte[24])); break;
            case "int-tensor": p.Tensors.Add(("position_ids", SafetensorsDtype.I64, [2], new byte[16])); break;
            case "no-metadata": p.Metadata.Remove("matq"); break;
            case "bad-json": p.Metadata["matq"] = p.Metadata["matq"][..^3]; break;
            case "metadata-array": p.Metadata["matq"] = "[1, 2]"; break;
            case "future-version":
                // a future format may change anything else; the version must be checked first
                p.Metadata["matq"] = """{"format_version": 2, "everything": "different"}"""; p.Metadata.Remove("matq.format_version"); break;
            case "version-missing": m = p.Matq(); m.Remove("format_version"); p.SetMatq(m); break;
            case "master-bits-9": m = p.Matq(); m["master_bits"] = 9; p.SetMatq(m); p.Metadata.Remove("matq.master_bits"); break;
            case "master-bits-string": m = p.Matq(); m["master_bits"] = "8"; p.SetMatq(m); break;
            case "trained-bits-too-wide": m = p.Matq(); m["trained_bits"] = new JsonArray(4, 5); p.SetMatq(m); p.Metadata.Remove("matq.trained_bits"); break;
            case "group-size-0": m = p.Matq(); m["group_size"] = 0; p.SetMatq(m); p.Metadata.Remove("matq.group_size"); break;
            case "quantized-missing": m = p.Matq(); m.Remove("quantized"); p.SetMatq(m); break;
            case "quantized-twice": m = p.Matq(); m["quantized"]!.AsArray().Add(m["quantized"]![0]!.DeepClone()); p.SetMatq(m); break;
            case "quantized-3d-shape": m = p.Matq(); m["quantized"]![1]!["shape"] = new JsonArray(3, 6, 1); p.SetMatq(m); break;
            case "listed-shape-disagrees": m = p.Matq(); m["quantized"]![1]!["shape"] = new JsonArray(4, 6); p.SetMatq(m); break;
            case "symmetric-string": m = p.Matq(); m["symmetric"] = "no"; p.SetMatq(m); break;
            case "tokenizer-escape": m = p.Matq(); m["tokenizer"]!["files"] = new JsonArray("../tok.json"); p.SetMatq(m); break;
            case "model-config-array": m = p.Matq(); m["model_config"] = new JsonArray(1); p.SetMatq(m); break;
            case "flat-key-disagrees": p.Metadata["matq.master_bits"] = "8"; break;
            case "side-suffix-reserved": m = p.Matq(); m["quantized"]![0]!["side"] = new JsonArray("zeros"); p.SetMatq(m); break;
            default: throw new ArgumentException(corruption);
        }
    }

    [Fact]
    public void A_plain_HF_checkpoint_is_not_an_artifact()
    {
        MatqAssert.Throws(() => MatqArtifact.Open(Fixtures.TinyLlama), "model.safetensors", "not a .matq artifact");
        MatqAssert.Throws(() => MatqArtifact.ReadMetadata(Fixtures.TinyLlama), "model.safetensors", "'matq'");
    }
}
