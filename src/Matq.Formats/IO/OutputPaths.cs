// Contract: checks an output path before any work is done, so a run never computes for minutes and then fails, and
// never destroys its input: refuses an output that is an input, lies inside one, or contains one; an existing folder
// where a file goes (or a file where a folder goes); an existing output folder without --force; and a location that
// cannot be written (probed by creating and deleting a hidden file in the nearest existing folder). Paths are compared
// after resolving symbolic links.
using System.Globalization;

namespace Matq.Formats.IO;

public static class OutputPaths
{
    /// <summary>Checks a file output (<paramref name="option"/> names it in messages); returns its full path.</summary>
    public static string CheckFile(string output, string option, params string?[] inputs)
    {
        string full = CheckCommon(output, option, inputs);
        if (Directory.Exists(full))
            throw new MatqException($"{option} {output} is a folder: give a file path, e.g. {Path.Combine(output, "out" + Path.GetExtension(output))}");
        ProbeWritable(full, output, option);
        return full;
    }

    /// <summary>Where free bytes of a folder's file system come from; tests substitute a small figure.</summary>
    public static Func<string, long> FreeBytesProbe { get; set; } = folder => new DriveInfo(folder).AvailableFreeSpace;

    /// <summary>
    /// Refuses, before any work, an output of about <paramref name="bytes"/> (an estimate) that the file system holding
    /// <paramref name="output"/> lacks room for; an atomic write needs the new file whole beside any old one, so an
    /// existing file's size does not count as free.
    /// </summary>
    public static void CheckFreeSpace(string output, long bytes, string option)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(output))!;
        while (!Directory.Exists(folder) && Path.GetDirectoryName(folder) is { } parent) folder = parent;
        long free;
        try
        {
            free = FreeBytesProbe(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return;   // no figure on this file system: the atomic write still fails cleanly if it runs out
        }
        if (free < bytes)
            throw new MatqException($"{option} {output}: the output needs about {Mib(bytes)} but {folder} has {Mib(free)} free; free some space or write elsewhere");
    }

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("N0", CultureInfo.InvariantCulture) + " MiB";

    /// <summary>Checks a folder output: an existing folder is replaced only with <paramref name="force"/>.</summary>
    public static string CheckFolder(string output, string option, bool force, params string?[] inputs)
    {
        string full = CheckCommon(output, option, inputs);
        if (File.Exists(full)) throw new MatqException($"{option} {output} is a file: give a folder path");
        if (Directory.Exists(full) && !force)
            throw new MatqException($"{option} {output} already exists: pass --force to replace it, or give a new folder");
        ProbeWritable(full, output, option);
        return full;
    }

    /// <summary>Checks a folder a verb writes into and that may hold its own earlier files (a training run's folder):
    /// not a file, not an input, writable.</summary>
    public static string CheckWorkFolder(string output, string option, params string?[] inputs)
    {
        string full = CheckCommon(output, option, inputs);
        if (File.Exists(full)) throw new MatqException($"{option} {output} is a file: give a folder path");
        ProbeWritable(Path.Combine(full, ".probe"), output, option);
        return full;
    }

    /// <summary>Checks an input/output pair only (for outputs a verb fills itself, e.g. a training folder).</summary>
    public static string CheckNotInput(string output, string option, params string?[] inputs) => CheckCommon(output, option, inputs);

    /// <summary>The full path with every existing component's symbolic link resolved.</summary>
    public static string Canonical(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        if (full.Length == 0) return Path.DirectorySeparatorChar.ToString();
        string current = Path.GetPathRoot(full)!;
        foreach (var part in full[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            string next = Path.Combine(current, part);
            FileSystemInfo? target = null;
            try
            {
                var info = new FileInfo(next);
                if (info.LinkTarget is not null) target = info.ResolveLinkTarget(returnFinalTarget: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            current = target is null ? next : Path.GetFullPath(target.FullName).TrimEnd(Path.DirectorySeparatorChar);
        }
        return current;
    }

    private static string CheckCommon(string output, string option, string?[] inputs)
    {
        if (string.IsNullOrWhiteSpace(output)) throw new MatqException($"{option} is empty: give the path to write");
        string full = Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar);
        string canon = Canonical(output);
        foreach (var input in inputs)
        {
            if (string.IsNullOrWhiteSpace(input)) continue;
            string inCanon = Canonical(input);
            if (canon == inCanon)
                throw new MatqException($"{option} {output} is the input {input}: matq never overwrites its input; write to another path");
            if (Inside(canon, inCanon))
                throw new MatqException($"{option} {output} lies inside the input {input}: matq never writes into its input; write outside it");
            if (Inside(inCanon, canon))
                throw new MatqException($"{option} {output} contains the input {input}: replacing it would destroy the input; write elsewhere");
        }
        return full;
    }

    private static bool Inside(string path, string folder) =>
        path.StartsWith(folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    // Finds the nearest existing ancestor (it must be a folder) and creates + deletes a hidden probe file in it.
    private static void ProbeWritable(string full, string output, string option)
    {
        string? dir = Path.GetDirectoryName(full);
        while (dir is not null && !Directory.Exists(dir))
        {
            if (File.Exists(dir)) throw new MatqException($"{option} {output}: {dir} is a file, not a folder; give a path under a folder");
            dir = Path.GetDirectoryName(dir);
        }
        if (dir is null) throw new MatqException($"{option} {output}: no existing folder on that path; give a writable path");
        string probe = Path.Combine(dir, ".matq-probe-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            AtomicFile.TryDelete(probe);
            string why = e.Message.Split('\n')[0].TrimEnd('\r');
            throw new MatqException($"{option} {output}: cannot write in {dir} ({why}); choose a writable location");
        }
    }
}
