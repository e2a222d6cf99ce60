// Contract: memory figures for benchmarks. Host: the process's resident set now and its peak (Linux /proc/self/status
// VmRSS / VmHWM), and a reset of the peak (/proc/self/clear_refs "5") so each stage reports its own. GPU: the device's
// used memory sampled through NVML (libnvidia-ml) every few milliseconds, peak kept; null where NVML is absent.
using System.Runtime.InteropServices;

namespace Matq.Evaluation;

public static class HostMemory
{
    /// <summary>Peak resident set (VmHWM) in bytes since start or the last <see cref="ResetPeak"/>; null off Linux.</summary>
    public static long? PeakBytes() => StatusKb("VmHWM:");

    /// <summary>Resident set (VmRSS) in bytes; null off Linux.</summary>
    public static long? CurrentBytes() => StatusKb("VmRSS:");

    /// <summary>Resets the peak to the current resident set; false where the kernel does not allow it.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    private static long? StatusKb(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
                var digits = line[key.Length..].Trim().Split(' ')[0];
                return long.TryParse(digits, out var kb) ? kb * 1024 : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }
}

/// <summary>Samples one GPU's used memory (NVML, all processes on it) on a background thread until disposed; Peak is the
/// largest sample minus the first (what this run added). Available is false without NVML or a device.</summary>
public sealed class GpuMemorySampler : IDisposable
{
    private readonly IntPtr _device;
    private readonly Thread? _thread;
    private volatile bool _stop;
    private long _baseline = -1, _peak;

    public GpuMemorySampler(int deviceIndex = 0, int periodMs = 5)
    {
        try
        {
            if (Nvml.nvmlInit_v2() != 0 || Nvml.nvmlDeviceGetHandleByIndex_v2((uint)deviceIndex, out _device) != 0) return;
            if (Sample() is not long first) return;
            _baseline = first;
            Available = true;
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    if (Sample() is long used) Interlocked.Exchange(ref _peak, Math.Max(Interlocked.Read(ref _peak), used - _baseline));
                    Thread.Sleep(periodMs);
                }
            }) { IsBackground = true, Name = "matq-gpu-memory" };
            _thread.Start();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException) { }
    }

    public bool Available { get; }

    /// <summary>Peak used bytes above the level when sampling started; null when unavailable.</summary>
    public long? Peak => Available ? Interlocked.Read(ref _peak) : null;

    /// <summary>Used bytes on the device now (all processes); null when unavailable.</summary>
    public long? Current => Available ? Sample() : null;

    /// <summary>Starts a new stage: the baseline becomes the current level and the peak 0.</summary>
    public void Reset()
    {
        if (!Available || Sample() is not long now) return;
        Interlocked.Exchange(ref _baseline, now);
        Interlocked.Exchange(ref _peak, 0);
    }

    private long? Sample() => Nvml.nvmlDeviceGetMemoryInfo(_device, out var info) == 0 ? (long)info.Used : null;

    public void Dispose()
    {
        _stop = true;
        _thread?.Join();
    }

    private static class Nvml
    {
        [StructLayout(LayoutKind.Sequential)]
        public struct MemoryInfo { public ulong Total, Free, Used; }

        [DllImport("libnvidia-ml.so.1")] public static extern int nvmlInit_v2();
        [DllImport("libnvidia-ml.so.1")] public static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);
        [DllImport("libnvidia-ml.so.1")] public static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out MemoryInfo memory);
    }
}
