// Runs reference implementations that ship as npm packages (HF tokenizers, HF jinja) through Node for differential
// tests. A package is installed once into <data cache>/test-tools/<name-version>/ (into a staging folder, then renamed,
// so an interrupted install is never mistaken for a complete one). A missing node or npm fails the test with what to
// install (scripts/prereqs.sh installs them), never a skip.
using System.Diagnostics;
using Matq.Data;

namespace Matq.Tests.TestSupport;

internal static class NodeTool
{
    /// <summary>The module folder of <paramref name="package"/> ("name@version"), installing it on first use.</summary>
    public static string Install(string package, string moduleName)
    {
        string root = Path.Combine(DataCache.DefaultRoot(), "test-tools", package.Replace('@', '-').Replace('/', '-').TrimStart('-'));
        string module = Path.Combine(root, "node_modules", moduleName);
        if (File.Exists(Path.Combine(module, "package.json"))) return module;
        string npm;
        try { npm = new NpmClient().Locate(); }
        catch (MatqException e) { throw new InvalidOperationException($"this test runs {package} through Node: {e.Message} (scripts/prereqs.sh installs it)"); }
        Directory.CreateDirectory(Path.GetDirectoryName(root)!);
        string staging = root + ".staging-" + Environment.ProcessId;
        Directory.CreateDirectory(staging);
        File.WriteAllText(Path.Combine(staging, "package.json"), "{\"private\": true}");
        Exec(npm, ["install", "--no-audit", "--no-fund", "--no-save", package], staging, TimeSpan.FromMinutes(5));
        if (!Directory.Exists(root)) Directory.Move(staging, root);
        else Directory.Delete(staging, recursive: true);   // another process finished first
        return module;
    }

    /// <summary>Runs node with <paramref name="script"/> (written to a temp folder) and args; returns the folder's file <paramref name="output"/>.</summary>
    public static string RunScript(string package, string script, IEnumerable<(string Name, string Content)> inputs, string output, params string[] args)
    {
        string dir = Directory.CreateTempSubdirectory("matq-node-").FullName;
        try
        {
            string path = Path.Combine(dir, "run.js");
            File.WriteAllText(path, script);
            foreach (var (name, content) in inputs) File.WriteAllText(Path.Combine(dir, name), content);
            Exec(Locate("node", package), [path, .. args.Select(a => a.Replace("{dir}", dir))], dir, TimeSpan.FromMinutes(3));
            return File.ReadAllText(Path.Combine(dir, output));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    public static string Locate(string name, string package)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        throw new InvalidOperationException($"this test runs {package} through Node, and '{name}' is not on PATH: " +
                                            "install Node.js and npm (apt-get install npm; scripts/prereqs.sh does it)");
    }

    public static void Exec(string file, string[] args, string cwd, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(true); throw new TimeoutException($"{file} {string.Join(' ', args)} ran over {timeout}"); }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} failed (exit {p.ExitCode}): {stderr.Result}{stdout.Result}");
    }
}
