// Contract: collectives on CUDA tensors through NCCL, the library PyTorch's DDP runs on, loaded from the same PyTorch
// install as libtorch (MATQ_TORCH_LIB = …/site-packages/torch/lib; NCCL is …/site-packages/nvidia/nccl/lib/libnccl.so.2,
// or MATQ_NCCL_LIB). Rank 0 makes the communicator's unique id and the TCP star (HostProcessGroup) carries it to every
// rank; each rank then joins with ncclCommInitRank on its own GPU. Every call is enqueued on the legacy default stream,
// the stream TorchSharp's kernels run on, so a collective starts after the kernels that wrote its tensor and the next
// kernels start after it.
using System.Runtime.InteropServices;
using Matq.Runtime;
using Matq.Runtime.Cuda;
using static TorchSharp.torch;

namespace Matq.Distributed;

public sealed unsafe partial class NcclProcessGroup : ProcessGroup
{
    private readonly HostProcessGroup _host;
    private IntPtr _comm;

    public NcclProcessGroup(HostProcessGroup host, Device device) : base(host.Rank, host.WorldSize)
    {
        _host = host;
        Nccl.EnsureLoaded();
        var id = new byte[Nccl.UniqueIdBytes];
        if (host.IsRoot)
            fixed (byte* p = id) Nccl.Check(Nccl.ncclGetUniqueId(p), "ncclGetUniqueId");
        host.BroadcastInPlace(id);
        Nccl.UniqueId uid = default;
        id.CopyTo(new Span<byte>(uid.Bytes, Nccl.UniqueIdBytes));
        // ncclCommInitRank creates the communicator on the calling thread's current CUDA device. libtorch's ops restore the
        // device they switch to, so the rank's device is made current here: its primary context (the one libtorch uses)
        // through the driver API, which the runtime NCCL calls into honours.
        using (var touch = zeros(1, device: device)) _ = touch.sum().item<float>();   // libtorch initialized on the device first
        int index = Math.Max(0, (int)device.index);
        Driver.Check(Driver.cuInit(0), "cuInit");
        Driver.Check(Driver.cuDeviceGet(out int cuDevice, index), $"cuDeviceGet({index})");
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out var context, cuDevice), "cuDevicePrimaryCtxRetain");
        Driver.Check(Driver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
        Nccl.Check(Nccl.ncclCommInitRank(out _comm, WorldSize, uid, Rank), $"ncclCommInitRank (rank {Rank} of {WorldSize})");
    }

    public override void AllReduceSum(Tensor t)
    {
        Check(t);
        var p = CudaModule.Pointer<float>(t);
        Nccl.Check(Nccl.ncclAllReduce(p, p, (nuint)t.numel(), Nccl.Float32, Nccl.Sum, _comm, IntPtr.Zero), "ncclAllReduce");
    }

    public override void Broadcast(Tensor t, int root = 0)
    {
        Check(t);
        var p = CudaModule.Pointer<float>(t);
        Nccl.Check(Nccl.ncclBroadcast(p, p, (nuint)t.numel(), Nccl.Float32, root, _comm, IntPtr.Zero), "ncclBroadcast");
    }

    /// <summary>Host bytes (layer results) travel over the TCP rendezvous, not through NCCL.</summary>
    public override byte[] BroadcastBytes(byte[]? data, int root = 0) => _host.BroadcastBytes(data, root);

    private static void Check(Tensor t)
    {
        if (t.dtype != ScalarType.Float32 || t.device_type != DeviceType.CUDA || !t.is_contiguous())
            throw new ArgumentException($"NCCL collectives take contiguous fp32 CUDA tensors, not {t.dtype} on {t.device}");
    }

    public override void Dispose()
    {
        if (_comm != IntPtr.Zero) { Nccl.ncclCommDestroy(_comm); _comm = IntPtr.Zero; }
        _host.Dispose();
        base.Dispose();
    }
}

/// <summary>The few NCCL entry points matq uses (nccl.h: ncclUniqueId is 128 bytes, passed by value to ncclCommInitRank).</summary>
internal static unsafe partial class Nccl
{
    private const string Lib = "matq-nccl";
    public const int UniqueIdBytes = 128;
    public const int Float32 = 7;   // ncclFloat32
    public const int Sum = 0;       // ncclSum
    private static readonly object Gate = new();
    private static bool _resolverSet;

    [StructLayout(LayoutKind.Sequential)]
    public struct UniqueId { public fixed byte Bytes[UniqueIdBytes]; }

    [LibraryImport(Lib)] public static partial int ncclGetUniqueId(byte* uniqueId);
    [LibraryImport(Lib)] public static partial int ncclCommInitRank(out IntPtr comm, int nranks, UniqueId commId, int rank);
    [LibraryImport(Lib)] public static partial int ncclAllReduce(IntPtr sendbuff, IntPtr recvbuff, nuint count, int datatype, int op, IntPtr comm, IntPtr stream);
    [LibraryImport(Lib)] public static partial int ncclBroadcast(IntPtr sendbuff, IntPtr recvbuff, nuint count, int datatype, int root, IntPtr comm, IntPtr stream);
    [LibraryImport(Lib)] public static partial int ncclCommDestroy(IntPtr comm);
    [LibraryImport(Lib)] public static partial IntPtr ncclGetErrorString(int result);

    /// <summary>Where libnccl is looked for: MATQ_NCCL_LIB, then the nvidia-nccl package beside MATQ_TORCH_LIB's torch.</summary>
    public static IReadOnlyList<string> Candidates() =>
        Candidates(Environment.GetEnvironmentVariable("MATQ_NCCL_LIB"), Environment.GetEnvironmentVariable(TorchDevices.TorchLibVariable));

    public static IReadOnlyList<string> Candidates(string? ncclLib, string? torchLib)
    {
        var list = new List<string>();
        if (ncclLib is { Length: > 0 } given) list.Add(given);
        if (torchLib is { Length: > 0 })
        {
            var sitePackages = Path.GetFullPath(Path.Combine(torchLib, "..", ".."));
            list.Add(Path.Combine(sitePackages, "nvidia", "nccl", "lib", "libnccl.so.2"));
            list.Add(Path.Combine(torchLib, "libnccl.so.2"));
        }
        list.Add("libnccl.so.2");
        return list;
    }

    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_resolverSet) return;
            IntPtr handle = Load(Candidates());
            NativeLibrary.SetDllImportResolver(typeof(Nccl).Assembly, (name, _, _) => name == Lib ? handle : IntPtr.Zero);
            _resolverSet = true;
        }
    }

    /// <summary>The first of <paramref name="candidates"/> that loads; none is one line naming them and the fix.</summary>
    public static IntPtr Load(IReadOnlyList<string> candidates)
    {
        foreach (var c in candidates)
            if (NativeLibrary.TryLoad(c, out var handle)) return handle;
        throw new MatqException($"NCCL not found (tried {string.Join(", ", candidates)}): set MATQ_NCCL_LIB to libnccl.so.2, or MATQ_TORCH_LIB to a CUDA PyTorch install that has the nvidia-nccl package");
    }

    public static void Check(int result, string call)
    {
        if (result == 0) return;
        var text = Marshal.PtrToStringUTF8(ncclGetErrorString(result)) ?? "unknown";
        throw new MatqException($"{call} failed: NCCL error {result} ({text})");
    }
}
