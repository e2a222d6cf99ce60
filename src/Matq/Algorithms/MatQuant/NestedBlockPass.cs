// Contract: MatQuant-Athena's nested error-feedback pass (NestedColumnQuantizer's rule on its fixed grids) with one
// kernel call per block of B columns instead of ~55 tensor operations per column, which on a GPU are launch-bound (a
// 1B-shape decoder block has 20,480 columns, passed twice: Athena's grid and the nested grid). The rows of a block are
// independent (GptqColumnPass.RunBlocks), and each row's rule is Matq.Kernels' GptqNestedBlockKernel: the eager pass's
// operations in its order, so on the CPU the codes and the fed-back weights are the eager pass's bit for bit (test);
// on CUDA its NVRTC source is used once it reproduced the CPU kernel's bits on a test block.
using Matq.Algorithms.Athena;
using Matq.Kernels.Gptq;
using Matq.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.MatQuant;

internal static class NestedBlockPass
{
    private static readonly CheckedCudaKernel Kernel = new(GptqNestedBlockKernel.CudaSource, GptqNestedBlockKernel.CudaName, SelfCheck, "MatQuant-Athena");

    private const int Threads = 128;

    /// <summary>The pass of <see cref="GptqColumnPass.Run"/> for <paramref name="rule"/>; false (nothing done) where the
    /// CUDA kernel is unavailable.</summary>
    public static bool TryRun(Tensor w, Tensor u, NestedColumnQuantizer rule, int blockSize, out Tensor codes)
    {
        using var noGrad = no_grad();
        if (!Kernel.TryResolve(w.device, out CudaModule? module))
        {
            codes = null!;
            return false;
        }
        long rows = w.shape[0];
        int n = checked((int)w.shape[1]);
        Tensor groupOf = arange(n, dtype: ScalarType.Int64, device: w.device).div(rule.GroupSize, rounding_mode: RoundingMode.floor);
        NestedWidth[] widths = rule.Widths;
        using Tensor widthTable = module is null ? empty(0) : WidthTable(widths, w.device);
        codes = GptqColumnPass.RunBlocks(w, u, blockSize, (i1, count, wT, uBlock, qT, eT) =>
        {
            Tensor gidx = groupOf.narrow(0, i1, count);
            Tensor aT = rule.Scales.index_select(1, gidx).t().contiguous();                          // [B, rows] α of each column
            Tensor zT = rule.Zeros.index_select(1, gidx).t().contiguous();                           // [B, rows] z
            if (module is null) RunCpu(wT, uBlock, aT, zT, qT, eT, widths, (int)rows, count, rule.Reach, rule.QMax, rule.LambdaSum);
            else RunCuda(module, wT, uBlock, aT, zT, qT, eT, widthTable, widths.Length, (int)rows, count, rule.Reach, rule.QMax, rule.LambdaSum);
        });
        return true;
    }

    // [4·nWidths] fp32 (half, step, top, λ) per width, on the device
    private static Tensor WidthTable(NestedWidth[] widths, Device device) =>
        tensor(widths.SelectMany(x => new[] { x.Half, x.Step, x.Top, x.Lambda }).ToArray(), dtype: ScalarType.Float32, device: device);

    private static void RunCuda(CudaModule module, Tensor wT, Tensor u, Tensor aT, Tensor zT, Tensor qT, Tensor eT, Tensor widthTable, int nWidths,
        int rows, int count, int reach, float qmax, float lambdaSum) =>
        module.Launch(Kernel.Name, (rows + Threads - 1) / Threads, Threads, CudaModule.Pointer<float>(wT), CudaModule.Pointer<float>(u),
            CudaModule.Pointer<float>(aT), CudaModule.Pointer<float>(zT), CudaModule.Pointer<float>(qT), CudaModule.Pointer<float>(eT),
            CudaModule.Pointer<float>(widthTable), rows, count, nWidths, reach, qmax, lambdaSum);

    private static unsafe void RunCpu(Tensor wT, Tensor u, Tensor aT, Tensor zT, Tensor qT, Tensor eT, NestedWidth[] widths, int rows, int count,
        int reach, float qmax, float lambdaSum)
    {
        int cells = checked(rows * count);
        GptqNestedBlockKernel.Simd(Span(wT, cells), Span(u, count * count), Span(aT, cells), Span(zT, cells), Span(qT, cells), Span(eT, cells),
            widths, rows, count, reach, qmax, lambdaSum, Math.Max(1, torch.get_num_threads()));

        static Span<float> Span(Tensor t, int n) => new((void*)CudaModule.Pointer<float>(t), n);
    }

    // the CUDA kernel and the CPU kernel on one random block with widths {8, 4, 2} of 8-bit codes: null when every bit agrees
    private static string? SelfCheck(CudaModule module, int device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        const int rows = 45, count = 24, reach = 64;
        NestedWidth[] widths = [NestedWidth.Of(8, 8, 1, false), NestedWidth.Of(8, 4, 1, false), NestedWidth.Of(8, 2, 2, false)];
        var gen = new Generator(4321);
        Tensor wT = randn(count, rows, generator: gen) * 0.02f;
        Tensor aT = rand(count, rows, generator: gen) * 0.0005f + 0.0001f;
        Tensor zT = randint(0, 256, new long[] { count, rows }, generator: gen).to(ScalarType.Float32);
        Tensor u = (triu(randn(count, count, generator: gen) * 0.1f, 1) + diag(rand(count, generator: gen) + 0.5f)).contiguous();
        Tensor[] cpu = [wT.clone(), empty(count, rows), empty(count, rows)];
        RunCpu(cpu[0], u, aT, zT, cpu[1], cpu[2], widths, rows, count, reach, 255f, 4f);
        var cudaDevice = new Device(DeviceType.CUDA, device);
        Tensor[] gpu = [wT.to(cudaDevice), empty(count, rows, device: cudaDevice), empty(count, rows, device: cudaDevice)];
        RunCuda(module, gpu[0], u.to(cudaDevice), aT.to(cudaDevice), zT.to(cudaDevice), gpu[1], gpu[2], WidthTable(widths, cudaDevice),
            widths.Length, rows, count, reach, 255f, 4f);
        long differing = 0;
        for (int i = 0; i < 3; i++) differing += cpu[i].ne(gpu[i].cpu()).sum().item<long>();
        return differing == 0 ? null : $"the CUDA kernel's results differ from the CPU kernel's in {differing} of {3 * rows * count} values on a test block";
    }
}
