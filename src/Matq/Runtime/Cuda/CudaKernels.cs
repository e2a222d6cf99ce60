// Contract: matq's own CUDA kernels, compiled at run time. The CUDA source is compiled once per process and device by
// NVRTC (the libnvrtc of the PyTorch install that MATQ_TORCH_LIB names: its nvidia/*/lib folders, or MATQ_NVRTC) to a
// cubin for the device's architecture, loaded with the CUDA driver API into the primary context that PyTorch uses, and
// launched on the legacy default stream, which is the stream TorchSharp's own work runs on, so a kernel is ordered
// with the tensor operations around it without any synchronization. Arguments are device pointers of TorchSharp
// tensors (Pointer) and scalars. Nothing here is required: Load returns null with the reason when NVRTC or the driver
// is missing, and callers fall back to their TorchSharp path and say so once.
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace Matq.Runtime.Cuda;

/// <summary>A compiled CUDA module on one device; <see cref="Launch"/> runs one of its kernels.</summary>
public sealed unsafe class CudaModule
{
    private readonly IntPtr _context;
    private readonly Dictionary<string, IntPtr> _functions = new();

    private CudaModule(IntPtr context, IntPtr module, IEnumerable<string> kernels)
    {
        _context = context;
        foreach (var name in kernels)
        {
            Driver.Check(Driver.cuModuleGetFunction(out IntPtr f, module, name), $"cuModuleGetFunction({name})");
            _functions[name] = f;
        }
    }

    private static readonly ConcurrentDictionary<(string Source, int Device), Lazy<(CudaModule? Module, string? Problem)>> Cache = new();

    /// <summary>The module built from <paramref name="source"/> on CUDA device <paramref name="device"/>, compiled on
    /// first use; null with the reason when NVRTC or the CUDA driver cannot be used.</summary>
    public static (CudaModule? Module, string? Problem) Load(string source, IReadOnlyList<string> kernels, int device) =>
        Cache.GetOrAdd((source, device), key => new Lazy<(CudaModule?, string?)>(() =>
        {
            try { return (Build(key.Source, kernels, key.Device), null); }
            catch (Exception e) when (e is CudaException or DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
            {
                return (null, e.Message);
            }
        })).Value;

    private static CudaModule Build(string source, IReadOnlyList<string> kernels, int device)
    {
        Driver.Check(Driver.cuInit(0), "cuInit");
        Driver.Check(Driver.cuDeviceGet(out int dev, device), "cuDeviceGet");
        Driver.Check(Driver.cuDeviceGetAttribute(out int major, 75, dev), "compute capability");   // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        Driver.Check(Driver.cuDeviceGetAttribute(out int minor, 76, dev), "compute capability");   // ..._MINOR
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out IntPtr context, dev), "cuDevicePrimaryCtxRetain");
        byte[] cubin = Nvrtc.Compile(source, $"sm_{major}{minor}");
        Driver.Check(Driver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
        IntPtr module;
        fixed (byte* image = cubin)
            Driver.Check(Driver.cuModuleLoadData(out module, image), $"cuModuleLoadData (sm_{major}{minor} cubin)");
        return new CudaModule(context, module, kernels);
    }

    /// <summary>Launches <paramref name="kernel"/> on a 1-D grid of <paramref name="blocks"/> × <paramref name="threads"/>
    /// on the legacy default stream; each argument is an IntPtr (device pointer), int, long or float.</summary>
    public void Launch(string kernel, int blocks, int threads, params object[] args)
    {
        IntPtr f = _functions[kernel];
        int n = args.Length;
        // one 8-byte slot per argument, and the array of pointers to the slots that cuLaunchKernel reads
        long* slots = stackalloc long[n];
        IntPtr* parameters = stackalloc IntPtr[n];
        for (int i = 0; i < n; i++)
        {
            switch (args[i])
            {
                case IntPtr p: *(IntPtr*)(slots + i) = p; break;
                case int v: *(int*)(slots + i) = v; break;
                case long v: slots[i] = v; break;
                case float v: *(float*)(slots + i) = v; break;
                default: throw new ArgumentException($"kernel argument {i} of {kernel}: {args[i]?.GetType().Name} is not a pointer, int, long or float");
            }
            parameters[i] = (IntPtr)(slots + i);
        }
        Driver.Check(Driver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        Driver.Check(Driver.cuLaunchKernel(f, (uint)blocks, 1, 1, (uint)threads, 1, 1, 0, IntPtr.Zero, parameters, null), $"launch {kernel}");
    }

    /// <summary>The device address of <paramref name="t"/>'s first element (its storage's base plus its offset).</summary>
    public static IntPtr Pointer<T>(torch.Tensor t) where T : unmanaged
    {
        using var storage = t.storage<T>();
        return storage.data_ptr() + checked((nint)(t.storage_offset() * t.element_size()));
    }
}

/// <summary>A CUDA driver or NVRTC call that failed, with the call and the library's message.</summary>
public sealed class CudaException(string message) : Exception(message);

internal static unsafe partial class Driver
{
    private const string Lib = "libcuda.so.1";

    [LibraryImport(Lib)] internal static partial int cuInit(uint flags);
    [LibraryImport(Lib)] internal static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Lib)] internal static partial int cuModuleLoadData(out IntPtr module, byte* image);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, string name);
    [LibraryImport(Lib)] internal static partial int cuGetErrorString(int error, out IntPtr text);
    [LibraryImport(Lib)]
    internal static partial int cuLaunchKernel(IntPtr f, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedBytes, IntPtr stream, IntPtr* parameters, IntPtr* extra);

    internal static void Check(int result, string what)
    {
        if (result == 0) return;
        string text = cuGetErrorString(result, out IntPtr p) == 0 && p != IntPtr.Zero ? Marshal.PtrToStringUTF8(p) ?? "" : "";
        throw new CudaException($"CUDA driver: {what} failed with error {result} {text}".TrimEnd());
    }
}

