// matq's k-quant (q2_K..q6_K) and q5_0/q5_1 block code against ggml's own reference functions, called in the
// libggml-base that LLamaSharp.Backend.Cpu 0.30.0 ships (the portable noavx build, so no FMA contraction changes the
// float rounding): blocks ggml quantizes decode bit for bit the same in matq as in ggml's dequantize_row_*, blocks matq
// quantizes decode the same in ggml as in matq, and matq's quantizer's error stays near ggml's reference quantizer's.
// Also hand-packed known blocks (independent of ggml), the exact path on a representable grid, and its refusal otherwise.
using System.Runtime.InteropServices;
using Matq.Formats.Gguf;
using Xunit.Abstractions;

namespace Matq.Tests.Export;

public sealed class GgufKQuantTests(ITestOutputHelper output)
{
    public static readonly TheoryData<string> AllTypes = new() { "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1" };

    // rows of 256 values: gaussian, heavy-tailed with outliers, all positive, a zero run, a constant, tiny magnitudes
    private static float[] Values(int seed)
    {
        var rng = new Random(seed);
        const int rows = 8;
        var x = new float[rows * 256];
        float Gauss() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        for (int i = 0; i < 256; i++) x[i] = 0.05f * Gauss();
        for (int i = 0; i < 256; i++) x[256 + i] = 0.02f * Gauss() * (rng.Next(16) == 0 ? 8 : 1);
        for (int i = 0; i < 256; i++) x[512 + i] = (float)rng.NextDouble();
        for (int i = 0; i < 256; i++) x[768 + i] = i < 64 ? 0f : Gauss();
        for (int i = 0; i < 256; i++) x[1024 + i] = -0.3f;
        for (int i = 0; i < 256; i++) x[1280 + i] = 1e-4f * Gauss();
        for (int i = 0; i < 256; i++) x[1536 + i] = i % 32 < 16 ? 3 * Gauss() : 0.01f * Gauss();
        for (int i = 0; i < 256; i++) x[1792 + i] = -(float)rng.NextDouble() - 0.5f;
        return x;
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void Matqs_decoder_matches_ggmls_bit_for_bit_on_blocks_ggml_quantized(string name)
    {
        var t = Enum.Parse<GgmlType>(name);
        var x = Values(11);
        var bytes = GgmlRef.Quantize(t, x);
        var want = GgmlRef.Dequantize(t, bytes, x.Length);
        var got = GgufBlocks.Decode(t, bytes, x.Length);
        for (int i = 0; i < x.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(got[i]), $"{t} value {i}: ggml {want[i]:R}, matq {got[i]:R}");
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void Ggml_decodes_matqs_blocks_as_matq_does_and_matqs_error_stays_near_ggmls(string name)
    {
        var t = Enum.Parse<GgmlType>(name);
        var x = Values(23);
        var mine = GgufBlocks.Encode(t, x);
        var ggmlView = GgmlRef.Dequantize(t, mine, x.Length);
        var matqView = GgufBlocks.Decode(t, mine, x.Length);
        for (int i = 0; i < x.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(ggmlView[i]) == BitConverter.SingleToInt32Bits(matqView[i]), $"{t} value {i}: ggml {ggmlView[i]:R}, matq {matqView[i]:R}");
        var reference = GgmlRef.Dequantize(t, GgmlRef.Quantize(t, x), x.Length);
        // per row: RMS error relative to the row's RMS, matq's quantizer vs ggml's reference quantizer
        for (int r = 0; r < x.Length / 256; r++)
        {
            var row = x.AsSpan(r * 256, 256);
            double ms = Rms(row, new float[256]), em = Rms(row, matqView.AsSpan(r * 256, 256)), eg = Rms(row, reference.AsSpan(r * 256, 256));
            output.WriteLine($"{t} row {r}: relative RMS error matq {em / Math.Max(ms, 1e-30):F4}, ggml ref {eg / Math.Max(ms, 1e-30):F4}");
            Assert.True(em <= 1.15 * eg + 1e-3 * ms, $"{t} row {r}: matq's RMS error {em:E3} vs ggml's reference quantizer {eg:E3}");
        }
    }

    private static double Rms(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
        return Math.Sqrt(s / a.Length);
    }

    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K")]
    [InlineData("Q4_K")]
    [InlineData("Q5_K")]
    [InlineData("Q6_K")]
    public void Every_field_packs_and_unpacks_to_the_same_integers_and_ggml_reads_the_formula(string name)
    {
        var t = Enum.Parse<GgmlType>(name);
        var s = GgufKQuants.Spec(t);
        var rng = new Random(7);
        var b = new KBlock(s.SubBlocks) { D = 0.0625f, DMin = -0.125f };
        for (int j = 0; j < s.SubBlocks; j++) { b.Sc[j] = rng.Next(s.ScLo, s.ScHi + 1); b.M[j] = s.Symmetric ? 0 : rng.Next(0, s.MHi + 1); }
        // the extremes of every field appear
        b.Sc[0] = s.ScLo; b.Sc[1] = s.ScHi;
        if (!s.Symmetric) { b.M[0] = s.MHi; b.M[1] = 0; }
        for (int i = 0; i < 256; i++) b.Q[i] = (byte)(i < 2 ? (i == 0 ? 0 : s.QMax) : rng.Next(0, s.QMax + 1));
        var bytes = new byte[s.Bytes];
        GgufKQuants.Pack(s, b, bytes);
        var back = GgufKQuants.Unpack(s, bytes);
        Assert.Equal(b.Sc, back.Sc);
        Assert.Equal(s.Symmetric ? new int[s.SubBlocks] : b.M, back.M);
        Assert.Equal(b.Q, back.Q);
        Assert.Equal(b.D, back.D);
        if (!s.Symmetric) Assert.Equal(b.DMin, back.DMin);
        // d and dmin are powers of two, so every value below is exact in float: the formula, evaluated independently
        var y = GgmlRef.Dequantize(t, bytes, 256);
        for (int i = 0; i < 256; i++)
        {
            int j = i / s.Sub;
            double want = s.Symmetric ? 0.0625 * b.Sc[j] * (b.Q[i] - s.Offset) : 0.0625 * b.Sc[j] * b.Q[i] + 0.125 * b.M[j];
            Assert.True(want == y[i], $"{t} value {i}: formula {want}, ggml {y[i]}");
        }
    }

    [Fact]
    public void A_known_q4_K_block_decodes_to_its_hand_computed_values()
    {
        // d = 1, dmin = 0.5; sub-block j: sc = j + 1, m = 2j; q_i = i % 16. Scales bytes by the layout: sc0..3 and m0..3 in
        // bytes 0..7 (6 bits), sc4..7 low nibbles / m4..7 high nibbles in bytes 8..11, their top bits 6–7 of bytes 0..7.
        var block = new byte[144];
        GgufBlocks.WriteHalf(block, 1f);
        GgufBlocks.WriteHalf(block.AsSpan(2), 0.5f);
        int[] sc = [1, 2, 3, 4, 5, 6, 7, 8], m = [0, 2, 4, 6, 8, 10, 12, 14];
        for (int j = 0; j < 4; j++) { block[4 + j] = (byte)sc[j]; block[4 + j + 4] = (byte)m[j]; }
        for (int j = 4; j < 8; j++) block[4 + j + 4] = (byte)(sc[j] | m[j] << 4);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) block[16 + 32 * c + l] = (byte)(l % 16 | (32 + l) % 16 << 4);
        var y = GgufBlocks.Decode(GgmlType.Q4_K, block, 256);
        for (int i = 0; i < 256; i++) Assert.Equal(sc[i / 32] * (i % 16) - 0.5f * m[i / 32], y[i]);
        Assert.Equal(y, GgmlRef.Dequantize(GgmlType.Q4_K, block, 256));
    }

    [Theory]
    [InlineData("Q2_K")]
    [InlineData("Q3_K")]
    [InlineData("Q4_K")]
    [InlineData("Q5_K")]
    [InlineData("Q6_K")]
    public void A_grid_with_integer_ratio_scales_is_written_exactly_and_free_float_scales_are_not(string name)
    {
        var s = GgufKQuants.Spec(Enum.Parse<GgmlType>(name));
        var rng = new Random(3);
        var codes = Enumerable.Range(0, 256).Select(_ => (byte)rng.Next(0, s.QMax + 1)).ToArray();
        float unit = 0.0123f;
        int top = Math.Min(s.ScHi, 15);
        var scale = Enumerable.Range(0, s.SubBlocks).Select(j => unit * (1 + j % top)).ToArray();
        var min = Enumerable.Range(0, s.SubBlocks).Select(j => s.Symmetric ? 0f : 0.007f * (j % 5)).ToArray();
        var b = GgufKQuants.TryExact(s, codes, scale, min);
        Assert.NotNull(b);
        Assert.Equal(codes, b!.Q);
        var y = new float[256];
        GgufKQuants.Values(s, b, y);
        for (int i = 0; i < 256; i++)
        {
            int j = i / s.Sub;
            double want = s.Symmetric ? scale[j] * (codes[i] - s.Offset) : scale[j] * codes[i] - min[j];
            Assert.True(Math.Abs(y[i] - want) <= 2e-3 * Math.Abs(scale[j] * s.QMax) + 1e-7, $"{name} value {i}: {y[i]} vs {want}");
        }
        // scales with no common fp16 unit: no exact super-block
        var free = Enumerable.Range(0, s.SubBlocks).Select(_ => 0.01f + (float)rng.NextDouble() * 0.01f).ToArray();
        Assert.Null(GgufKQuants.TryExact(s, codes, free, min));
    }

    [Fact]
    public void Rows_that_are_not_a_multiple_of_256_are_refused_by_the_writer_and_fall_back_as_llama_cpp_does()
    {
        var e = Assert.Throws<MatqException>(() => new GgufWriter().AddTensor("w", [128, 2], GgmlType.Q4_K, new byte[144]));
        Assert.Contains("multiple of 256", e.Message);
        Assert.Equal(GgmlType.Q4_0, GgufKQuants.Fallback(GgmlType.Q2_K));
        Assert.Equal(GgmlType.Q4_0, GgufKQuants.Fallback(GgmlType.Q3_K));
        Assert.Equal(GgmlType.Q5_0, GgufKQuants.Fallback(GgmlType.Q4_K));
        Assert.Equal(GgmlType.Q5_1, GgufKQuants.Fallback(GgmlType.Q5_K));
        Assert.Equal(GgmlType.Q8_0, GgufKQuants.Fallback(GgmlType.Q6_K));
    }
}

/// <summary>ggml's reference quantize/dequantize row functions from LLamaSharp's libggml-base (noavx build).</summary>
internal static class GgmlRef
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate void Row(float[] x, byte[] y, long k);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate void Dequant(byte[] x, float[] y, long k);

    private static readonly Lazy<IntPtr> Lib = new(() =>
    {
        var path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "noavx", "libggml-base.so");
        if (!File.Exists(path)) throw new InvalidOperationException($"ggml reference library not found at {path} (LLamaSharp.Backend.Cpu's noavx build)");
        return NativeLibrary.Load(path);
    });

    private static string Suffix(GgmlType t) => t.ToString().ToLowerInvariant().Replace("_k", "_K", StringComparison.Ordinal);

    public static byte[] Quantize(GgmlType t, float[] x)
    {
        var y = new byte[GgufBlocks.ByteLength(t, x.Length)];
        var f = Marshal.GetDelegateForFunctionPointer<Row>(NativeLibrary.GetExport(Lib.Value, $"quantize_row_{Suffix(t)}_ref"));
        f(x, y, x.Length);
        return y;
    }

    public static float[] Dequantize(GgmlType t, byte[] data, int count)
    {
        var y = new float[count];
        var f = Marshal.GetDelegateForFunctionPointer<Dequant>(NativeLibrary.GetExport(Lib.Value, $"dequantize_row_{Suffix(t)}"));
        f(data, y, count);
        return y;
    }
}
