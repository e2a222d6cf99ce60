// The library as an app outside this repository gets it: Matq.Kernels, Matq.Formats and Matq.Runtime are packed
// (Matq.Runtime.slnf, as scripts/pack.sh does) into a fresh local folder feed under a version of this run's own, the
// package carries the runtime and its README and depends on no TorchSharp; samples/ChatApp, copied out of the
// repository (so none of its build settings apply), builds against that package, asks models/tiny one question through
// IChatClient and prints a non-empty streamed answer, and reports that libtorch was never mapped into its process.
using System.Diagnostics;
using System.IO.Compression;
using System.Text.RegularExpressions;

namespace Matq.Runtime.Tests;

public sealed class SampleAppTests
{
    [Fact]
    public void The_sample_app_builds_on_the_packed_runtime_and_chats_with_the_tiny_model_without_libtorch()
    {
        string root = MatqChatClientTests.RepoPath();
        string work = Directory.CreateTempSubdirectory("matq-sample-").FullName;
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string feed = Path.Combine(work, "feed"), app = Path.Combine(work, "ChatApp"), output = Path.Combine(work, "out");
        try
        {
            // pack the library into the local feed
            Dotnet(root, "pack", Path.Combine(root, "Matq.Runtime.slnf"), "-c", "Release", "-o", feed, $"-p:PackageVersion={version}");
            foreach (var id in new[] { "Matq.Kernels", "Matq.Formats", "Matq.Runtime" })
                Assert.True(File.Exists(Path.Combine(feed, $"{id}.{version}.nupkg")), $"{id}.{version}.nupkg was not packed: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
            using (var nupkg = ZipFile.OpenRead(Path.Combine(feed, $"Matq.Runtime.{version}.nupkg")))
            {
                Assert.Contains(nupkg.Entries, e => e.FullName == "lib/net10.0/Matq.Runtime.dll");
                Assert.Contains(nupkg.Entries, e => e.FullName == "README.md");
                using var reader = new StreamReader(nupkg.GetEntry("Matq.Runtime.nuspec")!.Open());
                var nuspec = reader.ReadToEnd();
                Assert.Contains($"<dependency id=\"Matq.Kernels\" version=\"{version}\"", nuspec, StringComparison.Ordinal);
                Assert.Contains($"<dependency id=\"Matq.Formats\" version=\"{version}\"", nuspec, StringComparison.Ordinal);
                Assert.Contains("<dependency id=\"Microsoft.Extensions.AI.Abstractions\"", nuspec, StringComparison.Ordinal);
                Assert.DoesNotMatch(new Regex("<dependency id=\"(TorchSharp|libtorch)", RegexOptions.IgnoreCase), nuspec);
            }

            // the sample, outside the repository, on the package
            Directory.CreateDirectory(app);
            foreach (var f in new[] { "ChatApp.csproj", "Program.cs" })
                File.Copy(Path.Combine(root, "samples", "ChatApp", f), Path.Combine(app, f));
            Dotnet(app, "build", Path.Combine(app, "ChatApp.csproj"), "-c", "Release", "-o", output,
                $"-p:MatqRuntimeVersion={version}", $"-p:RestoreAdditionalProjectSources={feed}");
            var files = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
            Assert.Contains("Matq.Runtime.dll", files);
            Assert.DoesNotContain(files, f => f!.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || f.Contains("libtorch", StringComparison.Ordinal));

            var run = Dotnet(work, Path.Combine(output, "ChatApp.dll"), Path.Combine(root, "models", "tiny"),
                "--template", Path.Combine(root, "tests", "fixtures", "chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"),
                "--max-tokens", "24", "--bits", "4", "Who", "are", "you?");
            var m = Regex.Match(run, @"^Q: Who are you\?\nA: (?<answer>.*)\n\[24 tokens, length, 4 bits\]\nlibtorch loaded: (?<torch>\w+)\n$", RegexOptions.Singleline);
            Assert.True(m.Success, "unexpected output:\n" + run);
            Assert.False(string.IsNullOrWhiteSpace(m.Groups["answer"].Value), "empty answer:\n" + run);
            Assert.Equal("no", m.Groups["torch"].Value);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
            // this run's package version is of no use to anything else: keep it out of the global packages folder
            string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (var id in new[] { "matq.kernels", "matq.formats", "matq.runtime" })
            {
                if (Directory.Exists(Path.Combine(packages, id, version))) Directory.Delete(Path.Combine(packages, id, version), recursive: true);
                if (Directory.Exists(Path.Combine(packages, id)) && !Directory.EnumerateFileSystemEntries(Path.Combine(packages, id)).Any())
                    Directory.Delete(Path.Combine(packages, id));
            }
        }
    }

    // Runs `dotnet ARGS` in DIR (no build servers left behind, none of this test host's MSBuild settings) and returns
    // its standard output; a non-zero exit fails the test with everything it printed.
    private static string Dotnet(string dir, params string[] args)
    {
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        var psi = new ProcessStartInfo(dotnet) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        bool isBuild = args[0] is "build" or "pack";
        if (isBuild) foreach (var a in new[] { "--nologo", "-v", "q", "--disable-build-servers" }) psi.ArgumentList.Add(a);
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} ran past 10 minutes:\n{stdout}");
        }
        Assert.True(p.ExitCode == 0, $"dotnet {string.Join(' ', args)} exited {p.ExitCode}:\n{stdout}\n{stderr.Result}");
        return stdout;
    }
}
