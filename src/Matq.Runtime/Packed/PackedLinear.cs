// Contract: one linear layer y = Ŵx (+ bias) of the packed runtime, no TorchSharp: x [T, In] → y [T, Out] row-major.
// The weight is a PackedMatrix (r-bit codes, per-group scales), a dense fp32 matrix [Out, In], or (an lm_head of a
// memory-mapped load) a bf16/f16 matrix as stored, widened a tile at a time (StoredRows); T = 1 runs the GEMV
// kernels (decode; with int8 activations the integer GEMV), T > 1 the GEMM kernels (prefill, weights read once per call;
// with int8 activations the integer GEMM, each row quantized as the GEMV quantizes one, so its rows equal the GEMV's).
using System.Numerics.Tensors;
using Matq.Kernels.Packed;
using Matq.Formats.Safetensors;
using Matq.Kernels.Simd;

namespace Matq.Runtime.Packed;

public sealed class PackedLinear
{
    public string Name { get; }
    public int Out { get; }
    public int In { get; }
    /// <summary>The packed weight, or null when <see cref="Dense"/> holds it.</summary>
    public PackedMatrix? Packed { get; }
    /// <summary>fp32 [Out, In], or null when packed or stored.</summary>
    public float[]? Dense { get; }
    /// <summary>The weight in its stored 16-bit dtype (an unquantized head of a memory-mapped load), or null.</summary>
    public StoredRows? Stored { get; }
    public float[]? Bias { get; }

    public PackedLinear(string name, PackedMatrix packed, float[]? bias = null) : this(name, packed.Rows, packed.Cols, bias)
    {
        Packed = packed;
    }

    public PackedLinear(string name, float[] dense, int outFeatures, int inFeatures, float[]? bias = null) : this(name, outFeatures, inFeatures, bias)
    {
        if (dense.LongLength != (long)outFeatures * inFeatures)
            throw new MatqException($"'{name}': {dense.LongLength} weights do not make [{outFeatures}, {inFeatures}]");
        Dense = dense;
    }

    public PackedLinear(string name, StoredRows stored, float[]? bias = null) : this(name, stored.Rows, stored.Cols, bias)
    {
        Stored = stored;
    }

    private PackedLinear(string name, int outFeatures, int inFeatures, float[]? bias)
    {
        Name = name; Out = outFeatures; In = inFeatures;
        if (bias is not null && bias.Length != outFeatures)
            throw new MatqException($"'{name}': bias holds {bias.Length} values, the layer has {outFeatures} outputs");
        Bias = bias;
    }

    /// <summary>Bits per weight as served: the slice width r, 16 for a stored bf16/f16 weight, or 32 for fp32.</summary>
    public int Bits => Packed?.SliceBits ?? (Stored is { } s ? 8 * SafetensorsDtypes.SizeOf(s.Dtype) : 32);

    /// <summary>Bytes held for the weight: packed codes + fp16 group scales (and fp16 group zeros when they differ), the stored bytes, or 4 per fp32 weight (bias included).</summary>
    public long WeightBytes => (Packed?.WeightBytes ?? Stored?.Bytes ?? 4L * Dense!.LongLength) + 4L * (Bias?.Length ?? 0);

    /// <summary>
    /// y [t, Out] = x [t, In]·Ŵᵀ + bias. With <paramref name="int8"/> (a packed weight) the activations are quantized per
    /// row to int8 into <paramref name="int8"/>'s buffers and the integer GEMV (per row, t &lt; the GEMM's token block) or
    /// the integer GEMM runs.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, int t, Span<float> y, int threads, Int8Buffer? int8 = null)
    {
        var ys = y[..(t * Out)];
        var xs = x[..(t * In)];
        if (Packed is not null)
        {
            if (t < GemmInt8Simd.TokenBlock && int8 is not null)
            {
                // fewer rows than the GEMM's token block (a batched decode step of 2–3 sequences): the integer GEMV per
                // row — the same bits (the GEMM equals it row by row) and faster, as the GEMM decodes every tile of codes
                // first (measured on the 1.18B shape: 2 rows through the GEMM 32 tok/s, through the GEMV 43)
                for (int i = 0; i < t; i++)
                {
                    var a = int8.For(this, xs.Slice(i * In, In));
                    GemvInt8Simd.Gemv(Packed, a, ys.Slice(i * Out, Out), Int8KernelPath.Auto, threads);
                }
            }
            else if (int8 is not null) GemmInt8Simd.Gemm(Packed, int8.Rows(this, xs, t), ys, Int8KernelPath.Auto, threads);
            else if (t == 1) GemvPackedSimd.Gemv(Packed, xs, ys, false, threads);
            else GemmPackedSimd.Gemm(Packed, xs, t, ys, false, threads);
        }
        else if (Stored is not null) Stored.Multiply(xs, t, ys, threads);
        else if (t == 1) GemvF32Simd.Gemv(Dense!, Out, In, xs, ys, threads);
        else GemmF32Simd.Gemm(Dense!, Out, In, xs, t, ys, threads);
        if (Bias is not null)
            for (int r = 0; r < t; r++) TensorPrimitives.Add(ys.Slice(r * Out, Out), Bias, ys.Slice(r * Out, Out));
    }
}

/// <summary>Reusable int8 activation buffers, one per linear, owned by one session (not shared across threads).</summary>
public sealed class Int8Buffer
{
    private readonly Dictionary<PackedLinear, Int8Activations> _byLinear = new();
    private readonly Dictionary<PackedLinear, Int8ActivationRows> _rowsByLinear = new();

    /// <summary>x quantized for <paramref name="linear"/>'s packed layout, in that linear's reused buffers.</summary>
    public Int8Activations For(PackedLinear linear, ReadOnlySpan<float> x)
    {
        _byLinear.TryGetValue(linear, out var reuse);
        var a = Int8Activations.Prepare(linear.Packed!, x, reuse);
        _byLinear[linear] = a;
        return a;
    }

    /// <summary>x [t, In] quantized row by row for <paramref name="linear"/>'s packed layout (the integer GEMM's input).</summary>
    public Int8ActivationRows Rows(PackedLinear linear, ReadOnlySpan<float> x, int t)
    {
        _rowsByLinear.TryGetValue(linear, out var reuse);
        var a = Int8ActivationRows.Prepare(linear.Packed!, x, t, reuse);
        _rowsByLinear[linear] = a;
        return a;
    }
}
