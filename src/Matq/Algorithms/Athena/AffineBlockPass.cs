// Contract: GptqColumnPass's result for the affine rule with one call per block of B columns instead of ~20 tensor
// operations per column (on a GPU those are launch-bound: an 8B decoder block has 38,912 columns). Inside a block the
// rows are independent, and column j's fed-back value is
//   x_j = W[:, j] − Σ_{k<j} e_k · U[k, j]           (the eager pass's rank-1 updates, in the same order k = 0..j−1)
// so each row runs its B columns alone: x_j, q_j = clamp(round(x_j/α) + z, 0, qmax), e_j = (x_j − α(q_j − z)) / U_jj.
// A group's grid is fitted before the block's kernel: under the block-start rule (upstream GPTQ) it reads the columns as
// the block started, which the kernel has not touched yet; a fixed grid needs nothing. The kernel works on the block
// transposed ([B, rows], one row per lane or thread, coalesced): Matq.Kernels' GptqBlockKernel on the CPU, and its CUDA
// source compiled by NVRTC on a GPU; both do the same IEEE operations in the same order (no fused multiply-add), so
// they produce the same bits as each other. Then, as in the eager pass: W[:, i2:] −= E · U[i1:i2, i2:].
using Matq.Kernels.Gptq;
using Matq.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Algorithms.Athena;

public static class AffineBlockPass
{
    private static readonly CheckedCudaKernel Kernel = new(GptqBlockKernel.CudaSource, GptqBlockKernel.CudaName, SelfCheck, "GPTQ");

    /// <summary>The kernel's module on CUDA device <paramref name="device"/>, compiled and checked once per process
    /// against <see cref="RunCpu"/> on a test block (the same bits are expected); null with the reason otherwise.</summary>
    public static (CudaModule? Module, string? Problem) Cuda(int device) => Kernel.On(device);

    /// <summary>One line on how the pass runs on <paramref name="device"/> (for benches and logs).</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "column pass: block kernel on the CPU (Vector256 lanes over rows)";
        var (module, problem) = Cuda(Math.Max(0, (int)device.index));
        return module is null ? $"column pass: eager TorchSharp ops per column (CUDA kernel unavailable: {problem})"
            : "column pass: NVRTC-compiled CUDA block kernel (checked bit-identical to the CPU kernel on a test block)";
    }

    /// <summary>Runs the kernel and the CPU kernel on the same random block; null when every output bit agrees.</summary>
    private static string? SelfCheck(CudaModule module, int device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        const int rows = 45, count = 24;
        var gen = new Generator(1234);
        Tensor wT = randn(count, rows, generator: gen) * 0.02f;
        Tensor aT = rand(count, rows, generator: gen) * 0.005f + 0.001f;
        Tensor zT = randint(0, 16, new long[] { count, rows }, generator: gen).to(ScalarType.Float32);
        Tensor u = (triu(randn(count, count, generator: gen) * 0.1f, 1) + diag(rand(count, generator: gen) + 0.5f)).contiguous();
        Tensor[] cpu = [wT.clone(), empty(count, rows), empty(count, rows)];
        RunCpu(cpu[0], u, aT, zT, cpu[1], cpu[2], rows, count, 15f);
        var cudaDevice = new Device(DeviceType.CUDA, device);
        Tensor[] gpu = [wT.to(cudaDevice), empty(count, rows, device: cudaDevice), empty(count, rows, device: cudaDevice)];
        Tensor uG = u.to(cudaDevice), aG = aT.to(cudaDevice), zG = zT.to(cudaDevice);
        RunCuda(module, gpu[0], uG, aG, zG, gpu[1], gpu[2], rows, count, 15f);
        long differing = 0;
        for (int i = 0; i < 3; i++) differing += cpu[i].ne(gpu[i].cpu()).sum().item<long>();
        return differing == 0 ? null : $"the CUDA kernel's results differ from the CPU kernel's in {differing} of {3 * rows * count} values on a test block";
    }

    /// <summary>The pass of <see cref="GptqColumnPass.Run"/> for a supported quantizer; false (nothing done) when the
    /// weights are on CUDA and the kernel is unavailable.</summary>
    internal static bool TryRun(Tensor w, Tensor u, AffineColumnQuantizer quantizer, int blockSize, out Tensor codes)
    {
        using var noGrad = no_grad();
        if (!Kernel.TryResolve(w.device, out CudaModule? module))
        {
            codes = null!;
            return false;
        }
        long rows = w.shape[0];
        Tensor groupOf = tensor(quantizer.GroupOf.Select(k => (long)k).ToArray(), dtype: ScalarType.Int64, device: w.device);
        float qmax = quantizer.QMax;
        codes = GptqColumnPass.RunBlocks(w, u, blockSize, (i1, count, wT, uBlock, qT, eT) =>
        {
            // grids of the groups that start here, from the block as it starts (the kernel has not run yet)
            Tensor w1 = w.narrow(1, i1, count);
            for (int j = 0; j < count; j++)
                quantizer.BeginColumn(i1 + j, new PassColumns(w, u, w1, w1, i1, j));
            Tensor gidx = groupOf.narrow(0, i1, count);
            Tensor aT = quantizer.Scales.index_select(1, gidx).t().contiguous();                     // [B, rows] α of each column
            Tensor zT = quantizer.Zeros.index_select(1, gidx).t().contiguous();                      // [B, rows] z
            if (module is null) RunCpu(wT, uBlock, aT, zT, qT, eT, (int)rows, count, qmax);
            else RunCuda(module, wT, uBlock, aT, zT, qT, eT, (int)rows, count, qmax);
        });
        return true;
    }

    private const int Threads = 128;

    /// <summary>The kernel on CUDA over contiguous fp32 CUDA tensors, one thread per row, on TorchSharp's stream.</summary>
    private static void RunCuda(CudaModule module, Tensor wT, Tensor u, Tensor aT, Tensor zT, Tensor qT, Tensor eT, int rows, int count, float qmax) =>
        module.Launch(Kernel.Name, (rows + Threads - 1) / Threads, Threads, CudaModule.Pointer<float>(wT), CudaModule.Pointer<float>(u),
            CudaModule.Pointer<float>(aT), CudaModule.Pointer<float>(zT), CudaModule.Pointer<float>(qT), CudaModule.Pointer<float>(eT), rows, count, qmax);

    /// <summary>The kernel on the CPU (GptqBlockKernel.Simd) over contiguous fp32 CPU tensors.</summary>
    internal static unsafe void RunCpu(Tensor wT, Tensor u, Tensor aT, Tensor zT, Tensor qT, Tensor eT, int rows, int count, float qmax)
    {
        int cells = checked(rows * count);
        GptqBlockKernel.Simd(Span(wT, cells), Span(u, count * count), Span(aT, cells), Span(zT, cells), Span(qT, cells), Span(eT, cells),
            rows, count, qmax, Math.Max(1, torch.get_num_threads()));

        static Span<float> Span(Tensor t, int n) => new((void*)CudaModule.Pointer<float>(t), n);
    }
}
