// `matq device`: which compute device a verb would get, and a quick check that it computes (fp32 and bf16 matmul throughput).
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class DeviceVerb(IAnsiConsole console) : Verb<DeviceSettings>(console, "device",
    "Show the compute device matq would use and measure matmul throughput on it",
    "matq device",
    "MATQ_TORCH_LIB=/opt/torch/lib/python3.12/site-packages/torch/lib matq device --device cuda")
{
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<int> _size = new("--size") { Description = "Square matmul size for the throughput check", DefaultValueFactory = _ => 2048 };

    protected override IEnumerable<Option> Options => [_device, _size];

    protected override DeviceSettings Read(ParseResult r) => new DeviceSettings(r.GetValue(_device)!, r.GetValue(_size));

    protected override int Run(DeviceSettings s)
    {
        var device = TorchRuntime.Configure(s.Device).Device;
        int n = s.Size;
        var table = new Table().AddColumns("property", "value");
        table.AddRow("device", device.ToString());
        table.AddRow("torch threads", torch.get_num_threads().ToString());
        table.AddRow("CUDA devices", device.type == DeviceType.CUDA ? torch.cuda.device_count().ToString() : "0");
        table.AddRow(Markup.Escape($"{n}x{n} fp32 matmul"), $"{Measure(device, ScalarType.Float32, n) * 1000:F1} GFLOP/s");
        if (device.type == DeviceType.CUDA)
        {
            table.AddRow(Markup.Escape($"{n}x{n} bf16 matmul"), $"{Measure(device, ScalarType.BFloat16, n) * 1000:F1} GFLOP/s");
            table.AddRow("NCCL (one rank)", Markup.Escape(NcclCheck(device)));
        }
        Console.Write(table);
        return 0;
    }

    private static double Measure(Device device, ScalarType dtype, int n)
    {
        using var scope = NewDisposeScope();
        var a = randn(n, n, dtype: dtype, device: device);
        var b = randn(n, n, dtype: dtype, device: device);
        var c = matmul(a, b); // warm-up, and a correctness check against the fp64 CPU product on a corner
        var reference = matmul(a[..8].to(float64).cpu(), b[.., ..8].to(float64).cpu());
        double err = (c[..8, ..8].to(float64).cpu() - reference).abs().max().item<double>();
        double tol = dtype == ScalarType.BFloat16 ? 2.0 : 1e-2;
        if (err > tol * Math.Sqrt(n)) throw new InvalidOperationException($"matmul on {device} is wrong (max error {err})");
        int reps = device.type == DeviceType.CUDA ? 50 : 3;
        Sync(device);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < reps; i++) { using var s = NewDisposeScope(); matmul(a, b); }
        Sync(device);
        return 2.0 * n * n * (double)n * reps / sw.Elapsed.TotalSeconds / 1e12;
    }

    // --gpus N's collectives on this GPU alone: a one-rank communicator, an all-reduce and a broadcast of 1M values
    // (a one-rank sum is the identity), checked and timed; a missing NCCL is its one line, not a failure of the verb
    private static string NcclCheck(Device device)
    {
        try
        {
            using var host = new Matq.Distributed.HostProcessGroup(0, 1, "127.0.0.1", 0);
            using var nccl = new Matq.Distributed.NcclProcessGroup(host, device);
            using var scope = NewDisposeScope();
            var x = randn(1 << 20, device: device);
            var y = x.clone();
            nccl.AllReduceSum(y);
            nccl.Broadcast(y);
            torch.cuda.synchronize();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 20; i++) nccl.AllReduceSum(y);
            torch.cuda.synchronize();
            bool same = (y - x).abs().max().item<float>() == 0;
            return same ? $"all-reduce and broadcast ok ({sw.Elapsed.TotalMilliseconds / 20 * 1000:F0} µs per 4 MiB all-reduce)"
                : "all-reduce changed the values: NCCL is not working";
        }
        catch (Exception e) when (e is MatqException or Matq.Runtime.Cuda.CudaException or DllNotFoundException) { return e.Message; }
    }

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize();
    }
}

/// <summary>What `device` was asked: --device and --size; <see cref="Validate"/> checks both (one line per mistake) before torch loads.</summary>
public sealed record DeviceSettings(string Device, int Size) : IVerbSettings
{
    public void Validate()
    {
        TorchRuntime.Check(Device);
        if (Size < 16 || Size > 16384) throw new MatqException($"--size {Size} is out of range (16..16384)");
    }
}
