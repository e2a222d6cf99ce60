// Contract: tensor path of Matryoshka slicing; equals Matq.Kernels.Packing.NestedSlice exactly.
// Codes are uint8 [out, in] master codes of c bits; sliced codes are uint8 [out, in] in 0..2^r − 1 (0..2^r with
// extra precision); dequantization uses the master α and z [out|1, nGroups]: ŵ_r = α·(S·2^(c−r) − z).
using Matq.Runtime.Cuda;
using Matq.Kernels.Packing;
using Matq.Kernels.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>An extra-precision slice on tensors with the storage accounting of <see cref="ExtraPrecisionSlice"/> (escape
/// stream) and of <see cref="SparseOverflowList"/> (per-row position lists; <paramref name="SparseListBits"/> = their exact bits).</summary>
public sealed record TensorExtraSlice(Tensor Codes, Tensor OverflowMask, long OverflowCount, long EscapeBitCount, long Count, int SliceBits,
    long SparseListBits)
{
    /// <summary>r + E/N, the bits per weight of base stream + escape stream (see ExtraPrecisionSlice).</summary>
    public double EffectiveBits => ExtraPrecisionSlice.EffectiveBitsFor(SliceBits, EscapeBitCount, Count);

    /// <summary>The paper's metric: r + overflow/N (not a stored size).</summary>
    public double PaperBits => SparseOverflowList.PaperBitsFor(SliceBits, OverflowCount, Count);

    /// <summary>r + L/N: true bits per weight of base stream + sparse overflow lists.</summary>
    public double SparseBits => SparseOverflowList.StoredBitsFor(SliceBits, SparseListBits, Count);
}

/// <summary>Nested slicing of uint8 code tensors.</summary>
public static class TensorNestedSlice
{
    /// <summary>S(q, r) = clamp(⌊q/2^(c−r) + ½⌋, 0, 2^r − 1) elementwise; uint8 in, uint8 out, any shape.</summary>
    public static Tensor Slice(Tensor codes, int masterBits, int sliceBits)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        using var scope = NewDisposeScope();
        // an explicit Scalar held to the end of the scope: an implicit temporary can be finalized during the native call
        // ("Unknown scalar type" abort seen in a long bench matquant --seeds run)
        using var top = ((1 << sliceBits) - 1).ToScalar();
        Tensor s = SliceUnclamped(codes, masterBits, sliceBits).clamp_max(top);
        return s.to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>Extra precision: no upper clamp, so codes reach the overflow bucket 2^r; also the overflow mask
    /// (bool, same shape) and the escape-bit count of the documented storage scheme.</summary>
    public static TensorExtraSlice SliceExtra(Tensor codes, int masterBits, int sliceBits)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        using var scope = NewDisposeScope();
        Tensor s = SliceUnclamped(codes, masterBits, sliceBits);
        Tensor overflow = s.eq(1 << sliceBits);
        long escapes = sliceBits < masterBits ? s.ge((1 << sliceBits) - 1).sum().item<long>() : 0;
        long overflowCount = overflow.sum().item<long>();
        long listBits = sliceBits < masterBits ? SparseListBits(overflow) : 0;
        return new TensorExtraSlice(s.to(ScalarType.Byte).MoveToOuterDisposeScope(), overflow.MoveToOuterDisposeScope(),
            overflowCount, escapes, codes.numel(), sliceBits, listBits);
    }

    // Σ_rows SparseOverflowList.RowBits of a bool mask [out, in] (other shapes: one row).
    private static long SparseListBits(Tensor overflow)
    {
        long cols = overflow.dim() == 2 ? overflow.shape[1] : overflow.numel();
        long rows = cols == 0 ? 0 : overflow.numel() / cols;
        var mask = HostCopy.ToArray<byte>(overflow.reshape(rows, cols).to(ScalarType.Byte));
        long bits = 0;
        var positions = new List<int>();
        for (long r = 0; r < rows; r++)
        {
            positions.Clear();
            for (int i = 0; i < cols; i++) if (mask[r * cols + i] != 0) positions.Add(i);
            bits += SparseOverflowList.RowBits(checked((int)cols), System.Runtime.InteropServices.CollectionsMarshal.AsSpan(positions)).Bits;
        }
        return bits;
    }

    /// <summary>ŵ_r = α·(S·2^(c−r) − z), float32 [out, in], for sliced codes (plain or extra precision).</summary>
    public static Tensor Dequantize(Tensor sliced, Tensor scales, Tensor zeros, int groupSize, int masterBits, int sliceBits)
    {
        QuantSpec.ValidateSliceBits(masterBits, sliceBits);
        GroupLayout.CheckMatrix(sliced, nameof(sliced));
        using var scope = NewDisposeScope();
        Tensor shifted = sliced.to(ScalarType.Float32).mul(1 << (masterBits - sliceBits));   // exact: integers ≤ 256
        return TensorAffineQuantizer.Dequantize(shifted, scales, zeros, groupSize).MoveToOuterDisposeScope();
    }

    /// <summary>⌊(q + 2^(k−1)) / 2^k⌋ in int32 (k = c − r), 0..2^r; r = c returns the codes as int32.</summary>
    private static Tensor SliceUnclamped(Tensor codes, int masterBits, int sliceBits)
    {
        if (codes.dtype != ScalarType.Byte) throw new ArgumentException($"codes must be uint8, got {codes.dtype}");
        int k = masterBits - sliceBits;
        Tensor q = codes.to(ScalarType.Int32);
        if (k == 0) return q;
        // Explicit scalars kept alive across the native calls: TorchSharp 0.107 passes an implicit Scalar's raw handle, so
        // a GC finalizer on another thread can free it mid-call (seen as "alpha must not be a floating point number").
        using Scalar half = 1 << (k - 1), one = 1, step = 1 << k;
        var r = q.add(half, one).floor_divide(step);
        GC.KeepAlive(half); GC.KeepAlive(one); GC.KeepAlive(step);
        return r;
    }
}
