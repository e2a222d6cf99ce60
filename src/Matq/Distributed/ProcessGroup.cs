// Contract: the collectives data-parallel training and layer-parallel PTQ need, over the ranks of one job (one process per
// GPU, started by `--gpus N`: ranks and the rendezvous come through the environment, as torchrun passes them).
// AllReduceSum leaves on every rank the same element-wise sum of every rank's tensor (fp32); Broadcast copies the root's
// tensor into every rank's. Backends: one process (no-ops), NCCL on CUDA tensors (NcclProcessGroup), and a loopback TCP
// star for CPU tensors (HostProcessGroup: rank 0 sums in rank order, so every rank gets bit-identical results).
using static TorchSharp.torch;

namespace Matq.Distributed;

public abstract class ProcessGroup : IDisposable
{
    /// <summary>Environment of a rank (set by the launcher): rank, world size, and the rendezvous address and port.</summary>
    public const string RankVariable = "MATQ_RANK", WorldSizeVariable = "MATQ_WORLD_SIZE", AddressVariable = "MATQ_MASTER_ADDR", PortVariable = "MATQ_MASTER_PORT";

    protected ProcessGroup(int rank, int worldSize)
    {
        if (worldSize < 1 || rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of world size {worldSize}");
        Rank = rank;
        WorldSize = worldSize;
    }

    public int Rank { get; }
    public int WorldSize { get; }
    public bool IsRoot => Rank == 0;

    /// <summary>In place: every rank's <paramref name="t"/> becomes the element-wise sum over ranks (contiguous fp32).</summary>
    public abstract void AllReduceSum(Tensor t);

    /// <summary>In place: every rank's <paramref name="t"/> becomes the root's (contiguous fp32).</summary>
    public abstract void Broadcast(Tensor t, int root = 0);

    /// <summary>The root's bytes on every rank (any length; the others pass null).</summary>
    public abstract byte[] BroadcastBytes(byte[]? data, int root = 0);

    /// <summary>In place: the element-wise mean over ranks.</summary>
    public void AllReduceMean(Tensor t)
    {
        AllReduceSum(t);
        if (WorldSize > 1)
            using (no_grad()) t.div_(WorldSize);
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>The device of this rank: cuda:rank for a CUDA <paramref name="device"/> when the launcher started this
    /// process (one GPU per rank on one host), else <paramref name="device"/>.</summary>
    public static Device RankDevice(Device device) =>
        device.type == DeviceType.CUDA && int.TryParse(Environment.GetEnvironmentVariable(RankVariable), out int rank) && rank > 0
            ? new Device(DeviceType.CUDA, rank) : device;

    /// <summary>This process's group: one process when the launcher's variables are absent; else NCCL for a CUDA
    /// <paramref name="device"/>, the TCP star for the CPU. A variable that is set but wrong is one line.</summary>
    public static ProcessGroup FromEnvironment(Device device)
    {
        var rankText = Environment.GetEnvironmentVariable(RankVariable);
        var worldText = Environment.GetEnvironmentVariable(WorldSizeVariable);
        if (string.IsNullOrEmpty(rankText) && string.IsNullOrEmpty(worldText)) return new SingleProcessGroup();
        if (!int.TryParse(worldText, out int world) || world < 1)
            throw new MatqException($"{WorldSizeVariable}='{SafeText.Escape(worldText ?? "")}' is not a world size: start ranks with `--gpus N`, or unset {RankVariable} and {WorldSizeVariable}");
        if (!int.TryParse(rankText, out int rank) || rank < 0 || rank >= world)
            throw new MatqException($"{RankVariable}='{SafeText.Escape(rankText ?? "")}' is not a rank of {world}: start ranks with `--gpus N`, or unset {RankVariable} and {WorldSizeVariable}");
        if (world == 1) return new SingleProcessGroup();
        var address = Environment.GetEnvironmentVariable(AddressVariable) ?? "127.0.0.1";
        var portText = Environment.GetEnvironmentVariable(PortVariable);
        if (!int.TryParse(portText, out int port) || port is < 1 or > 65535)
            throw new MatqException($"{PortVariable}='{SafeText.Escape(portText ?? "")}' is not a TCP port: start ranks with `--gpus N`");
        var host = new HostProcessGroup(rank, world, address, port);
        if (device.type != DeviceType.CUDA) return host;
        return new NcclProcessGroup(host, device);
    }
}

/// <summary>One process: every collective is the identity.</summary>
public sealed class SingleProcessGroup() : ProcessGroup(0, 1)
{
    public override void AllReduceSum(Tensor t) { }
    public override void Broadcast(Tensor t, int root = 0) { }
    public override byte[] BroadcastBytes(byte[]? data, int root = 0) => data ?? throw new ArgumentNullException(nameof(data));
}
