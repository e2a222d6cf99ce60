// Corrupt safetensors inputs: every one must end in a one-line MatqException naming the file (and the tensor or
// field where there is one), never another exception type and never a hang.
using FsCheck.Xunit;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Safetensors;

public sealed class SafetensorsFuzzTests
{
    private static byte[] SmallFile()
    {
        var w = new SafetensorsWriter();
        w.Metadata["format"] = "pt";
        w.AddFloat32("w.weight", [2, 3], [1, 2, 3, 4, 5, 6]);
        w.Add("w.codes", SafetensorsDtype.U8, [5], [1, 2, 3, 4, 5]);
        w.Add("empty", SafetensorsDtype.I32, [0], []);
        w.AddBf16("norm", [3], [1, 1, 1]);
        using var ms = new MemoryStream();
        w.WriteTo(ms);
        return ms.ToArray();
    }

    /// <summary>Runs the body on a worker and fails if it takes longer than the limit (the "never a hang" check).</summary>
    internal static void WithinSeconds(int seconds, Action body)
    {
        var task = Task.Run(body);
        Assert.True(task.Wait(TimeSpan.FromSeconds(seconds)), $"did not finish within {seconds} s");
    }

    /// <summary>Opens, then reads every tensor (as float where it is one), so lazy failures surface too.</summary>
    internal static void OpenAndReadAll(string path)
    {
        using var f = SafetensorsFile.Open(path);
        foreach (var t in f.Tensors)
        {
            f.ReadBytes(t.Name);
            if (SafetensorsDtypes.IsFloat(t.Dtype)) f.ReadFloat32(t.Name);
        }
    }

    [Fact]
    public void Every_truncation_of_a_small_file_is_a_MatqException()
    {
        var full = SmallFile();
        var (headerLen, _) = Bytes.Header(full);
        string[] names = ["w.weight", "w.codes", "empty", "norm"];
        using var tmp = new TempDir();
        var path = tmp.File("cut.safetensors");
        WithinSeconds(60, () =>
        {
            for (int cut = 0; cut < full.Length; cut++)
            {
                File.WriteAllBytes(path, full[..cut]);
                var e = MatqAssert.Throws(() => OpenAndReadAll(path), "cut.safetensors");
                if (cut >= 8 + headerLen)
                    Assert.True(names.Any(n => e.Message.Contains($"'{n}'")), $"cut {cut}: message names no tensor: {e.Message}");
            }
            File.WriteAllBytes(path, full);
            OpenAndReadAll(path);
        });
    }

    [Fact]
    public void Truncations_of_the_llama_fixture_are_MatqExceptions()
    {
        var full = File.ReadAllBytes(Fixtures.TinyLlama);
        var rng = new Random(7);
        using var tmp = new TempDir();
        var path = tmp.File("llama-cut.safetensors");
        WithinSeconds(60, () =>
        {
            var cuts = Enumerable.Range(0, 200).Select(_ => rng.Next(full.Length)).Concat([0, 7, 8, 9, 2143, 2144, 2145, full.Length - 1]);
            foreach (var cut in cuts)
            {
                File.WriteAllBytes(path, full[..cut]);
                MatqAssert.Throws(() => SafetensorsFile.Open(path), "llama-cut.safetensors");
            }
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Flipped_header_bytes_never_escape_as_other_exceptions(int seed)
    {
        var full = SmallFile();
        var (headerLen, _) = Bytes.Header(full);
        var rng = new Random(seed);
        using var tmp = new TempDir();
        var path = tmp.File("flip.safetensors");
        int failures = 0, trials = 300;
        WithinSeconds(60, () =>
        {
            for (int i = 0; i < trials; i++)
            {
                var bytes = (byte[])full.Clone();
                int flips = 1 + rng.Next(3);
                for (int k = 0; k < flips; k++)
                {
                    // mostly inside the JSON, sometimes the length prefix
                    int pos = rng.Next(10) == 0 ? rng.Next(8) : 8 + rng.Next((int)headerLen);
                    bytes[pos] ^= (byte)(1 << rng.Next(8));
                }
                File.WriteAllBytes(path, bytes);
                if (!MatqAssert.OpensOrMatqThrows(() => OpenAndReadAll(path), $"seed {seed} trial {i}")) failures++;
            }
        });
        // Flips inside names or metadata values can leave a valid file; flips in structure must not pass.
        Assert.InRange(failures, trials / 4, trials);
    }

    [Fact]
    public void Flipped_bytes_inside_the_llama_header_never_escape_as_other_exceptions()
    {
        var full = File.ReadAllBytes(Fixtures.TinyLlama);
        var (headerLen, _) = Bytes.Header(full);
        var rng = new Random(11);
        using var tmp = new TempDir();
        var path = tmp.File("llama-flip.safetensors");
        WithinSeconds(60, () =>
        {
            for (int i = 0; i < 200; i++)
            {
                var bytes = (byte[])full.Clone();
                bytes[8 + rng.Next((int)headerLen)] = (byte)rng.Next(256);
                File.WriteAllBytes(path, bytes);
                MatqAssert.OpensOrMatqThrows(() => SafetensorsFile.Open(path).Dispose(), $"trial {i}");
            }
        });
    }

    public static TheoryData<string, int, string[]> CorruptHeaders() => new()
    {
        // header JSON, data bytes, fragments the message must contain (besides the file name)
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, ["'a'", "outside", "truncated"] },
        { """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, ["'a'", "'b'", "overlap"] },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, ["'b'", "hole"] },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 9, ["'a'", "5 bytes after"] },
        { """{}""", 4, ["no tensors"] },
        { """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, ["'a'", "F32[3]", "8 bytes"] },
        { """{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,8]}}""", 8, ["'a'", "U8[4]"] },
        { """{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}}""", 4, ["'a'", "unsupported dtype 'Q4'"] },
        { """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, ["'a'", "shape"] },
        { """{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", 4, ["'a'", "shape"] },
        { """{"a":{"dtype":"U8","shape":[4,4611686018427387904],"data_offsets":[0,0]}}""", 0, ["'a'", "0 bytes"] },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, ["'a'", "reversed"] },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0e0]}}""", 4, ["'a'", "offset"] },
        { """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4, ["'a'", "data_offsets"] },
        { """{"a":{"dtype":"F32","shape":[1]}}""", 4, ["'a'", "data_offsets"] },
        { """{"a":{"shape":[1],"data_offsets":[0,4]}}""", 4, ["'a'", "dtype"] },
        { """{"a":[1,2]}""", 4, ["'a'"] },
        { """{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}""", 4, ["'a'", "dtype"] },
        { """[1,2,3]""", 0, ["JSON object", "Array"] },
        { "\"header\"", 0, ["JSON object"] },
        { """42""", 0, ["JSON object"] },
        { """{"__metadata__":{"format":1}}""", 0, ["__metadata__", "'format'", "string"] },
        { """{"__metadata__":{"nested":{"a":"b"}}}""", 0, ["__metadata__", "'nested'"] },
        { """{"__metadata__":["x"]}""", 0, ["__metadata__", "object"] },
        { """{"__metadata__":{"a":"x"},"__metadata__":{"a":"y"}}""", 0, ["two __metadata__"] },
        { """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", 2, ["'a'", "twice"] },
        { """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}""", 1, ["not valid JSON"] },
        { """{"a\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, ["string"] },
        { new string('[', 2000) + new string(']', 2000), 0, ["not valid JSON"] },
        { "", 0, ["not valid JSON"] },
    };

