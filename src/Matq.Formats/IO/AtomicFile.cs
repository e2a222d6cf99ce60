// Contract: every file and folder matq writes goes through here. A file is written to a hidden temp beside the target,
// flushed, then renamed over it; a folder is filled in a hidden staging folder, then swapped in (the old one moved to a
// hidden aside and deleted). On any failure the previous file or folder is intact, the temp is removed, and file-system
// errors become one MatqException line naming the path. Temps carry the writer's process id:
//   .NAME.PID-RAND.matq-tmp   (file or staging folder)      .NAME.PID-RAND.matq-old   (a replaced folder, being deleted)
// so the next write of the same target deletes those whose process is gone (a kill -9 leaves no garbage for good).
using System.Diagnostics;
using System.Globalization;

namespace Matq.Formats.IO;

public static class AtomicFile
{
    private const string TempSuffix = ".matq-tmp";
    private const string OldSuffix = ".matq-old";

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> (temp + flush to disk + rename).</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = Prepare(path);
        string tmp = TempPath(full, TempSuffix);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            if (Directory.Exists(full)) throw new MatqException($"{path}: cannot write the file, a folder is there; give a file path");
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e)
        {
            TryDelete(tmp);
            throw Wrap(e, path);
        }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text));

    /// <summary>
    /// Writes the folder <paramref name="path"/>: <paramref name="fill"/> gets a hidden staging folder beside it, which
    /// then replaces <paramref name="path"/> (an existing folder there is moved aside, hidden, and deleted). Returns the
    /// full path written. <paramref name="beforeSwap"/> runs after the fill and before the swap (e.g. the atomic write
    /// of a file that goes with the folder); when it throws, nothing is swapped in.
    /// </summary>
    public static string WriteFolder(string path, Action<string> fill, Action? beforeSwap = null)
    {
        ArgumentNullException.ThrowIfNull(fill);
        string full = Prepare(path);
        string staged = TempPath(full, TempSuffix);
        try
        {
            Directory.CreateDirectory(staged);
            fill(staged);
            beforeSwap?.Invoke();
            if (File.Exists(full)) throw new MatqException($"{path}: cannot write the folder, a file is there; give a folder path");
            string? aside = null;
            if (Directory.Exists(full))
            {
                aside = TempPath(full, OldSuffix);
                Directory.Move(full, aside);
            }
            try { Directory.Move(staged, full); }
            catch
            {
                if (aside is not null) Directory.Move(aside, full);
                throw;
            }
            if (aside is not null) TryDelete(aside);
            return full;
        }
        catch (Exception e)
        {
            TryDelete(staged);
            throw Wrap(e, path);
        }
    }

    /// <summary>
    /// Deletes the temps and asides of earlier writes of <paramref name="path"/> whose writer process is no longer
    /// running (and, from matq versions before this naming, their hidden ".NAME.XXXXXXXX.tmp" files over an hour old).
    /// Returns how many were removed. Never throws for what it cannot delete.
    /// </summary>
    public static int CleanStale(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir)) return 0;
        string name = Path.GetFileName(full);
        int removed = 0;
        IEnumerable<string> entries;
        try
        {
            entries = Directory.EnumerateFileSystemEntries(dir, "." + name + ".*")
                .Concat(Directory.EnumerateFileSystemEntries(dir, name + ".tmp-*"))
                .Concat(Directory.EnumerateFileSystemEntries(dir, name + ".old-*")).ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        var hourAgo = DateTime.UtcNow.AddHours(-1);
        foreach (var entry in entries)
        {
            string file = Path.GetFileName(entry);
            bool hidden = file.StartsWith('.');
            string rest = file[(name.Length + (hidden ? 2 : 1))..];
            bool stale = hidden && (rest.EndsWith(TempSuffix, StringComparison.Ordinal) || rest.EndsWith(OldSuffix, StringComparison.Ordinal))
                ? WriterGone(rest)
                : IsLegacyTemp(rest, hidden) && Directory.GetLastWriteTimeUtc(entry) < hourAgo;
            if (stale && TryDelete(entry)) removed++;
        }
        return removed;
    }

    /// <summary>The hidden temp name of this process for <paramref name="full"/> (exposed for tests).</summary>
    public static string TempPath(string full, string suffix = TempSuffix) =>
        Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileName(full) + "." +
            Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..8] + suffix);

    // Full path with its folder created and stale temps of the target cleaned; errors become one line.
    private static string Prepare(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new MatqException("the output path is empty: give --out PATH");
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        }
        catch (Exception e) { throw Wrap(e, path); }
        CleanStale(full);
        return full;
    }

    // "PID-RAND.matq-tmp": stale when no process PID runs (or it is not a number).
    private static bool WriterGone(string rest)
    {
        int dash = rest.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !int.TryParse(rest.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) return true;
        if (pid == Environment.ProcessId) return false;
        try
        {
            using var p = Process.GetProcessById(pid);
            return p.HasExited;
        }
        catch (ArgumentException) { return true; }
        catch (InvalidOperationException) { return true; }
    }

    // Earlier matq versions: ".NAME.<8 hex>.tmp" files, ".NAME.tmp-<id>" staging folders, "NAME.tmp-<pid>" files and
    // "NAME.old-<id>" folders.
    private static bool IsLegacyTemp(string rest, bool hidden) => hidden
        ? (rest.Length == 12 && rest.EndsWith(".tmp", StringComparison.Ordinal) && rest[..8].All(Uri.IsHexDigit)) || rest.StartsWith("tmp-", StringComparison.Ordinal)
        : rest.StartsWith("tmp-", StringComparison.Ordinal) || rest.StartsWith("old-", StringComparison.Ordinal);

    private static Exception Wrap(Exception e, string path) => e switch
    {
        MatqException => e,
        IOException or UnauthorizedAccessException or NotSupportedException or System.Security.SecurityException =>
            new MatqException($"{path}: cannot write ({FirstLine(e.Message)}); choose a writable --out with free space", e),
        _ => e,
    };

    private static string FirstLine(string s)
    {
        int n = s.IndexOfAny(['\r', '\n']);
        return n < 0 ? s : s[..n];
    }

    internal static bool TryDelete(string path)
    {
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else if (File.Exists(path)) File.Delete(path);
            else return false;
            return true;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}
