// Contract: `--gpus N` starts N ranks of the same command, as torchrun does: one process per GPU on this host, each told
// its rank, the world size and the rendezvous (MATQ_RANK, MATQ_WORLD_SIZE, MATQ_MASTER_ADDR, MATQ_MASTER_PORT = a free
// loopback port); each rank's output lines come back prefixed "[rank k]"; the first rank that fails stops all the
// others, and the launcher exits with that rank's code after one line naming it.
using System.Diagnostics;
using Matq.Distributed;

namespace Matq.Cli.Common;

public static class RankLauncher
{
    /// <summary>True inside a rank that a launcher started (a rank never launches again).</summary>
    public static bool IsRank => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(ProcessGroup.RankVariable));

    /// <summary>This process's command line without <c>--gpus N</c> (or <c>--gpus=N</c>): what every rank runs.</summary>
    public static string[] ArgumentsWithoutGpus(IReadOnlyList<string> args)
    {
        var list = new List<string>();
        for (int i = 0; i < args.Count; i++)
        {
            if (args[i] == "--gpus") { i++; continue; }
            if (args[i].StartsWith("--gpus=", StringComparison.Ordinal)) continue;
            list.Add(args[i]);
        }
        return list.ToArray();
    }

    /// <summary>The program and leading arguments that start matq again: the apphost itself, or `dotnet Matq.Cli.dll`.</summary>
    public static (string FileName, string[] Prefix) Self()
    {
        var path = Environment.ProcessPath ?? throw new MatqException("--gpus: cannot find this program's path to start the ranks");
        var entry = System.Reflection.Assembly.GetEntryAssembly()?.Location;
        return Path.GetFileNameWithoutExtension(path) == "dotnet" && entry is { Length: > 0 } ? (path, [entry]) : (path, []);
    }

    /// <summary>`--gpus N` of a verb: checks that <paramref name="device"/> (CUDA) has N GPUs, says what starts, and runs N
    /// ranks of this very command line without --gpus; returns the launcher's exit code.</summary>
    public static int LaunchSelf(IAnsiConsole console, int ranks, TorchSharp.torch.Device device, string what)
    {
        if (device.type == TorchSharp.DeviceType.CUDA)
        {
            int visible = (int)TorchSharp.torch.cuda.device_count();
            if (visible < ranks) throw new MatqException($"--gpus {ranks}: this machine has {visible} CUDA device(s): give --gpus {Math.Max(1, visible)} or fewer");
        }
        var (file, prefix) = Self();
        console.MarkupLine($"starting {ranks} ranks ({Markup.Escape(what)})");
        return Run(console, ranks, file, [.. prefix, .. ArgumentsWithoutGpus(Environment.GetCommandLineArgs().Skip(1).ToList())]);
    }

    /// <summary>Runs <paramref name="ranks"/> processes of <paramref name="fileName"/> <paramref name="args"/>; returns 0 when
    /// every rank exits 0, else the first failing rank's exit code (the others are stopped).</summary>
    public static int Run(IAnsiConsole console, int ranks, string fileName, IReadOnlyList<string> args, TimeSpan? stopGrace = null)
    {
        int port = HostProcessGroup.FreeLoopbackPort();
        var procs = new Process[ranks];
        var gate = new object();
        int failedRank = -1, failedCode = 0;
        using var anyExit = new SemaphoreSlim(0);
        void Line(int rank, string? text, bool error)
        {
            if (text is null) return;
            lock (gate) console.MarkupLine((error ? "[red]" : "[grey]") + Markup.Escape($"[rank {rank}]") + (error ? "[/] " : "[/] ") + Markup.Escape(text));
        }
        try
        {
            for (int r = 0; r < ranks; r++)
            {
                var psi = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in args) psi.ArgumentList.Add(a);
                psi.Environment[ProcessGroup.RankVariable] = r.ToString(System.Globalization.CultureInfo.InvariantCulture);
                psi.Environment[ProcessGroup.WorldSizeVariable] = ranks.ToString(System.Globalization.CultureInfo.InvariantCulture);
                psi.Environment[ProcessGroup.AddressVariable] = "127.0.0.1";
                psi.Environment[ProcessGroup.PortVariable] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
                int rank = r;
                var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
                p.OutputDataReceived += (_, e) => Line(rank, e.Data, false);
                p.ErrorDataReceived += (_, e) => Line(rank, e.Data, true);
                p.Exited += (_, _) => anyExit.Release();
                if (!p.Start()) throw new MatqException($"--gpus: rank {rank} could not be started ({fileName})");
                procs[r] = p;
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
            }
            for (int exited = 0; exited < ranks; exited++)
            {
                anyExit.Wait();
                for (int r = 0; r < ranks && failedRank < 0; r++)
                    if (procs[r].HasExited && procs[r].ExitCode != 0) { failedRank = r; failedCode = procs[r].ExitCode; }
                if (failedRank >= 0) break;
            }
        }
        finally
        {
            foreach (var p in procs)
                if (p is not null && !p.HasExited)
                    try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            foreach (var p in procs)
            {
                p?.WaitForExit((int)(stopGrace ?? TimeSpan.FromSeconds(30)).TotalMilliseconds);
                p?.WaitForExit();   // drains the redirected output
                p?.Dispose();
            }
        }
        if (failedRank < 0) return 0;
        console.MarkupLine($"[red]rank {failedRank} failed with exit code {failedCode}; the other ranks were stopped[/]");
        return failedCode;
    }
}
