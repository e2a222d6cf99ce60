// Contract: quantizes the token embedding [vocab, hidden] (or any float table) from its stored bytes (F32/F16/BF16) into
// master codes exactly like a linear weight: U8 codes at the config's master bits, groups of the config's group size along
// hidden (per row), the scalar reference min-max grid of AffineQuantizer (asymmetric, or symmetric when the run is), no
// perm, no Hessian. Any c-bit min-max grid slices to r bits as the linears' codes do, so MatQuant artifacts serve the
// embedding at every r like their linears. Rows are read (from the stored bytes, or straight from the checkpoint file) and
// widened to fp32 a slice at a time: besides the codes (1 byte a weight) nothing of the table's size is held.
using Matq.Formats.Artifact;
using Matq.Kernels.Quantization;

namespace Matq.Quantization.Pipeline;

/// <summary>Reads bytes [offset, offset + destination.Length) of a stored tensor (thread-safe: called from parallel workers).</summary>
public delegate void StoredBytesReader(long offset, Span<byte> destination);

public static class EmbeddingQuantizer
{
    /// <summary>Rows widened per task (1024 × 4096 fp32 = 16 MiB).</summary>
    public const int SliceRows = 1024;

    /// <summary>The stored table <paramref name="data"/> ([rows, cols] in <paramref name="dtype"/>) as a quantized tensor named
    /// <paramref name="name"/> at <paramref name="config"/>'s master bits, group size and scheme, with its weight MSE report.</summary>
    public static (MatqQuantizedTensor Tensor, LayerReport Report) Quantize(string name, SafetensorsDtype dtype, byte[] data, int rows, int cols,
        QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.LongLength != (long)rows * cols * SafetensorsDtypes.SizeOf(dtype))
            throw new MatqException($"cannot quantize {SafeText.Quote(name)}: {data.LongLength} bytes do not make {SafetensorsDtypes.ToName(dtype)}[{rows}, {cols}]");
        return Quantize(name, dtype, (offset, dst) => data.AsSpan().Slice(checked((int)offset), dst.Length).CopyTo(dst), rows, cols, config);
    }

    /// <summary>The same from a reader of the stored bytes (e.g. positioned reads from the checkpoint), a slice of rows per worker.</summary>
    public static (MatqQuantizedTensor Tensor, LayerReport Report) Quantize(string name, SafetensorsDtype dtype, StoredBytesReader read, int rows, int cols,
        QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(read);
        ArgumentNullException.ThrowIfNull(config);
        if (dtype is not (SafetensorsDtype.F32 or SafetensorsDtype.F16 or SafetensorsDtype.BF16))
            throw new MatqException($"cannot quantize {SafeText.Quote(name)}: it is stored as {SafetensorsDtypes.ToName(dtype)}, not F32, F16 or BF16");
        int size = SafetensorsDtypes.SizeOf(dtype);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var spec = config.Spec;
        int g = spec.EffectiveGroupSize(cols), groups = QuantParams.GroupCount(cols, g);
        var codes = new byte[(long)rows * cols];
        var scales = new float[(long)rows * groups];
        var zeros = new float[(long)rows * groups];
        int slices = (rows + SliceRows - 1) / SliceRows;
        var sq = new double[slices];
        // one widened slice per worker, reused: fresh 8 MiB slices would pile up on the large-object heap until a gen-2 collection
        int sliceValues = Math.Min(SliceRows, rows) * cols;
        Parallel.For(0, slices, () => (new float[sliceValues], new byte[sliceValues * size]), (s, _, buffer) =>
        {
            int r0 = s * SliceRows, n = Math.Min(SliceRows, rows - r0);
            var w = buffer.Item1.AsSpan(0, n * cols);
            var raw = buffer.Item2.AsSpan(0, n * cols * size);
            read((long)r0 * cols * size, raw);
            SafetensorsDtypes.ToFloat32(dtype, raw, w);
            MatqFloatTensorCheck(w, name, (long)r0 * cols);
            var p = AffineQuantizer.ComputeParams(w, n, cols, spec);
            var c = codes.AsSpan().Slice(checked((int)((long)r0 * cols)), n * cols);
            AffineQuantizer.Quantize(w, p, c);
            p.Scales.CopyTo(scales, (long)r0 * groups);
            for (int i = 0; i < p.Zeros.Length; i++) zeros[(long)r0 * groups + i] = p.Zeros[i];
            double e = 0;
            for (int r = 0; r < n; r++)
                for (int k = 0; k < cols; k++)
                {
                    int j = r * groups + k / g;
                    double d = w[r * cols + k] - AffineQuantizer.DequantizeValue(c[r * cols + k], p.Scales[j], p.Zeros[j]);
                    e += d * d;
                }
            sq[s] = e;
            return buffer;
        }, _ => { });
        var tensor = new MatqQuantizedTensor(name, rows, cols, config.StoredGroupSize(cols), codes, scales, zeros);
        var module = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^7] : name;
        var report = new LayerReport(module, rows, cols, config.Bits, sq.Sum() / ((double)rows * cols), null, null, sw.Elapsed.TotalSeconds);
        return (tensor, report);
    }

    private static void MatqFloatTensorCheck(ReadOnlySpan<float> w, string name, long offset)
    {
        for (int i = 0; i < w.Length; i++)
        {
            if (!float.IsFinite(w[i]))
                throw new MatqException($"cannot quantize {SafeText.Quote(name)}: it holds {w[i]} at flat index {offset + i}; NaN and Inf are not allowed (the model is corrupt)");
        }
    }
}
