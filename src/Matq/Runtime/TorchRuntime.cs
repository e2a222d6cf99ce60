// Contract: the one start-up order of torch for a run: the device first (which loads MATQ_TORCH_LIB's libtorch before
// TorchSharp's static initializer runs: a GPU build has no CPU libtorch of its own), then CPU threads, then cuDNN's
// autotuner. Every verb calls Configure once, before any other torch call; Check validates the text without touching torch.
using TorchSharp;

namespace Matq.Runtime;

/// <summary>What <see cref="TorchRuntime.Configure"/> set: the device, torch's CPU threads (as read back) and the cuDNN
/// autotuner as libtorch reports it ("on", "off", or "n/a (cpu)").</summary>
public sealed record TorchRuntimeState(torch.Device Device, int Threads, string CudnnBenchmark);

public static class TorchRuntime
{
    /// <summary>Checks --device, --threads and --cudnn-benchmark as typed (one line per mistake); loads nothing.</summary>
    public static void Check(string? device, int? threads = null, string? cudnnBenchmark = null)
    {
        var request = TorchDevices.Parse(device);
        if (threads is int t && t < 1) throw new MatqException($"--threads {t} is out of range: at least 1");
        if (cudnnBenchmark is null) return;
        string v = cudnnBenchmark.Trim().ToLowerInvariant();
        if (v is not ("on" or "off")) throw new MatqException($"--cudnn-benchmark '{cudnnBenchmark}' is invalid: use on or off");
        if (v == "on" && request == DeviceRequest.Cpu) throw new MatqException("--cudnn-benchmark applies to --device cuda only");
    }

    /// <summary>
    /// Resolves <paramref name="device"/> (cpu|cuda|auto), then sets <paramref name="threads"/> (null = torch's choice), then
    /// applies <paramref name="cudnnBenchmark"/> (on|off; null = leave libtorch's default) on CUDA. In this order only: setting
    /// threads first would initialize TorchSharp before MATQ_TORCH_LIB's libtorch is loaded.
    /// </summary>
    public static TorchRuntimeState Configure(string? device, int? threads = null, string? cudnnBenchmark = null)
    {
        Check(device, threads, cudnnBenchmark);
        var resolved = TorchDevices.Resolve(device);
        if (threads is int t) torch.set_num_threads(t);
        string cudnn = "n/a (cpu)";
        if (cudnnBenchmark is not null)
        {
            bool on = cudnnBenchmark.Trim().Equals("on", StringComparison.OrdinalIgnoreCase);
            if (resolved.type != DeviceType.CUDA)
            {
                if (on) throw new MatqException("--cudnn-benchmark applies to --device cuda only");
            }
            else cudnn = TorchDevices.SetCudnnBenchmark(on) ? "on" : "off";
        }
        else if (resolved.type == DeviceType.CUDA) cudnn = "default";
        return new TorchRuntimeState(resolved, torch.get_num_threads(), cudnn);
    }
}
