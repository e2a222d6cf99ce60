// Contract: runs an exported ONNX model in ONNX Runtime (CPU execution provider, fp32) and compares its logits with
// matq's own TorchSharp forward of the same model at the same bits: max |Δlogit| and the largest |logit| for scale.
using Matq.Models;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Matq.Export;

/// <summary>One comparison: the input's size, max |ORT − matq| over all logits, and max |matq logit|.</summary>
public sealed record OnnxCheck(int Batch, int Sequence, double MaxAbsDiff, double MaxAbsLogit)
{
    public double Relative => MaxAbsLogit == 0 ? MaxAbsDiff : MaxAbsDiff / MaxAbsLogit;
}

public static class OnnxVerifier
{
    /// <summary>ORT's logits [batch·seq·vocab] for ids [batch, seq] (row-major int64).</summary>
    public static float[] Run(string onnxPath, long[] ids, int batch, int seq, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Length != (long)batch * seq) throw new ArgumentException($"ids hold {ids.Length} values, batch·seq = {(long)batch * seq}");
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        InferenceSession session;
        try { session = new InferenceSession(onnxPath, options); }
        catch (OnnxRuntimeException e) { throw new MatqException($"{onnxPath}: ONNX Runtime cannot load it: {FirstLine(e.Message)}", e); }
        using (session)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(ids, [batch, seq]);
            using var run = new RunOptions();
            try
            {
                using var outputs = session.Run(run, ["input_ids"], [input], ["logits"]);
                return outputs[0].GetTensorDataAsSpan<float>().ToArray();
            }
            catch (OnnxRuntimeException e) { throw new MatqException($"{onnxPath}: ONNX Runtime failed to run it: {FirstLine(e.Message)}", e); }
        }
    }

    /// <summary>Runs both on the same ids and compares; <paramref name="reference"/> is matq's model at the exported bits.</summary>
    public static OnnxCheck Compare(string onnxPath, LlamaForCausalLM reference, long[] ids, int batch, int seq, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var ort = Run(onnxPath, ids, batch, seq, threads);
        float[] expected;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var logits = reference.forward(tensor(ids, [batch, seq], dtype: ScalarType.Int64, device: reference.Device));
            expected = logits.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        }
        if (expected.Length != ort.Length)
            throw new MatqException($"{onnxPath}: ONNX Runtime returned {ort.Length} logits, matq {expected.Length}; the export does not match the model");
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < ort.Length; i++)
        {
            double diff = Math.Abs((double)ort[i] - expected[i]);
            if (!(diff <= maxDiff)) maxDiff = double.IsNaN(diff) ? double.PositiveInfinity : diff;
            maxAbs = Math.Max(maxAbs, Math.Abs(expected[i]));
        }
        return new OnnxCheck(batch, seq, maxDiff, maxAbs);
    }

    /// <summary>Seeded token ids in [0, vocab) as [batch, seq] row-major.</summary>
    public static long[] SampleIds(int vocab, int batch, int seq, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, batch * seq).Select(_ => (long)rng.Next(vocab)).ToArray();
    }

    // ORT quotes node and value names from the file verbatim: escape them (SafeText) so the message stays one clean line
    private static string FirstLine(string s) => SafeText.Escape(s.Split('\n')[0].Trim(), 400);
}
