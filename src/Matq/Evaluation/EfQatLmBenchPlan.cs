// Contract: the runs of `bench efqat-lm` at one weight bit-width: PTQ alone (min-max RTN, the start EfQAT trains from),
// EfQAT 0 % (norms only), every mode × fraction, and full QAT (EfQAT 100 %); every training run gets the same budget.
using System.Globalization;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.Rtn;
using Matq.Quantization.Pipeline;

namespace Matq.Evaluation;

/// <summary>One run: its row label and the quantization config it runs.</summary>
public sealed record EfQatLmBenchRun(string Label, QuantizationConfig Config)
{
    public bool IsPtq => Config.Method == RtnAlgorithm.MethodName;
}

public static class EfQatLmBenchPlan
{
    /// <summary>The runs at <paramref name="bits"/> (group <paramref name="group"/>), in table order; EfQAT runs train
    /// <paramref name="steps"/> steps of <paramref name="batch"/> windows, refreshing the importance every <paramref name="refresh"/>.</summary>
    public static IReadOnlyList<EfQatLmBenchRun> Runs(int bits, int group, IReadOnlyList<string> modes, IReadOnlyList<double> fractions, int steps, int batch, int refresh)
    {
        var budget = new Dictionary<string, string>
        {
            ["steps"] = steps.ToString(CultureInfo.InvariantCulture),
            ["batch"] = batch.ToString(CultureInfo.InvariantCulture),
            ["refresh"] = refresh.ToString(CultureInfo.InvariantCulture),
        };
        EfQatLmBenchRun EfQat(string label, Dictionary<string, string> options) =>
            new(label, new QuantizationConfig(EfQatLmAlgorithm.MethodName, bits, group, options: options.Concat(budget).ToDictionary()));

        var runs = new List<EfQatLmBenchRun>
        {
            new("PTQ (min-max RTN, the EfQAT start)", new QuantizationConfig(RtnAlgorithm.MethodName, bits, group, options: new Dictionary<string, string> { ["clip"] = "minmax" })),
            EfQat("EfQAT 0 % (norms only)", new() { ["fraction"] = "0" }),
        };
        foreach (var mode in modes)
            foreach (var f in fractions)
                runs.Add(EfQat($"EfQAT {mode.ToUpperInvariant()} {f * 100:0.#} %", new() { ["mode"] = mode, ["fraction"] = f.ToString("R", CultureInfo.InvariantCulture) }));
        runs.Add(EfQat("full QAT (EfQAT 100 %)", new() { ["fraction"] = "1" }));
        return runs;
    }
}
