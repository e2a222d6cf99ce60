// Contract: the recipe of quantizing a trained Fashion-MNIST net with PTQ, QAT or EfQAT: fine-tuning with AdamW at 2e-4
// (no weight decay, 20 warm-up steps, cosine, augmentation) for 1 epoch unless told, each run's table label, and the
// accuracy table's plan (PTQ at W8/4/2 A8; at W4A8 and W2A8 every EfQAT mode × fraction and full QAT).
using Matq.Algorithms.EfQat;
using Matq.Models.Vision;

namespace Matq.Training.Vision;

public static class VisionQuantRecipe
{
    public const int DefaultEpochs = 1;
    public const double DefaultLr = 2e-4;

    /// <summary>Fine-tuning options of the qat and efqat runs; null epochs/lr = the defaults above.</summary>
    public static CnnTrainOptions TrainOptions(int? epochs, double? lr, int batch, long seed, int? limitTrain, int? limitTest = null) => new()
    {
        Epochs = epochs ?? DefaultEpochs, Batch = batch, Lr = lr ?? DefaultLr, Optimizer = "adamw", WeightDecay = 0, WarmupSteps = 20,
        Augment = true, Seed = seed, LimitTrain = limitTrain, LimitTest = limitTest,
    };

    /// <summary>"PTQ (RTN, MSE clip)", "full QAT" or "EfQAT CWPL 25 %".</summary>
    public static string Label(string method, EfQatConfig? ef) =>
        ef is null ? (method == "ptq" ? "PTQ (RTN, MSE clip)" : "full QAT") : $"EfQAT {EfQatConfig.ShortName(ef.Mode)} {ef.Fraction:P0}";

    /// <summary>One run of <paramref name="method"/> at W<paramref name="weightBits"/>A<paramref name="actBits"/>, labelled.</summary>
    public static (string Label, VisionQuantRequest Request) Single(string method, int weightBits, int actBits, EfQatMode mode, double fraction, CnnTrainOptions train)
    {
        var q = new QuantSettings(weightBits, actBits);
        var ef = method == "efqat" ? new EfQatConfig(mode, fraction, q.WeightBits, q.ActBits) : null;
        return (Label(method, ef), new VisionQuantRequest(method, q, method == "ptq" ? null : train, ef));
    }

    /// <summary>The accuracy table: PTQ at W8/4/2 A8, then at W4A8 and W2A8 EfQAT CWPL 0/5/25 %, CWPN and LWPN 5/25 %, full QAT.</summary>
    public static IEnumerable<(string Label, VisionQuantRequest Request)> SweepPlan(CnnTrainOptions train)
    {
        foreach (int wb in new[] { 8, 4, 2 })
        {
            var q = new QuantSettings(wb, 8);
            yield return (Label("ptq", null), new VisionQuantRequest("ptq", q));
        }
        foreach (int wb in new[] { 4, 2 })
        {
            var q = new QuantSettings(wb, 8);
            foreach (var mode in new[] { EfQatMode.ChannelPerLayer, EfQatMode.ChannelPerNetwork, EfQatMode.LayerPerNetwork })
                foreach (double f in mode == EfQatMode.ChannelPerLayer ? new[] { 0.0, 0.05, 0.25 } : new[] { 0.05, 0.25 })
                {
                    var ef = new EfQatConfig(mode, f, wb, 8);
                    yield return (Label("efqat", ef), new VisionQuantRequest("efqat", q, train, ef));
                }
            yield return (Label("qat", null), new VisionQuantRequest("qat", q, train));
        }
    }
}