    [Theory]
    [MemberData(nameof(CorruptHeaders))]
    public void Corrupt_header_is_a_MatqException_naming_file_and_field(string header, int dataBytes, string[] fragments)
    {
        using var tmp = new TempDir();
        var path = tmp.File("bad.safetensors");
        File.WriteAllBytes(path, Bytes.Raw(header, new byte[dataBytes]));
        WithinSeconds(10, () => MatqAssert.Throws(() => OpenAndReadAll(path), ["bad.safetensors", .. fragments]));
    }

    [Fact]
    public void Invalid_utf8_in_a_tensor_name_is_a_MatqException()
    {
        using var tmp = new TempDir();
        var path = tmp.File("utf8.safetensors");
        var bytes = Bytes.Raw("""{"aX":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", [0]);
        bytes[8 + 3] = 0xFF; // the X
        File.WriteAllBytes(path, bytes);
        MatqAssert.Throws(() => SafetensorsFile.Open(path), "utf8.safetensors", "UTF-8");
    }

    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData(1UL << 40)]
    [InlineData(200UL * 1024 * 1024)]
    [InlineData(100UL)]
    public void Header_length_larger_than_the_file_is_a_MatqException(ulong claimed)
    {
        using var tmp = new TempDir();
        var path = tmp.File("long.safetensors");
        var bytes = SmallFile()[..60];
        BitConverter.GetBytes(claimed).CopyTo(bytes, 0);
        File.WriteAllBytes(path, bytes);
        MatqAssert.Throws(() => SafetensorsFile.Open(path), "long.safetensors", "header length", claimed.ToString());
    }

    [Fact]
    public void Missing_file_is_named()
    {
        MatqAssert.Throws(() => SafetensorsFile.Open("/nonexistent/x.safetensors"), "/nonexistent/x.safetensors", "not found");
    }

    /// <summary>Property: any set of U8 payloads round-trips through the writer and reader unchanged.</summary>
    [Property(MaxTest = 60)]
    public bool Arbitrary_payloads_round_trip(byte[][] payloads, string? metaValue)
    {
        payloads ??= [];
        using var tmp = new TempDir();
        var path = tmp.File("prop.safetensors");
        var w = new SafetensorsWriter();
        if (metaValue is not null) w.Metadata["m"] = metaValue;
        for (int i = 0; i < payloads.Length; i++)
        {
            var p = payloads[i] ?? [];
            w.Add($"t{i}", SafetensorsDtype.U8, [p.Length], p);
        }
        w.Write(path);
        using var f = SafetensorsFile.Open(path);
        return f.Tensors.Count == payloads.Length
            && Enumerable.Range(0, payloads.Length).All(i => f.ReadBytes($"t{i}").SequenceEqual(payloads[i] ?? []))
            && (metaValue is null ? f.Metadata.Count == 0 : f.Metadata["m"] == metaValue);
    }
}
