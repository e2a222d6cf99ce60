// GPTQ's blocked Cholesky pass against straightforward references written here: (1) an O(n³) one from the OBS formulas
// (quantize column j, spread its error with the j-th row of the current inverse Hessian, then delete j from it) with
// group grids fitted on the error-updated weights (GroupGrid.Updated); (2) a plain column-by-column restatement of
// upstream gptq.py's order of operations (GroupGrid.BlockStart, the default): the block's columns are updated in a copy,
// the outer W once per block, and a group's grid is min-max of the outer W's slice when its first column is reached.
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
        double[,] inv0 = DampedInverse(h, percDamp);
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

    /// <summary>W [rows, n] and H [n, n] as plain arrays (H widened to double) for the references.</summary>
    private static (float[,] W, double[,] H) Arrays(Tensor w, Tensor h)
    {
        int rows = checked((int)w.shape[0]), n = checked((int)w.shape[1]);
        var wArr = new float[rows, n];
        var hArr = new double[n, n];
        float[] wf = w.data<float>().ToArray(), hf = h.data<float>().ToArray();
        for (int r = 0; r < rows; r++) for (int c = 0; c < n; c++) wArr[r, c] = wf[r * n + c];
        for (int r = 0; r < n; r++) for (int c = 0; c < n; c++) hArr[r, c] = hf[r * n + c];
        return (wArr, hArr);
    }

    /// <summary>(H + λI)⁻¹ with λ = percDamp · mean(diag H).</summary>
    private static double[,] DampedInverse(double[,] h, double percDamp)
    {
        int n = h.GetLength(0);
        double mean = 0;
        for (int i = 0; i < n; i++) mean += h[i, i] / n;
        var damped = (double[,])h.Clone();
        for (int i = 0; i < n; i++) damped[i, i] += percDamp * mean;
        return Invert(damped);
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
    public void BlockedCholeskyPassWithUpdatedGridsEqualsTheReference(int rows, int n, int bits, int group, int blockSize)
    {
        using var scope = NewDisposeScope();
        var spec = group == 0 ? QuantSpec.PerChannel(bits) : QuantSpec.Grouped(bits, group);
        var w = AthenaTestData.Weights(rows, n, seed: rows * 100 + n);
        var h = AthenaTestData.CorrelatedHessian(n, 64, seed: n, correlation: 1.5);
        using var result = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, AthenaMode.GptqExact, blockSize: blockSize, groupGrid: GroupGrid.Updated));

        var (wArr, hArr) = Arrays(w, h);
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

    /// <summary>
    /// Upstream gptq.py's fasterquant, restated column by column in double (no dead inputs here): U = upper Cholesky factor
    /// of (H + λI)⁻¹; for blocks [i1, i2): W1 = copy of W[:, i1:i2]; for each column c = i1 + i: at a group start,
    /// (α, z) = min-max of the OUTER W[:, c : c+g) (block-start values: W gets this block's updates only after it);
    /// per-channel: min-max of the whole W once, before the pass; q = Q(W1[:, i]); e = (W1[:, i] − α(q − z)) / U_cc;
    /// W1[:, i:] −= e·U[c, i1+i : i2]; then W[:, i2:] −= E·U[i1:i2, i2:]. Returns codes and each group's α.
    /// </summary>
    private static (byte[,] Codes, float[,] Scales) Upstream(float[,] w, double[,] h, QuantSpec spec, double percDamp, int blockSize)
    {
        int rows = w.GetLength(0), n = w.GetLength(1);
        int g = spec.EffectiveGroupSize(n);
        double[,] u = UpperCholesky(DampedInverse(h, percDamp));
        var W = new double[rows, n];
        for (int r = 0; r < rows; r++) for (int k = 0; k < n; k++) W[r, k] = w[r, k];
        var codes = new byte[rows, n];
        var scales = new float[rows, (n + g - 1) / g];
        var scale = new float[rows];
        var zero = new int[rows];
        void FindParams(int from, int to)
        {
            for (int r = 0; r < rows; r++)
            {
                float lo = 0, hi = 0;
                for (int k = from; k < to; k++) { lo = Math.Min(lo, (float)W[r, k]); hi = Math.Max(hi, (float)W[r, k]); }
                (scale[r], byte z) = AffineQuantizer.GroupParams(lo, hi, spec);
                zero[r] = z;
                scales[r, from / g] = scale[r];
            }
        }
        if (g == n) FindParams(0, n);
        for (int i1 = 0; i1 < n; i1 += blockSize)
        {
            int i2 = Math.Min(i1 + blockSize, n), count = i2 - i1;
            var w1 = new double[rows, count];
            var err = new double[rows, count];
            for (int r = 0; r < rows; r++) for (int i = 0; i < count; i++) w1[r, i] = W[r, i1 + i];
            for (int i = 0; i < count; i++)
            {
                int c = i1 + i;
                if (g < n && c % g == 0) FindParams(c, Math.Min(c + g, n));
                for (int r = 0; r < rows; r++)
                {
                    byte q = AffineQuantizer.QuantizeValue((float)w1[r, i], scale[r], zero[r], spec.Bits);
                    codes[r, c] = q;
                    double e = (w1[r, i] - AffineQuantizer.DequantizeValue(q, scale[r], zero[r])) / u[c, c];
                    for (int k = i; k < count; k++) w1[r, k] -= e * u[c, i1 + k];
                    err[r, i] = e;
                }
            }
            for (int r = 0; r < rows; r++)
                for (int k = i2; k < n; k++)
                    for (int i = 0; i < count; i++) W[r, k] -= err[r, i] * u[i1 + i, k];
        }
        return (codes, scales);
    }

    /// <summary>U upper-triangular with UᵀU = A (A symmetric positive definite), by the Cholesky–Banachiewicz rows.</summary>
    private static double[,] UpperCholesky(double[,] a)
    {
        int n = a.GetLength(0);
        var u = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
            {
                double sum = a[i, j];
                for (int k = 0; k < i; k++) sum -= u[k, i] * u[k, j];
                u[i, j] = i == j ? Math.Sqrt(sum) : sum / u[i, i];
            }
        return u;
    }

    public static IEnumerable<object[]> UpstreamCases() => new[]
    {
        new object[] { 4, 32, 2, 8, 16, true },    // two groups per block
        new object[] { 3, 48, 2, 4, 16, true },    // four groups per block, 2 bits
        new object[] { 4, 30, 3, 6, 12, true },    // two groups per block, short last block
        new object[] { 4, 24, 3, 6, 4, true },     // groups straddling blocks of 4: the part past the block from the outer W
        new object[] { 5, 40, 2, 10, 128, true },  // one block of four groups
        new object[] { 3, 20, 3, 0, 8, false },    // per-channel: one grid from W before the pass
        new object[] { 3, 32, 2, 16, 16, false },  // g = B: the two rules coincide
    };

    /// <summary>GPTQ-exact's default rule (GroupGrid.BlockStart) gives upstream's codes and scales; where groups are smaller
    /// than the block, the error-updated rule gives other codes, so the comparison can tell the two rules apart.</summary>
    [Theory]
    [MemberData(nameof(UpstreamCases))]
    public void GptqExactEqualsUpstreamOrderOfOperations(int rows, int n, int bits, int group, int blockSize, bool rulesDiffer)
    {
        using var scope = NewDisposeScope();
        var spec = group == 0 ? QuantSpec.PerChannel(bits) : QuantSpec.Grouped(bits, group);
        var w = AthenaTestData.Weights(rows, n, seed: rows * 1000 + n + group);
        var h = AthenaTestData.CorrelatedHessian(n, 4 * n, seed: n + 7, correlation: 1.5);
        var config = new AthenaConfig(spec, AthenaMode.GptqExact, blockSize: blockSize);
        Assert.Equal(GroupGrid.BlockStart, config.GroupGrid);
        using var result = AthenaSolver.Quantize("l", w, h, config);
        using var updated = AthenaSolver.Quantize("l", w, h, new AthenaConfig(spec, AthenaMode.GptqExact, blockSize: blockSize, groupGrid: GroupGrid.Updated));

        var (wArr, hArr) = Arrays(w, h);
        var (expected, expectedScales) = Upstream(wArr, hArr, spec, 0.01, blockSize);

        byte[] actual = result.Weights.Codes.data<byte>().ToArray(), other = updated.Weights.Codes.data<byte>().ToArray();
        float[] actualScales = result.Weights.Scales.data<float>().ToArray();
        int groups = expectedScales.GetLength(1), differ = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < n; c++)
            {
                Assert.True(expected[r, c] == actual[r * n + c], $"code [{r}, {c}]: upstream {expected[r, c]}, solver {actual[r * n + c]}");
                if (other[r * n + c] != expected[r, c]) differ++;
            }
            for (int k = 0; k < groups; k++)
                Assert.True(Math.Abs(expectedScales[r, k] - actualScales[r * groups + k]) <= 1e-5 * Math.Abs(expectedScales[r, k]),
                    $"scale [{r}, {k}]: upstream {expectedScales[r, k]}, solver {actualScales[r * groups + k]}");
        }
        if (rulesDiffer) Assert.True(differ > 0, "the error-updated rule gave upstream's codes too; the case cannot tell the rules apart");
        else Assert.Equal(0, differ);
    }
}
