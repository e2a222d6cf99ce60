// Contract: tensor operations that TorchSharp 0.107 would run with an implicit Scalar temporary, run without one.
// Its Scalar registers with no dispose scope and passes its raw handle to the native call, so once the handle is read
// the Scalar is garbage and a GC can let the finalizer thread free it while libtorch still reads it (CI saw
// "Unknown scalar type" from Tensor.Squared(), which is pow(2)). Hot paths square through a multiply and hold their
// constants as Scalar fields (see RmsNorm, LlamaAttention).
using Matq.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Runtime;

public static class HeldScalarOps
{
    /// <summary>x² elementwise as x·x: the same values as pow(x, 2) (ATen squares by a multiply), no Scalar involved.</summary>
    public static Tensor Squared(this Tensor x) => x.mul(x);
}
