// Contract: a CUDA kernel that matq uses only after it reproduced its CPU kernel's bits: compiled by NVRTC once per
// process and device, then run on a test block by the caller's self-check against the CPU kernel; any compile error,
// exception or differing bit makes it unavailable on that device, with the reason, and the caller falls back to its
// TorchSharp ops (saying so once per process, on standard error).
using System.Collections.Concurrent;
using TorchSharp;

namespace Matq.Runtime.Cuda;

/// <summary>One self-checked kernel (<paramref name="name"/> in <paramref name="source"/>); <paramref name="selfCheck"/>
/// returns null when the module's results equal the CPU kernel's on a test block, else how they differ;
/// <paramref name="what"/> names it in the fallback line.</summary>
public sealed class CheckedCudaKernel(string source, string name, Func<CudaModule, int, string?> selfCheck, string what)
{
    private readonly ConcurrentDictionary<int, Lazy<(CudaModule? Module, string? Problem)>> _ready = new();
    private int _fallbackReported;

    public string Name => name;

    /// <summary>The module on CUDA device <paramref name="device"/>, or null with the reason.</summary>
    public (CudaModule? Module, string? Problem) On(int device) =>
        _ready.GetOrAdd(device, d => new Lazy<(CudaModule?, string?)>(() =>
        {
            var (module, problem) = CudaModule.Load(source, [name], d);
            if (module is null) return (null, problem);
            try
            {
                string? mismatch = selfCheck(module, d);
                return mismatch is null ? (module, null) : (null, mismatch);
            }
            catch (Exception e)
            {
                return (null, $"the kernel's self-check failed: {e.GetType().Name}: {e.Message}");
            }
        })).Value;

    /// <summary>Where tensors on <paramref name="device"/> can use the kernel pair: true with null on the CPU, true with the
    /// module on a CUDA device where it is ready; false on other devices and where it is not (the reason printed once).</summary>
    public bool TryResolve(torch.Device device, out CudaModule? module)
    {
        module = null;
        if (device.type == DeviceType.CPU) return true;
        if (device.type != DeviceType.CUDA) return false;
        (module, string? problem) = On(Math.Max(0, (int)device.index));
        if (module is not null) return true;
        if (Interlocked.Exchange(ref _fallbackReported, 1) == 0)
            Console.Error.WriteLine($"{what}: the CUDA kernel is not available ({problem}); using the per-column TorchSharp pass, which is slower");
        return false;
    }
}
