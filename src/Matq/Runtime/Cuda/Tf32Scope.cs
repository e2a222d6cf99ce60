// Contract: lets cuBLAS matmuls use TF32 tensor cores for the lifetime of the scope and restores libtorch's previous
// setting when disposed (also on failure). Only the caller's training steps change precision: code outside the scope
// (calibration targets, propagation, exports) keeps whatever the process had, libtorch's default being fp32.
using TorchSharp;

namespace Matq.Runtime.Cuda;

/// <summary>TF32 matmuls until disposed; <see cref="For"/> gives null (nothing changed) off CUDA or when not wanted.</summary>
public sealed class Tf32Scope : IDisposable
{
    private readonly bool _previous;
    private bool _disposed;

    private Tf32Scope()
    {
        _previous = torch.backends.cuda.matmul.allow_tf32;
        torch.backends.cuda.matmul.allow_tf32 = true;
    }

    /// <summary>A scope on a CUDA <paramref name="device"/> when <paramref name="wanted"/>, else null.</summary>
    public static Tf32Scope? For(torch.Device device, bool wanted) =>
        wanted && device.type == DeviceType.CUDA ? new Tf32Scope() : null;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        torch.backends.cuda.matmul.allow_tf32 = _previous;
    }
}
