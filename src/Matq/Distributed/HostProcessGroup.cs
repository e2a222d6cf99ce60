// Contract: collectives over loopback (or LAN) TCP, for CPU ranks and for the rendezvous of the NCCL ranks. A star:
// rank 0 listens on MATQ_MASTER_ADDR:MATQ_MASTER_PORT, every other rank connects and says its rank. AllReduceSum: each
// rank sends its fp32 values to rank 0, which sums them in rank order ((x0 + x1) + x2 ...) and sends the sum back, so
// every rank holds the same bits. Broadcast: the root's bytes go to every rank (through rank 0). Frames: int64 length +
// payload. A peer that disappears is one line naming it.
using System.Net;
using System.Net.Sockets;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Matq.Distributed;

public sealed class HostProcessGroup : ProcessGroup
{
    private readonly Socket?[] _peers;      // rank 0: the socket of every other rank; others: [0] = rank 0
    private readonly TcpListener? _listener;

    /// <summary>Seconds a rank waits for the others to join (MATQ_RENDEZVOUS_SECONDS, default 300).</summary>
    public static int RendezvousSeconds => int.TryParse(Environment.GetEnvironmentVariable("MATQ_RENDEZVOUS_SECONDS"), out var s) && s > 0 ? s : 300;

    public HostProcessGroup(int rank, int worldSize, string address, int port) : base(rank, worldSize)
    {
        _peers = new Socket?[worldSize];
        var deadline = DateTime.UtcNow.AddSeconds(RendezvousSeconds);
        if (rank == 0)
        {
            _listener = new TcpListener(IPAddress.Parse(address), port);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            try { _listener.Start(worldSize); }
            catch (SocketException e) { throw new MatqException($"rank 0 cannot listen on {address}:{port} ({e.SocketErrorCode}): pick a free {PortVariable}"); }
            for (int joined = 1; joined < worldSize; joined++)
            {
                var accept = _listener.AcceptSocketAsync();
                if (!accept.Wait(Remaining(deadline)))
                    throw new MatqException($"rank 0: only {joined} of {worldSize} ranks joined within {RendezvousSeconds} s on {address}:{port}");
                var s = accept.Result;
                s.NoDelay = true;
                int r = BitConverter.ToInt32(ReceiveExactly(s, 4, "a joining rank"));
                if (r <= 0 || r >= worldSize || _peers[r] is not null) throw new MatqException($"rank 0: a peer announced rank {r}, which is not a free rank of {worldSize}");
                _peers[r] = s;
            }
        }
        else
        {
            while (true)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    s.Connect(IPAddress.Parse(address), port);
                    s.Send(BitConverter.GetBytes(rank));
                    _peers[0] = s;
                    break;
                }
                catch (SocketException)
                {
                    s.Dispose();
                    if (DateTime.UtcNow > deadline) throw new MatqException($"rank {rank}: rank 0 did not answer on {address}:{port} within {RendezvousSeconds} s");
                    Thread.Sleep(50);
                }
            }
        }
    }

    /// <summary>A loopback TCP port that was free a moment ago: the rendezvous port a launcher hands its ranks.</summary>
    public static int FreeLoopbackPort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private static int Remaining(DateTime deadline) => (int)Math.Max(0, (deadline - DateTime.UtcNow).TotalMilliseconds);

    public override void AllReduceSum(Tensor t)
    {
        if (WorldSize == 1) return;
        var values = Values(t);
        var bytes = MemoryMarshal.AsBytes(values.AsSpan());
        if (Rank == 0)
        {
            for (int r = 1; r < WorldSize; r++)
            {
                var other = MemoryMarshal.Cast<byte, float>(ReceiveFrame(_peers[r]!, r, bytes.Length));
                TensorPrimitives.Add(values, other, values);
            }
            for (int r = 1; r < WorldSize; r++) SendFrame(_peers[r]!, bytes);
        }
        else
        {
            SendFrame(_peers[0]!, bytes);
            ReceiveFrame(_peers[0]!, 0, bytes.Length).CopyTo(bytes);
        }
        Store(t, values);
    }

    public override void Broadcast(Tensor t, int root = 0)
    {
        if (WorldSize == 1) return;
        var values = Rank == root ? Values(t) : new float[Check(t).numel()];   // the others' values are overwritten
        var bytes = MemoryMarshal.AsBytes(values.AsSpan());
        BroadcastInPlace(bytes, root);
        if (Rank != root) Store(t, values);
    }

    public override byte[] BroadcastBytes(byte[]? data, int root = 0)
    {
        if (WorldSize == 1) return data ?? throw new ArgumentNullException(nameof(data));
        var length = BitConverter.GetBytes(Rank == root ? (data ?? throw new ArgumentNullException(nameof(data))).LongLength : 0L);
        BroadcastInPlace(length.AsSpan(), root);
        var payload = Rank == root ? data! : new byte[checked((int)BitConverter.ToInt64(length))];
        BroadcastInPlace(payload.AsSpan(), root);
        return payload;
    }

    /// <summary>In place: every rank's <paramref name="bytes"/> become the root's (the same length on every rank).</summary>
    public void BroadcastInPlace(Span<byte> bytes, int root = 0)
    {
        if (WorldSize == 1) return;
        if (Rank == 0)
        {
            if (root != 0) ReceiveFrame(_peers[root]!, root, bytes.Length).CopyTo(bytes);
            for (int r = 1; r < WorldSize; r++)
                if (r != root) SendFrame(_peers[r]!, bytes);
        }
        else if (Rank == root) SendFrame(_peers[0]!, bytes);
        else ReceiveFrame(_peers[0]!, 0, bytes.Length).CopyTo(bytes);
    }

    private static Tensor Check(Tensor t) =>
        t.dtype == ScalarType.Float32 ? t : throw new ArgumentException($"collectives take fp32 tensors, not {t.dtype}");

    private static float[] Values(Tensor t)
    {
        using var host = Check(t).detach().cpu().contiguous();
        return host.data<float>().ToArray();
    }

    private static void Store(Tensor t, float[] values)
    {
        using var host = tensor(values, t.shape, ScalarType.Float32);
        using (no_grad()) t.copy_(host);
    }

    private static void SendFrame(Socket s, ReadOnlySpan<byte> payload)
    {
        s.Send(BitConverter.GetBytes((long)payload.Length));
        while (payload.Length > 0) payload = payload[s.Send(payload)..];
    }

    private byte[] ReceiveFrame(Socket s, int from, int expected)
    {
        long length = BitConverter.ToInt64(ReceiveExactly(s, 8, $"rank {from}"));
        if (length != expected)
            throw new MatqException($"rank {Rank}: rank {from} sent {length} bytes where {expected} were expected: the ranks disagree on a tensor's size (were they started with the same arguments?)");
        return ReceiveExactly(s, expected, $"rank {from}");
    }

    private static byte[] ReceiveExactly(Socket s, int count, string who)
    {
        var buffer = new byte[count];
        int got = 0;
        while (got < count)
        {
            int n;
            try { n = s.Receive(buffer, got, count - got, SocketFlags.None); }
            catch (SocketException e) { throw new MatqException($"{who} left the job ({e.SocketErrorCode})"); }
            if (n == 0) throw new MatqException($"{who} left the job (connection closed)");
            got += n;
        }
        return buffer;
    }

    public override void Dispose()
    {
        foreach (var s in _peers) s?.Dispose();
        _listener?.Stop();
        base.Dispose();
    }
}
