// AtomicFile: a failed write leaves the old file and no temp; folders are swapped in whole with no visible ".old";
// stale temps of a dead writer (kill -9) are cleaned by the next write of the same target, live writers' are kept.
// OutputPaths: the input is never the output (same path, inside, containing, through a symlink); unwritable
// locations fail before any work. ForeignFormats: GGUF and ONNX files are named, not called corrupt safetensors.
using System.Diagnostics;
using Matq.Formats.IO;

namespace Matq.Formats.Tests.IO;

public sealed class AtomicFileTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    private string[] Entries() => Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void A_failed_write_keeps_the_old_file_and_leaves_no_temp()
    {
        var path = _dir.File("model.bin");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s => { s.Write(new byte[100]); throw new InvalidOperationException("boom"); }));
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["model.bin"], Entries());
        AtomicFile.WriteAllText(path, "new");
        Assert.Equal("new", File.ReadAllText(path));
        Assert.Equal(["model.bin"], Entries());
    }

    [Fact]
    public void An_unwritable_target_is_one_matq_line()
    {
        var e = Assert.Throws<MatqException>(() => AtomicFile.WriteAllText("/proc/matq-test/x.bin", "x"));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("/proc/matq-test/x.bin", e.Message);
        var file = _dir.File("plain");
        File.WriteAllText(file, "x");
        var under = Assert.Throws<MatqException>(() => AtomicFile.WriteAllText(Path.Combine(file, "y.bin"), "y"));
        Assert.Contains("cannot write", under.Message);
        Assert.Equal("x", File.ReadAllText(file));
    }

    [Fact]
    public void A_folder_is_swapped_in_whole_and_a_failed_fill_keeps_the_old_one()
    {
        var folder = _dir.File("hf");
        AtomicFile.WriteFolder(folder, d => File.WriteAllText(Path.Combine(d, "a.txt"), "1"));
        Assert.Equal(["a.txt"], Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Throws<MatqException>(() => AtomicFile.WriteFolder(folder, d =>
        {
            File.WriteAllText(Path.Combine(d, "b.txt"), "2");
            throw new MatqException("fill failed");
        }));
        Assert.Equal(["a.txt"], Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Throws<MatqException>(() => AtomicFile.WriteFolder(folder, d => File.WriteAllText(Path.Combine(d, "c.txt"), "3"),
            beforeSwap: () => throw new MatqException("the artifact write failed")));
        Assert.Equal(["a.txt"], Directory.GetFiles(folder).Select(Path.GetFileName));
        AtomicFile.WriteFolder(folder, d => File.WriteAllText(Path.Combine(d, "d.txt"), "4"));
        Assert.Equal(["d.txt"], Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Equal(["hf"], Entries());   // no staging folder, no visible or hidden ".old"
    }

    [Fact]
    public void Stale_temps_of_dead_writers_are_cleaned_and_live_ones_kept()
    {
        var path = _dir.File("a.matq");
        int dead = DeadPid();
        File.WriteAllText(_dir.File($".a.matq.{dead}-0123abcd.matq-tmp"), "partial");
        Directory.CreateDirectory(_dir.File($".a.tokenizer.{dead}-0123abcd.matq-tmp"));
        Directory.CreateDirectory(_dir.File($".a.tokenizer.{dead}-0123abcd.matq-old"));
        var live = _dir.File($".a.matq.{Environment.ProcessId}-89abcdef.matq-tmp");
        File.WriteAllText(live, "in progress");
        // what earlier matq versions left: hidden ".NAME.<hex8>.tmp", "NAME.tmp-PID", "NAME.old-ID" folders (an hour old)
        var legacy = new[] { _dir.File(".a.matq.deadbeef.tmp"), _dir.File("a.matq.tmp-4242") };
        foreach (var f in legacy) { File.WriteAllText(f, "x"); File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddHours(-2)); }
        var oldFolder = _dir.File("a.tokenizer.old-1234abcd");
        Directory.CreateDirectory(oldFolder);
        Directory.SetLastWriteTimeUtc(oldFolder, DateTime.UtcNow.AddHours(-2));
        var fresh = _dir.File(".a.matq.cafebabe.tmp");   // legacy name but recent: may belong to a running old matq
        File.WriteAllText(fresh, "x");

        AtomicFile.WriteAllText(path, "artifact");
        Assert.Equal(3, AtomicFile.CleanStale(_dir.File("a.tokenizer")));
        Assert.Equal(new[] { ".a.matq.cafebabe.tmp", Path.GetFileName(live), "a.matq" }.Order(StringComparer.Ordinal), Entries());
    }

    private static int DeadPid()
    {
        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }
}

public sealed class OutputPathsTests : IDisposable
{
    private readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_input_is_never_the_output()
    {
        var model = _dir.File("M");
        Directory.CreateDirectory(model);
        var weights = Path.Combine(model, "model.safetensors");
        File.WriteAllText(weights, "w");
        Assert.Contains("is the input", Assert.Throws<MatqException>(() => OutputPaths.CheckFile(weights, "--out", weights)).Message);
        Assert.Contains("lies inside the input", Assert.Throws<MatqException>(() => OutputPaths.CheckFile(Path.Combine(model, "q.matq"), "--out", model)).Message);
        Assert.Contains("contains the input", Assert.Throws<MatqException>(() => OutputPaths.CheckFolder(_dir.Path, "--out", force: true, weights)).Message);
        // through a symbolic link to the folder
        var link = _dir.File("link");
        Directory.CreateSymbolicLink(link, model);
        Assert.Contains("is the input", Assert.Throws<MatqException>(() => OutputPaths.CheckFile(Path.Combine(link, "model.safetensors"), "--out", weights)).Message);
        // a sibling with a shared name prefix is not "inside"
        Assert.Equal(Path.GetFullPath(model + "2"), OutputPaths.CheckFolder(model + "2", "--out", force: false, model));
        Assert.Equal("w", File.ReadAllText(weights));
    }

    [Fact]
    public void Existing_folders_need_force_and_unwritable_paths_fail_first()
    {
        var folder = _dir.File("out");
        Directory.CreateDirectory(folder);
        Assert.Contains("--force", Assert.Throws<MatqException>(() => OutputPaths.CheckFolder(folder, "--out", force: false)).Message);
        OutputPaths.CheckFolder(folder, "--out", force: true);
        Assert.Contains("is a folder", Assert.Throws<MatqException>(() => OutputPaths.CheckFile(folder, "--out")).Message);
        Assert.Contains("cannot write in /proc", Assert.Throws<MatqException>(() => OutputPaths.CheckFile("/proc/x/y.matq", "--out")).Message);
        Assert.Contains("cannot write in /proc", Assert.Throws<MatqException>(() => OutputPaths.CheckWorkFolder("/proc/run", "--out")).Message);
        var file = _dir.File("f");
        File.WriteAllText(file, "");
        Assert.Contains("is a file, not a folder", Assert.Throws<MatqException>(() => OutputPaths.CheckFile(Path.Combine(file, "x", "y.gguf"), "--out")).Message);
        Assert.Equal(["f", "out"], Directory.GetFileSystemEntries(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Gguf_and_onnx_files_are_named_where_safetensors_is_read()
    {
        var gguf = _dir.File("m.gguf");
        new Matq.Formats.Gguf.GgufWriter().Write(gguf);
        Assert.Contains("is a GGUF file", Assert.Throws<MatqException>(() => Matq.Formats.Safetensors.SafetensorsFile.Open(gguf)).Message);
        // ModelProto: ir_version = 10 (0x08 0x0A), then producer_name (field 2, 0x12)
        var onnx = _dir.File("m.onnx");
        File.WriteAllBytes(onnx, [0x08, 0x0A, 0x12, 0x04, (byte)'m', (byte)'a', (byte)'t', (byte)'q', 0x3A, 0x00, 0, 0, 0, 0, 0, 0]);
        Assert.Contains("is an ONNX model", Assert.Throws<MatqException>(() => Matq.Formats.Safetensors.SafetensorsFile.Open(onnx)).Message);
        // a safetensors file whose header length starts with the byte 0x08 is still read as safetensors
        Assert.Null(ForeignFormats.Detect([0x08, 0x01, 0, 0, 0, 0, 0, 0, (byte)'{']));
    }
}