/// <summary>NVRTC, found beside the PyTorch install (its wheels ship it) or at MATQ_NVRTC.</summary>
internal static unsafe class Nvrtc
{
    public const string PathVariable = "MATQ_NVRTC";
    private static readonly Lazy<IntPtr> Library = new(LoadLibrary);

    /// <summary>Candidate libnvrtc paths, most specific first.</summary>
    internal static IEnumerable<string> Candidates()
    {
        string? explicitPath = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrWhiteSpace(explicitPath)) { yield return explicitPath; yield break; }
        string? torchLib = Environment.GetEnvironmentVariable(TorchDevices.TorchLibVariable);
        if (!string.IsNullOrWhiteSpace(torchLib) && Directory.Exists(torchLib))
        {
            foreach (var f in Directory.EnumerateFiles(torchLib, "libnvrtc*.so*").Where(f => !f.Contains("builtins")).Order())
                yield return f;
            string nvidia = Path.GetFullPath(Path.Combine(torchLib, "..", "..", "nvidia"));
            if (Directory.Exists(nvidia))
                foreach (var f in Directory.EnumerateFiles(nvidia, "libnvrtc.so*", SearchOption.AllDirectories).Order())
                    yield return f;
        }
        foreach (var name in new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so" }) yield return name;
    }

    private static IntPtr LoadLibrary()
    {
        var tried = new List<string>();
        foreach (var path in Candidates())
        {
            if (NativeLibrary.TryLoad(path, out IntPtr handle)) return handle;
            tried.Add(path);
        }
        throw new CudaException($"NVRTC (libnvrtc) not found (tried {string.Join(", ", tried)}); set {PathVariable} to its path");
    }

    private static IntPtr Export(string name) => NativeLibrary.GetExport(Library.Value, name);

    public static byte[] Compile(string source, string arch)
    {
        var create = (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)Export("nvrtcCreateProgram");
        var compile = (delegate* unmanaged<IntPtr, int, byte**, int>)Export("nvrtcCompileProgram");
        var logSize = (delegate* unmanaged<IntPtr, nuint*, int>)Export("nvrtcGetProgramLogSize");
        var log = (delegate* unmanaged<IntPtr, byte*, int>)Export("nvrtcGetProgramLog");
        var cubinSize = (delegate* unmanaged<IntPtr, nuint*, int>)Export("nvrtcGetCUBINSize");
        var cubin = (delegate* unmanaged<IntPtr, byte*, int>)Export("nvrtcGetCUBIN");
        var destroy = (delegate* unmanaged<IntPtr*, int>)Export("nvrtcDestroyProgram");

        byte[] src = Encoding.UTF8.GetBytes(source + "\0"), name = "matq.cu\0"u8.ToArray();
        // --fmad=false: every multiply and add rounds on its own, as in the CPU path, so both give the same bits
        string[] options = [$"--gpu-architecture={arch}", "--fmad=false", "--std=c++17"];
        byte[][] optionBytes = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
        IntPtr program;
        fixed (byte* s = src, nm = name)
            NvrtcCheck(create(&program, s, nm, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var handles = optionBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            try
            {
                byte** opts = stackalloc byte*[options.Length];
                for (int i = 0; i < options.Length; i++) opts[i] = (byte*)handles[i].AddrOfPinnedObject();
                int result = compile(program, options.Length, opts);
                if (result != 0)
                {
                    nuint size;
                    logSize(program, &size);
                    var text = new byte[(int)size];
                    fixed (byte* t = text) log(program, t);
                    throw new CudaException($"NVRTC could not compile matq's kernels for {arch} (error {result}): {Encoding.UTF8.GetString(text).TrimEnd('\0', '\n')}");
                }
            }
            finally { foreach (var h in handles) h.Free(); }
            nuint bytes;
            NvrtcCheck(cubinSize(program, &bytes), "nvrtcGetCUBINSize");
            var image = new byte[(int)bytes];
            fixed (byte* i = image) NvrtcCheck(cubin(program, i), "nvrtcGetCUBIN");
            return image;
        }
        finally { destroy(&program); }
    }

    private static void NvrtcCheck(int result, string what)
    {
        if (result != 0) throw new CudaException($"NVRTC: {what} failed with error {result}");
    }
}

/// <summary>Host arrays of tensors by one memory copy (TorchSharp's accessor ToArray walks element by element: ~7 ns a
/// value, over a second per 8B decoder block of codes).</summary>
public static class HostCopy
{
    /// <summary>The values of <paramref name="t"/> (any device, any strides; its dtype must be <typeparamref name="T"/>'s)
    /// in row-major order.</summary>
    public static unsafe T[] ToArray<T>(torch.Tensor t) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(t);
        bool direct = t.device.type == DeviceType.CPU && t.is_contiguous();
        torch.Tensor c = direct ? t : t.cpu().contiguous();
        try
        {
            var result = new T[checked((int)c.numel())];
            if (result.Length > 0)
                new ReadOnlySpan<T>((void*)CudaModule.Pointer<T>(c), result.Length).CopyTo(result);
            return result;
        }
        finally
        {
            if (!direct) c.Dispose();
        }
    }
}
