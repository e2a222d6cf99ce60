// The width traits table: it covers exactly the widths the reference codecs implement, its rows agree with the
// layout's geometry, validation and the container fallback read it, and every path a row lists agrees with the scalar
// reference on random matrices of full-range codes (integer paths bit for bit; fp32 paths within the float tolerance
// of GemvPackedSimdTests: |Δy| ≤ 1e-5·Σ_k |ŵ_k·x_k| + 1e-6).
using System.Reflection;
using Matq.Kernels.Packed;
using Matq.Kernels.Reference;
using Matq.Kernels.Simd;

namespace Matq.Kernels.Tests.Packed;

public sealed class PackedWidthsTests
{
    public static IEnumerable<object[]> Rows() => PackedWidths.All.Select(r => new object[] { r.Bits });

    [Fact]
    public void TheTableCoversExactlyTheWidthsTheReferenceCodecsImplement()
    {
        var codecs = typeof(PackedTile16).Assembly.GetTypes()
            .Where(t => t.IsValueType && typeof(IPackedTileCodec).IsAssignableFrom(t))
            .Select(t => (int)t.GetProperty(nameof(IPackedTileCodec.Bits), BindingFlags.Public | BindingFlags.Static)!.GetValue(null)!)
            .Order().ToArray();
        Assert.NotEmpty(codecs);
        Assert.Equal(codecs, PackedWidths.Bits);
        Assert.Equal(PackedWidths.All.Select(r => r.Bits), PackedWidths.Bits);
        Assert.Equal(PackedWidths.Bits.Order().Distinct(), PackedWidths.Bits);
        Assert.Equal(PackedWidths.Bits, PackedTile16.SupportedBits);
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public void EveryRowAgreesWithTheTileGeometryAndHasThePortablePaths(int bits)
    {
        var row = PackedWidths.Get(bits);
        Assert.Equal(bits, row.Bits);
        Assert.Equal(PackedTile16.Rows * PackedTile16.Codes, row.CodesPerChunk);
        Assert.Equal(0, row.ChunkBytes % 64);                                   // whole 64-byte sub-steps
        Assert.True(8 * row.ChunkBytes >= row.CodesPerChunk * bits, $"int{bits}: {row.ChunkBytes} B cannot hold {row.CodesPerChunk} codes");
        Assert.Equal(row.ChunkBytes, PackedTile16.ChunkBytes(bits));
        Assert.False(string.IsNullOrWhiteSpace(row.Container));
        Assert.Contains(Int8KernelPath.Vector128, row.Int8Paths);               // the fallback every CPU runs
        Assert.DoesNotContain(Int8KernelPath.Auto, row.Int8Paths);
        Assert.Equal(row.Int8Paths.Distinct(), row.Int8Paths);
        Assert.All(row.Int8Paths, p => Assert.True(row.HasInt8(p)));
        Assert.Contains(GemvInt8Simd.BestPath(bits), row.Int8Paths);
        Assert.Equal(bits, PackedWidths.ContainerBits(bits));                   // a row is its own container
        Assert.Contains($"int{bits}", row.ToString());

        // a chunk of the largest code fills exactly ChunkBytes and reads back through the table's codec
        var codes = Enumerable.Repeat((byte)((1 << bits) - 1), row.CodesPerChunk).ToArray();
        var chunk = new byte[row.ChunkBytes];
        PackedTile16.Pack(codes, bits, chunk);
        for (int l = 0; l < PackedTile16.Rows; l++)
            for (int i = 0; i < PackedTile16.Codes; i++) Assert.Equal(codes[0], PackedTile16.CodeAt(chunk, bits, l, i));
    }

    [Fact]
    public void ValidationAndTheContainerFallbackReadTheTable()
    {
        for (int b = -1; b <= 9; b++)
        {
            Assert.Equal(PackedWidths.Bits.Contains(b), PackedWidths.IsSupported(b));
            if (PackedWidths.IsSupported(b)) { PackedWidths.CheckBits(b); continue; }
            var e = Assert.Throws<MatqException>(() => PackedWidths.CheckBits(b));
            Assert.Contains($"bits = {b} has no packed GEMV layout", e.Message);
            Assert.All(PackedWidths.Bits, w => Assert.Contains(w.ToString(), e.Message));
            Assert.Throws<MatqException>(() => PackedTile16.ChunkBytes(b));
            Assert.Throws<MatqException>(() => PackedWidths.Get(b));
        }
        for (int r = 1; r <= 8; r++)
            Assert.Equal(PackedWidths.Bits.Where(b => b >= r).Min(), PackedMatrix.ContainerBits(r));
        Assert.Throws<MatqException>(() => PackedMatrix.ContainerBits(0));
        Assert.Throws<MatqException>(() => PackedMatrix.ContainerBits(9));
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public void EveryPathOfEveryRowAgreesWithItsReference(int bits)
    {
        var row = PackedWidths.Get(bits);
        int[][] shapes = [[1, 7, -1], [17, 100, 32], [33, 257, 64], [40, 512, -1], [16, 96, 96]];
        foreach (var s in shapes)
        {
            int rows = s[0], cols = s[1], group = s[2];
            var rng = new Random(TestSeed.Of(bits, rows, cols, group));
            int g = group == -1 ? cols : group, groups = (cols + g - 1) / g;
            var codes = Enumerable.Range(0, rows * cols).Select(_ => (byte)rng.Next(1 << bits)).ToArray();
            var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 0.02 + 1e-3)).ToArray();
            var biases = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            int[]? perm = rows % 2 == 1 ? Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).ToArray() : null;
            var w = PackedMatrix.FromCodes(codes, rows, cols, bits, group, scales, biases, perm);
            Assert.Same(row, w.Width);
            var x = Enumerable.Range(0, 3 * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            var x0 = x.AsSpan(0, cols).ToArray();

            // integer paths: group dots and results bit for bit
            var want = new float[rows];
            GemvInt8Reference.Gemv(w, x0, want);
            var a = Int8Activations.Prepare(w, x0);
            var refDots = new long[w.GroupsPerRow];
            var dots = new long[w.GroupsPerRow];
            foreach (var path in row.Int8Paths.Where(GemvInt8Simd.IsSupported))
            {
                for (int o = 0; o < rows; o++)
                {
                    GemvInt8Reference.GroupDots(w, a.Codes, o, refDots);
                    GemvInt8Simd.GroupDots(w, a, o, dots, path);
                    Assert.Equal(refDots, dots);
                }
                var got = new float[rows];
                GemvInt8Simd.Gemv(w, x0, got, path, 1);
                Assert.Equal(want, got);
            }

            // fp32 paths (GEMV and the GEMM's decode), both ISAs
            var dense = GemvPackedReference.Dequantize(w);
            foreach (bool v128 in new[] { false, true })
            {
                var y = new float[rows];
                GemvPackedSimd.Gemv(w, x0, y, v128, 1);
                var ym = new float[3 * rows];
                GemmPackedSimd.Gemm(w, x, 3, ym, v128, 1);
                for (int r = 0; r < 3; r++)
                {
                    var wantF = new float[rows];
                    GemvPackedReference.Gemv(w, x.AsSpan(r * cols, cols), wantF);
                    for (int o = 0; o < rows; o++)
                    {
                        double mag = 0;
                        for (int k = 0; k < cols; k++) mag += Math.Abs(dense[o * cols + k] * x[r * cols + k]);
                        double tol = 1e-5 * mag + 1e-6;
                        Assert.True(Math.Abs(ym[r * rows + o] - wantF[o]) <= tol, $"int{bits} GEMM v128={v128} [{r}, {o}]: {ym[r * rows + o]} vs {wantF[o]}");
                        if (r == 0) Assert.True(Math.Abs(y[o] - wantF[o]) <= tol, $"int{bits} GEMV v128={v128} row {o}: {y[o]} vs {wantF[o]}");
                    }
                }
            }
        }
    }
}
