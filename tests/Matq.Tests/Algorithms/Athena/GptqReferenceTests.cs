// GPTQ's blocked Cholesky pass against a straightforward O(n³) reference written here from the OBS formulas:
// quantize column j, spread its error with the j-th row of the current inverse Hessian, then delete j from it.
using Matq.Algorithms.Athena;
using Matq.Kernels.Quantization;
using static TorchSharp.torch;

namespace Matq.Tests.Algorithms.Athena;

public class GptqReferenceTests
{
    /// <summary>
    /// Per row, in double: Hinv = (H + λI)⁻¹; for j = 0..n−1: at a group start, (α, z) = min-max of the current w[j..j+g);
    /// q = Q(w_j); err = (w_j − α(q − z)) / Hinv_jj; w_k −= err·Hinv_jk (k > j); Hinv −= Hinv[:, j] Hinv[j, :] / Hinv_jj.
    /// </summary>
    private static byte[,] Reference(float[,] w, double[,] h, QuantSpec spec, double percDamp)
    {
        int rows = w.GetLength(0), n = w.GetLength(1);
        int g = spec.EffectiveGroupSize(n);
        double mean = 0;
        for (int i = 0; i < n; i++) mean += h[i, i] / n;
        var damped = (double[,])h.Clone();
        for (int i = 0; i < n; i++) damped[i, i] += percDamp * mean;
        double[,] inv0 = Invert(damped);
        var codes = new byte[rows, n];
        for (int r = 0; r < rows; r++)
        {
            var inv = (double[,])inv0.Clone();
            var wr = new double[n];
            for (int k = 0; k < n; k++) wr[k] = w[r, k];
            float scale = 0; int zero = 0;
            for (int j = 0; j < n; j++)
            {
                if (j % g == 0)
                {
                    float lo = 0, hi = 0;
                    for (int k = j; k < Math.Min(n, j + g); k++) { lo = Math.Min(lo, (float)wr[k]); hi = Math.Max(hi, (float)wr[k]); }
                    (scale, byte z) = AffineQuantizer.GroupParams(lo, hi, spec);
                    zero = z;
                }
                byte q = AffineQuantizer.QuantizeValue((float)wr[j], scale, zero, spec.Bits);
                codes[r, j] = q;
                double err = (wr[j] - AffineQuantizer.DequantizeValue(q, scale, zero)) / inv[j, j];
                for (int k = j + 1; k < n; k++) wr[k] -= err * inv[j, k];
                double pivot = inv[j, j];
                var colJ = new double[n];
                var rowJ = new double[n];
                for (int k = 0; k < n; k++) { colJ[k] = inv[k, j]; rowJ[k] = inv[j, k]; }
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n; b++)
                        inv[a, b] -= colJ[a] * rowJ[b] / pivot;
            }
        }
        return codes;
    }

    private static double[,] Invert(double[,] m)
    {
        int n = m.GetLength(0);
        var a = (double[,])m.Clone();
        var inv = new double[n, n];
        for (int i = 0; i < n; i++) inv[i, i] = 1;
        for (int c = 0; c < n; c++)
        {
            int p = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(a[r, c]) > Math.Abs(a[p, c])) p = r;
            for (int k = 0; k < n; k++) { (a[c, k], a[p, k]) = (a[p, k], a[c, k]); (inv[c, k], inv[p, k]) = (inv[p, k], inv[c, k]); }
            double d = a[c, c];
            for (int k = 0; k < n; k++) { a[c, k] /= d; inv[c, k] /= d; }
            for (int r = 0; r < n; r++)
            {
                if (r == c) continue;
                double f = a[r, c];
                for (int k = 0; k < n; k++) { a[r, k] -= f * a[c, k]; inv[r, k] -= f * inv[c, k]; }
            }
        }
        return inv;
    }

    public static IEnumerable<object[]> Cases() => new[]
    {
        new object[] { 1, 4, 2, 0, 1 },     // the 1×4, 2-bit, per-channel case; B = 1
        new object[] { 3, 6, 2, 0, 2 },     // per-channel, lazy blocks of 2
        new object[] { 4, 9, 3, 2, 4 },     // groups of 2 inside blocks of 4, short last group and block
        new object[] { 4, 12, 3, 6, 4 },    // groups of 6 straddling blocks of 4: params from error-updated columns past the block
        new object[] { 5, 10, 4, 5, 128 },  // one block
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BlockedCholeskyPassEqualsTheReference(int rows, int n, int bits, int group, int blockSize)
    {
        using var scope = NewDisposeScope();
        var spec = group == 0 ? QuantSpec.PerChannel(bits) : QuantSpec.Grouped(bits, group);
        var w = AthenaTestData.Weights(rows, n, seed: rows * 100 + n);
        var h = AthenaTestData.CorrelatedHessian(n, 64, seed: n, correlation: 1.5);
        using var result = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, AthenaMode.GptqExact, blockSize: blockSize));

        var wArr = new float[rows, n];
        var hArr = new double[n, n];
        float[] wf = w.data<float>().ToArray(), hf = h.data<float>().ToArray();
        for (int r = 0; r < rows; r++) for (int c = 0; c < n; c++) wArr[r, c] = wf[r * n + c];
        for (int r = 0; r < n; r++) for (int c = 0; c < n; c++) hArr[r, c] = hf[r * n + c];
        byte[,] expected = Reference(wArr, hArr, spec, 0.01);

        byte[] actual = result.Weights.Codes.data<byte>().ToArray();
        int rtnDifferences = 0;
        byte[] rtn = Matq.Quantization.TensorAffineQuantizer.Quantize(w, spec).Codes.data<byte>().ToArray();
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < n; c++)
            {
                Assert.True(expected[r, c] == actual[r * n + c], $"code [{r}, {c}]: reference {expected[r, c]}, solver {actual[r * n + c]}");
                if (rtn[r * n + c] != expected[r, c]) rtnDifferences++;
            }
        // the case must exercise the error feedback: some codes differ from plain rounding
        if (rows * n >= 12) Assert.True(rtnDifferences > 0, "the error feedback changed no code; the case tests nothing");
    }
}
