// Tests Runtime/TorchRuntime: Check names each bad --device, --threads and --cudnn-benchmark in one line without touching
// torch; Configure on the CPU sets the threads it is given (after the device) and reports cuDNN as not applicable.
using Matq.Runtime;
using TorchSharp;

namespace Matq.Tests.Torch;

public class TorchRuntimeTests
{
    [Theory]
    [InlineData("tpu", null, null, "--device 'tpu' is not a device")]
    [InlineData("cpu", 0, null, "--threads 0 is out of range: at least 1")]
    [InlineData("auto", null, "fast", "--cudnn-benchmark 'fast' is invalid: use on or off")]
    [InlineData("cpu", null, "on", "--cudnn-benchmark applies to --device cuda only")]
    public void Check_names_the_option_and_the_fix(string device, int? threads, string? cudnn, string expected)
    {
        var e = Assert.Throws<MatqException>(() => TorchRuntime.Check(device, threads, cudnn));
        Assert.StartsWith(expected, e.Message);
        Assert.Throws<MatqException>(() => TorchRuntime.Configure(device, threads, cudnn));
    }

    [Fact]
    public void Configure_on_the_cpu_sets_the_threads_and_leaves_cudnn_off()
    {
        int before = torch.get_num_threads();
        var state = TorchRuntime.Configure("cpu", before, "off");
        Assert.Equal(torch.CPU, state.Device);
        Assert.Equal(before, state.Threads);
        Assert.Equal("n/a (cpu)", state.CudnnBenchmark);
        TorchRuntime.Check("cuda", 2, "on");   // valid text: whether CUDA exists is Configure's question
    }
}
