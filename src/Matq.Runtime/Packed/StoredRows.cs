// Contract: a float matrix [Rows, Cols] kept in the dtype the artifact stores it in (BF16 or F16; 2 bytes a value)
// instead of widened to fp32: the embedding table and an unquantized lm_head of a memory-mapped load. Rows are widened
// to fp32 only where they are used: one row per embedding lookup, a tile of rows at a time in the head's matrix-vector
// product. Widening bf16/f16 to fp32 is exact, so every value the kernels see is the one the fp32 table would hold, and
// each output is TensorPrimitives.Dot of the same row and x as the fp32 kernels compute: the same bits, since Dot's
// result does not depend on where the row lies in memory (System.Numerics.Tensors ≥ 9: dotnet/runtime#106166).
using System.Numerics.Tensors;
using Matq.Formats.Safetensors;

namespace Matq.Runtime.Packed;

public sealed class StoredRows
{
    /// <summary>Rows widened per task of the head product (a tile of 64 rows × 4096 columns is 1 MiB of fp32).</summary>
    public const int TileRows = 64;

    public SafetensorsDtype Dtype { get; }
    public int Rows { get; }
    public int Cols { get; }
    /// <summary>The stored bytes, row-major.</summary>
    public byte[] Data { get; }
    private readonly int _size;

    public StoredRows(SafetensorsDtype dtype, int rows, int cols, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (dtype is not (SafetensorsDtype.BF16 or SafetensorsDtype.F16 or SafetensorsDtype.F32))
            throw new MatqException($"a stored float table is F32, F16 or BF16, not {SafetensorsDtypes.ToName(dtype)}");
        _size = SafetensorsDtypes.SizeOf(dtype);
        if (data.LongLength != (long)rows * cols * _size)
            throw new MatqException($"{data.LongLength} bytes of {SafetensorsDtypes.ToName(dtype)} do not make [{rows}, {cols}]");
        Dtype = dtype; Rows = rows; Cols = cols; Data = data;
    }

    public long Bytes => Data.LongLength;

    /// <summary>Rows <paramref name="first"/>..first+n−1 widened to fp32 into <paramref name="dst"/> [n·Cols].</summary>
    public void RowsTo(int first, int n, Span<float> dst)
    {
        if ((uint)first > (uint)Rows || n < 0 || first + n > Rows) throw new ArgumentOutOfRangeException(nameof(first), $"rows {first}..{first + n - 1} outside 0..{Rows - 1}");
        long row = (long)Cols * _size;
        SafetensorsDtypes.ToFloat32(Dtype, Data.AsSpan().Slice((int)(first * row), (int)(n * row)), dst[..(n * Cols)]);
    }

    /// <summary>
    /// y [t, Rows] = x [t, Cols]·Wᵀ, each output the fp32 dot product of the widened row and x (the dense fp32 kernels'
    /// arithmetic, row for row); tiles of <see cref="TileRows"/> rows are widened and consumed in parallel.
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, int t, Span<float> y, int threads)
    {
        int rows = Rows, cols = Cols;
        if (x.Length != (long)t * cols || y.Length != (long)t * rows) throw new ArgumentException("x must be [t, cols] and y [t, rows]");
        // pooled buffers: a decode step or prefill chunk leaves no garbage behind (host peak stays the weights)
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var xa = pool.Rent(t * cols);
        var ya = pool.Rent(t * rows);
        try
        {
            x.CopyTo(xa);
            int tiles = (rows + TileRows - 1) / TileRows;
            Parallel.For(0, tiles, new ParallelOptions { MaxDegreeOfParallelism = threads }, () => pool.Rent(TileRows * cols), (tile, _, w) =>
            {
                int o0 = tile * TileRows, n = Math.Min(TileRows, rows - o0);
                RowsTo(o0, n, w);
                for (int i = 0; i < n; i++)
                {
                    var wr = w.AsSpan(i * cols, cols);
                    for (int r = 0; r < t; r++) ya[(long)r * rows + o0 + i] = TensorPrimitives.Dot(wr, xa.AsSpan(r * cols, cols));
                }
                return w;
            }, w => pool.Return(w));
            ya.AsSpan(0, t * rows).CopyTo(y);
        }
        finally
        {
            pool.Return(xa);
            pool.Return(ya);
        }
    }
}
