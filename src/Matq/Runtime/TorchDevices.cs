// Chooses the compute device for a verb (--device cpu|cuda|auto) and, when MATQ_TORCH_LIB names an existing
// PyTorch lib/ folder, loads its CUDA-enabled libtorch before TorchSharp initializes (no TorchSharp-cuda package needed).
using System.Runtime.InteropServices;
using TorchSharp;

namespace Matq.Runtime;

public enum DeviceRequest { Cpu, Cuda, Auto }

public static class TorchDevices
{
    public const string TorchLibVariable = "MATQ_TORCH_LIB";

    // Load order matters: each library's dependencies first, so dlopen resolves them by soname.
    private static readonly string[] CudaLibraries = ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"];
    private static readonly object Gate = new();
    private static bool _initialized;
    private static string? _cudaProblem;
    private static bool _preloaded;
    private static IntPtr _torchCpu;

    /// <summary>Loads MATQ_TORCH_LIB's libtorch when set; false when it is not set. Call before any other torch use.</summary>
    public static bool PreloadTorchLib()
    {
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(TorchLibVariable))) return false;
        TryInitializeCuda();
        if (!_preloaded)
            throw new MatqException($"{TorchLibVariable} is set but its libtorch could not be loaded: {_cudaProblem}; unset it to use matq's own CPU libtorch");
        return true;
    }

    public static DeviceRequest Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => DeviceRequest.Auto,
        "cpu" => DeviceRequest.Cpu,
        "cuda" or "gpu" => DeviceRequest.Cuda,
        _ => throw new MatqException($"--device '{text}' is not a device (use cpu, cuda or auto)"),
    };

    /// <summary>Resolves a request to a TorchSharp device; a CUDA request without CUDA fails with one line.</summary>
    public static torch.Device Resolve(DeviceRequest request)
    {
        // With MATQ_TORCH_LIB set, that install's libtorch must be in place before TorchSharp's static
        // initializer runs, for CPU work too (a GPU publish carries no CPU libtorch of its own).
        if (request == DeviceRequest.Cpu)
        {
            PreloadTorchLib();
            return torch.CPU;
        }
        bool cuda = TryInitializeCuda();
        if (cuda) return torch.CUDA;
        if (request == DeviceRequest.Cuda)
            throw new MatqException($"--device cuda: CUDA is not available ({_cudaProblem}); use --device cpu");
        return torch.CPU;
    }

    public static torch.Device Resolve(string? text) => Resolve(Parse(text));

    /// <summary>Sets libtorch's cuDNN autotuner (PyTorch's torch.backends.cudnn.benchmark): on, each new convolution
    /// shape times cuDNN's algorithms once and caches the fastest; off (libtorch's default), a heuristic picks one.
    /// TorchSharp 0.107 has no setter, so this calls at::globalContext().setBenchmarkCuDNN in the libtorch loaded from
    /// MATQ_TORCH_LIB (exported C++ symbols, Itanium ABI) and returns the value read back.</summary>
    public static unsafe bool SetCudnnBenchmark(bool on)
    {
        if (!TryInitializeCuda() || _torchCpu == IntPtr.Zero)
            throw new MatqException($"--cudnn-benchmark needs CUDA: {_cudaProblem ?? "no CUDA libtorch loaded"}");
        if (!NativeLibrary.TryGetExport(_torchCpu, "_ZN2at13globalContextEv", out IntPtr global)
            || !NativeLibrary.TryGetExport(_torchCpu, "_ZN2at7Context17setBenchmarkCuDNNEb", out IntPtr set)
            || !NativeLibrary.TryGetExport(_torchCpu, "_ZNK2at7Context14benchmarkCuDNNEv", out IntPtr get))
            throw new MatqException("--cudnn-benchmark: this libtorch does not export at::Context::setBenchmarkCuDNN; leave the option off");
        IntPtr context = ((delegate* unmanaged<IntPtr>)global)();
        ((delegate* unmanaged<IntPtr, byte, void>)set)(context, on ? (byte)1 : (byte)0);
        return ((delegate* unmanaged<IntPtr, byte>)get)(context) != 0;
    }

    /// <summary>True once CUDA is usable; loads MATQ_TORCH_LIB's libraries at most once per process.</summary>
    public static bool TryInitializeCuda()
    {
        lock (Gate)
        {
            if (_initialized) return _cudaProblem is null;
            _initialized = true;
            var dir = Environment.GetEnvironmentVariable(TorchLibVariable);
            if (string.IsNullOrWhiteSpace(dir))
            {
                _cudaProblem = $"{TorchLibVariable} is not set; point it at a CUDA PyTorch install's torch/lib folder";
                return false;
            }
            if (!Directory.Exists(dir))
            {
                _cudaProblem = $"{TorchLibVariable}={dir} does not exist";
                return false;
            }
            foreach (var lib in CudaLibraries)
            {
                var path = Path.Combine(dir, lib);
                if (!File.Exists(path))
                {
                    _cudaProblem = $"{TorchLibVariable}={dir} has no {lib}";
                    return false;
                }
                try
                {
                    IntPtr handle = NativeLibrary.Load(path);
                    if (lib == "libtorch_cpu.so") _torchCpu = handle;
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    _cudaProblem = $"loading {path} failed: {e.Message.Split('\n')[0]}";
                    return false;
                }
            }
            _preloaded = true;
            try
            {
                torch.InitializeDeviceType(DeviceType.CUDA);
            }
            catch (Exception e)
            {
                _cudaProblem = $"TorchSharp could not initialize CUDA: {e.Message.Split('\n')[0]}";
                return false;
            }
            if (!torch.cuda.is_available())
            {
                _cudaProblem = "libtorch loaded but reports no CUDA device";
                return false;
            }
            return true;
        }
    }
}
