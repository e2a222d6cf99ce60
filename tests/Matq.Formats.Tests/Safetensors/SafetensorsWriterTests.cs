// Writer: round trips, narrowed float dtypes, the layout invariants the Python reader demands, and atomicity.
using System.Text.Json;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Safetensors;

public sealed class SafetensorsWriterTests
{
    private static SafetensorsWriter Sample(int seed = 1)
    {
        var w = new SafetensorsWriter();
        w.Metadata["format"] = "pt";
        w.Metadata["note"] = "quotes \" and + and ünïcode";
        w.AddFloat32("a.weight", [3, 5], Bytes.Seeded(15, seed));
        w.Add("b.codes", SafetensorsDtype.U8, [7], [0, 1, 2, 3, 250, 254, 255]);
        w.Add("c.empty", SafetensorsDtype.F32, [0, 4], []);
        w.Add("d.ids", SafetensorsDtype.I64, [2], BitConverter.GetBytes(42L).Concat(BitConverter.GetBytes(-1L)).ToArray());
        w.Add("e.scalar", SafetensorsDtype.I32, [], BitConverter.GetBytes(7));
        return w;
    }

    [Fact]
    public void Round_trip_preserves_data_shapes_dtypes_and_metadata()
    {
        using var tmp = new TempDir();
        var path = tmp.File("x.safetensors");
        var w = Sample();
        w.Write(path);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["a.weight", "b.codes", "c.empty", "d.ids", "e.scalar"], f.Tensors.Select(t => t.Name));
        Assert.Equal(2, f.Metadata.Count);
        Assert.Equal("quotes \" and + and ünïcode", f.Metadata["note"]);
        Assert.Equal(Bytes.Of(Bytes.Seeded(15, 1)), f.ReadBytes("a.weight"));
        Assert.Equal(Bytes.Seeded(15, 1), f.ReadFloat32("a.weight"));
        Assert.Equal([3L, 5], f.Get("a.weight").Shape);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 250, 254, 255 }, f.ReadBytes("b.codes"));
        Assert.Equal([0L, 4], f.Get("c.empty").Shape);
        Assert.Empty(f.ReadBytes("c.empty"));
        Assert.Equal(SafetensorsDtype.I64, f.Get("d.ids").Dtype);
        Assert.Equal(-1L, BitConverter.ToInt64(f.ReadBytes("d.ids"), 8));
        Assert.Empty(f.Get("e.scalar").Shape);
        Assert.Equal(1, f.Get("e.scalar").ElementCount);

        // writing what we read gives the same bytes again
        var again = tmp.File("y.safetensors");
        var w2 = new SafetensorsWriter();
        foreach (var (k, v) in f.Metadata) w2.Metadata[k] = v;
        foreach (var t in f.Tensors) w2.Add(t.Name, t.Dtype, t.Shape, f.ReadBytes(t.Name));
        w2.Write(again);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void F16_and_BF16_are_written_narrowed_and_read_back_widened()
    {
        float[] exact = [0f, 1f, -2f, 0.5f, 1024f, -0.125f, 3f];        // representable in both
        float[] lossy = [0.1f, 3.14159265f, -1e-3f, 65504f, 1e-8f];      // rounding expected
        using var tmp = new TempDir();
        var path = tmp.File("half.safetensors");
        new SafetensorsWriter()
            .AddFloat16("h.exact", [7], exact).AddBf16("b.exact", [7], exact)
            .AddFloat16("h.lossy", [5], lossy).AddBf16("b.lossy", [5], lossy)
            .Write(path);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(SafetensorsDtype.F16, f.Get("h.exact").Dtype);
        Assert.Equal(SafetensorsDtype.BF16, f.Get("b.exact").Dtype);
        Assert.Equal(14, f.Get("h.exact").ByteLength);
        Assert.Equal(exact, f.ReadFloat32("h.exact"));
        Assert.Equal(exact, f.ReadFloat32("b.exact"));
        var h = f.ReadFloat32("h.lossy");
        var b = f.ReadFloat32("b.lossy");
        for (int i = 0; i < lossy.Length; i++)
        {
            Assert.Equal((float)(Half)lossy[i], h[i]);                        // IEEE half rounding
            Assert.InRange(Math.Abs(b[i] - lossy[i]), 0, Math.Abs(lossy[i]) / 256 + 1e-30); // 8 mantissa bits
        }
        Assert.Equal(65504f, h[3]);
        // bf16 is the upper half of the fp32 bits, rounded to nearest even: 1 + 2^-8 is a tie and rounds to 1
        Assert.Equal(1f, SafetensorsDtypes.ToFloat32(SafetensorsDtype.BF16, SafetensorsDtypes.Float32ToBf16([1f + 1f / 256]), "t")[0]);
    }

    /// <summary>
    /// What the Python safetensors reader demands: header length prefix matches, JSON padded with spaces to a
    /// multiple of 8, offsets relative to the buffer, contiguous from 0 in order with no holes, ending exactly
    /// at the end of the file.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Output_satisfies_the_reference_reader_invariants(int seed)
    {
        using var tmp = new TempDir();
        var path = tmp.File("inv.safetensors");
        var rng = new Random(seed);
        var w = new SafetensorsWriter();
        w.Metadata["k"] = new string('x', rng.Next(0, 20)); // varies the header length mod 8
        var dtypes = Enum.GetValues<SafetensorsDtype>();
        for (int i = 0; i < 12; i++)
        {
            var dt = dtypes[rng.Next(dtypes.Length)];
            long[] shape = [rng.Next(0, 4), rng.Next(1, 5)];
            var data = new byte[shape[0] * shape[1] * SafetensorsDtypes.SizeOf(dt)];
            rng.NextBytes(data);
            if (dt is SafetensorsDtype.Bool) for (int j = 0; j < data.Length; j++) data[j] &= 1;
            w.Add($"t{i}", dt, shape, data);
        }
        w.Write(path);
        var bytes = File.ReadAllBytes(path);
        var (n, json) = Bytes.Header(bytes);
        Assert.Equal(0, n % 8);
        Assert.Equal('{', json[0]);
        Assert.Equal('}', json.TrimEnd(' ')[^1]);
        Assert.True(json[json.TrimEnd(' ').Length..].All(c => c == ' '));
        Assert.True(json.TrimEnd(' ').Length > n - 8, "padding is shorter than 8 bytes");
        using var doc = JsonDocument.Parse(json);
        long expectedBegin = 0;
        var offsets = doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .Select(p => (p.Name, Begin: p.Value.GetProperty("data_offsets")[0].GetInt64(), End: p.Value.GetProperty("data_offsets")[1].GetInt64()))
            .ToList();
        Assert.Equal(12, offsets.Count);
        foreach (var (name, begin, end) in offsets)
        {
            Assert.True(begin == expectedBegin, $"{name} begins at {begin}, expected {expectedBegin}");
            Assert.True(end >= begin);
            expectedBegin = end;
        }
        Assert.Equal(bytes.Length - 8 - n, expectedBegin);
    }

    [Fact]
    public void Streamed_tensor_is_written_like_a_held_one()
    {
        using var tmp = new TempDir();
        var data = Bytes.Of(Bytes.Seeded(100, 5));
        new SafetensorsWriter().Add("x", SafetensorsDtype.F32, [10, 10], data).Write(tmp.File("held.safetensors"));
        new SafetensorsWriter().AddStreamed("x", SafetensorsDtype.F32, [10, 10],
            () => data.Chunk(37).Select(c => (ReadOnlyMemory<byte>)c)).Write(tmp.File("streamed.safetensors"));
        Assert.Equal(File.ReadAllBytes(tmp.File("held.safetensors")), File.ReadAllBytes(tmp.File("streamed.safetensors")));
    }

    [Fact]
    public void Writer_refuses_bad_tensors()
    {
        var w = new SafetensorsWriter().Add("a", SafetensorsDtype.U8, [2], [1, 2]);
        Assert.Throws<ArgumentException>(() => w.Add("a", SafetensorsDtype.U8, [2], [1, 2]));
        Assert.Throws<ArgumentException>(() => w.Add("__metadata__", SafetensorsDtype.U8, [2], [1, 2]));
        Assert.Throws<ArgumentException>(() => w.Add("b", SafetensorsDtype.F32, [2], [1, 2]));
        Assert.Throws<ArgumentException>(() => w.Add("c", SafetensorsDtype.U8, [-1], []));
        Assert.Equal(1, w.Count);
    }

    private static string[] TempLeftovers(string dir) =>
        Directory.GetFileSystemEntries(dir).Where(p => Path.GetFileName(p).EndsWith(".tmp")).ToArray();

    [Fact]
    public void Failed_write_from_a_throwing_producer_keeps_the_old_file_and_no_temp()
    {
        using var tmp = new TempDir();
        var path = tmp.File("model.safetensors");
        Sample(1).Write(path);
        var before = File.ReadAllBytes(path);

        static IEnumerable<ReadOnlyMemory<byte>> Failing()
        {
            yield return new byte[16];
            throw new InvalidDataException("producer broke");
        }
        var w = Sample(2).AddStreamed("late", SafetensorsDtype.F32, [8], Failing);
        var e = Assert.Throws<InvalidDataException>(() => w.Write(path));
        Assert.Equal("producer broke", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(TempLeftovers(tmp.Path));

        // a producer that gives too few bytes is refused the same way
        var shortW = Sample(2).AddStreamed("short", SafetensorsDtype.F32, [8], () => [new byte[12]]);
        Assert.Throws<InvalidOperationException>(() => shortW.Write(path));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(TempLeftovers(tmp.Path));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(5, f.Tensors.Count);
    }

    [Fact]
    public void Failed_rename_onto_a_folder_is_a_MatqException_and_leaves_no_temp()
    {
        using var tmp = new TempDir();
        var target = tmp.File("occupied");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "keep.txt"), "old");
        MatqAssert.Throws(() => Sample().Write(target), "occupied", "cannot write");
        Assert.Equal("old", File.ReadAllText(Path.Combine(target, "keep.txt")));
        Assert.Empty(TempLeftovers(tmp.Path));
    }

    /// <summary>
    /// A read-only folder: permissions stop ordinary users; root ignores them, so as root the folder is also made
    /// immutable with chattr (which binds root too). Where neither can be arranged the test asserts that.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Write_into_a_read_only_folder_is_a_MatqException_and_keeps_the_old_file()
    {
        using var tmp = new TempDir();
        var dir = Directory.CreateDirectory(tmp.File("ro")).FullName;
        var path = Path.Combine(dir, "model.safetensors");
        Sample(1).Write(path);
        var before = File.ReadAllBytes(path);
        bool immutable = false;
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            if (CanCreateFileIn(dir)) immutable = RunChattr("+i", dir) && !CanCreateFileIn(dir);
            Assert.True(!CanCreateFileIn(dir), "could not make a read-only folder here (neither chmod nor chattr bind this user)");
            MatqAssert.Throws(() => Sample(2).Write(path), "model.safetensors", "cannot write", "writable");
            Assert.Equal(before, File.ReadAllBytes(path));
            Assert.Empty(TempLeftovers(dir));
        }
        finally
        {
            if (immutable) RunChattr("-i", dir);
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    private static bool CanCreateFileIn(string dir)
    {
        var probe = Path.Combine(dir, ".probe");
        try { File.WriteAllText(probe, ""); File.Delete(probe); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private static bool RunChattr(string flag, string dir)
    {
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("chattr", [flag, dir])
            { RedirectStandardError = true, RedirectStandardOutput = true });
            if (p is null) return false;
            p.WaitForExit(10_000);
            return p.HasExited && p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }
}
