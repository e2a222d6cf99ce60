// Contract: one quantized weight matrix on the tensor side — uint8 codes [out, in], float32 scales and
// integer-valued zeros [out, nGroups] — with conversion to and from the kernel-side QuantParams.
using Matq.Runtime.Cuda;
using Matq.Kernels.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>Codes plus parameters of one matrix; owns its tensors (Dispose releases them).</summary>
public sealed class QuantizedTensor : IDisposable
{
    public Tensor Codes { get; }
    public Tensor Scales { get; }
    public Tensor Zeros { get; }
    public QuantSpec Spec { get; }

    /// <summary>Stored group size (whole row for per-tensor and per-channel).</summary>
    public int GroupSize { get; }

    public QuantizedTensor(Tensor codes, Tensor scales, Tensor zeros, QuantSpec spec, int groupSize)
    {
        Codes = codes;
        Scales = scales;
        Zeros = zeros;
        Spec = spec;
        GroupSize = groupSize;
    }

    public int Bits => Spec.Bits;

    /// <summary>ŵ = α·(q − z), float32 [out, in].</summary>
    public Tensor Dequantize() => TensorAffineQuantizer.Dequantize(Codes, Scales, Zeros, GroupSize);

    /// <summary>Copies the parameters to the kernel-side representation (CPU arrays).</summary>
    public QuantParams ToQuantParams()
    {
        int rows = checked((int)Codes.shape[0]), cols = checked((int)Codes.shape[1]);
        float[] scales = HostCopy.ToArray<float>(Scales.to(ScalarType.Float32));
        byte[] zeros = HostCopy.ToArray<byte>(Zeros.to(ScalarType.Byte));
        return new QuantParams(rows, cols, Spec.Bits, Spec.Scheme, Spec.Granularity, GroupSize, scales, zeros);
    }

    /// <summary>Tensors [Rows, GroupsPerRow] for kernel-side parameters: (float32 scales, float32 zeros).</summary>
    public static (Tensor Scales, Tensor Zeros) FromQuantParams(QuantParams p, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(p);
        var shape = new long[] { p.Rows, p.GroupsPerRow };
        Tensor scales = tensor(p.Scales, shape, device: device);
        Tensor zeros = tensor(Array.ConvertAll(p.Zeros, z => (float)z), shape, device: device);
        return (scales, zeros);
    }

    public void Dispose()
    {
        Codes.Dispose();
        Scales.Dispose();
        Zeros.Dispose();
    }
}
