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
    private static readonly Scalar Two = 2.ToScalar();

    /// <summary>x² elementwise: Tensor.square() (pow(x, 2)) with a Scalar that no finalizer can free.</summary>
    public static Tensor Squared(this Tensor x) => x.pow(Two);
}
