// Contract: sequential block-by-block calibration of a Llama-family model: block i sees the calibration set as
// produced by the already-quantized blocks 0..i−1; each linear of block i gets its input Hessian (shared-input linears
// share one), is handed to a quantize callback, and the callback's weights are installed before block i's outputs are
// recomputed as block i+1's inputs.
using Matq.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Calibration;

/// <summary>One linear ready to quantize: HF name (model.layers.N.mlp.up_proj), block index, its weight (fp32 [out, in]:
/// the model's own tensor when it is fp32 — read it while solving; a quantizer may overwrite it, once done with it, with
/// the weight to install and return it) and the Hessian H = 2XXᵀ/n [in, in] of its inputs over <paramref name="Tokens"/> calibration tokens.</summary>
public sealed record CalibratedLinear(string Name, int Block, Tensor Weight, Tensor Hessian, long Tokens);

public static class SequentialCalibrator
{
    /// <summary>Linears of a decoder block that read the same tensor (one Hessian each group), in execution order.</summary>
    public static IReadOnlyList<IReadOnlyList<string>> SharedInputGroups { get; } = new[]
    {
        new[] { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj" },
        new[] { "self_attn.o_proj" },
        new[] { "mlp.gate_proj", "mlp.up_proj" },
        new[] { "mlp.down_proj" },
    };

    /// <summary>
    /// Runs <paramref name="samples"/> (N windows of T token ids) through the model block by block, in batches of
    /// <paramref name="batchSize"/> windows; per block i:
    ///   1. capture: the float block runs on its inputs h_i [b, T, hidden] while each group's first linear feeds its
    ///      input into a streaming HessianAccumulator (H = 2XXᵀ/n, fp32, on <paramref name="hessianDevice"/> or the model's);
    ///   2. quantize: for every selected linear, <paramref name="quantize"/> gets its weight and Hessian and returns the
    ///      weight to install (fp32 [out, in], usually the dequantized ŵ); it is copied in, in the model dtype;
    ///   3. propagate: h_{i+1} = block_i(h_i) with the installed weights.
    /// With <paramref name="includeHead"/>, lm_head (untied) comes last, on norm(h_L). <paramref name="select"/> (HF module
    /// name → bool, default all) leaves unselected linears float; a shared-input group with none selected is not captured.
    /// The callback runs inside a TorchSharp dispose scope that ends after its linear: tensors it keeps must be detached
    /// (DetachFromDisposeScope). Throws MatqException on non-finite activations (naming the linear) or an empty set.
    /// Resume: blocks i &lt; <paramref name="resumeBlocks"/> (lm_head is block L) are not captured or quantized;
    /// <paramref name="restore"/>(i) installs their stored weights instead and step 3 runs as before, so block
    /// <paramref name="resumeBlocks"/> sees bit-identical inputs. <paramref name="blockDone"/>(i) follows each block quantized here.
    /// Streaming: <paramref name="hold"/>(i) keeps block i resident (embedding −1, layers, head L) while it is used.
    /// </summary>
    /// <returns>Calibration tokens seen by every linear (N·T).</returns>
    public static long Run(LlamaForCausalLM model, IReadOnlyList<int[]> samples, Func<CalibratedLinear, Tensor> quantize,
        int batchSize = 8, Device? hessianDevice = null, Action<string>? progress = null, Func<string, bool>? select = null,
        bool includeHead = false, int resumeBlocks = 0, Action<int>? restore = null, Action<int>? blockDone = null,
        Func<int, IDisposable>? hold = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(quantize);
        if (samples.Count == 0) throw new MatqException("the calibration set is empty: give at least one calibration window");
        if (batchSize < 1) throw new MatqException($"calibration batch size is {batchSize}: use at least 1");
        int length = samples[0].Length;
        if (length == 0 || samples.Any(s => s.Length != length))
            throw new MatqException("calibration windows must all have the same, non-zero length");
        if (includeHead && model.LmHead is null)
            throw new MatqException("lm_head is tied to the embedding in this model and cannot be quantized alone");
        select ??= _ => true;
        hold ??= _ => Loading.LlamaBlockStream.NoHold.Instance;
        Device device = model.Device;
        hessianDevice ??= device;
        using var noGrad = no_grad();
        using var runScope = NewDisposeScope();

        // a resumed run whose every block (and head) is finished needs no activations: its blocks are only restored
        // (propagating them through 32 CPU-sized forwards would cost minutes and change nothing)
        bool anyLeft = resumeBlocks < model.Layers.Count || (includeHead && select("lm_head") && resumeBlocks <= model.Layers.Count);

        // h_0 = embed(ids), one [b, T, hidden] tensor per batch
        var hidden = new List<Tensor>();
        using (hold(-1))
        {
            for (int s = 0; s < samples.Count; s += batchSize)
            {
                using var scope = NewDisposeScope();
                int b = Math.Min(batchSize, samples.Count - s);
                var ids = tensor(samples.Skip(s).Take(b).SelectMany(w => w.Select(t => (long)t)).ToArray(), new long[] { b, length },
                    dtype: ScalarType.Int64, device: device);
                hidden.Add(model.EmbedTokens(ids).MoveToOuterDisposeScope());
            }
        }
        long tokens = (long)samples.Count * length;

        foreach (var layer in model.Layers)
        {
            int i = layer.Index;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double holdS = 0, captureS = 0, quantizeS = 0;
            using var held = Scoped(() => hold(i));
            holdS = clock.Elapsed.TotalSeconds;
            if (i < resumeBlocks) Scoped(() => restore?.Invoke(i));
            else
            {
                var wanted = SharedInputGroups.Select(g => g.Where(l => select(Name(layer, l))).ToArray()).ToArray();
                var accumulators = Capture(layer, hidden, hessianDevice, wanted.Select(w => w.Length > 0).ToArray());
                captureS = clock.Elapsed.TotalSeconds - holdS;
                try
                {
                    for (int gi = 0; gi < SharedInputGroups.Count; gi++)
                    {
                        foreach (var local in wanted[gi])
                            Install(Name(layer, local), i, layer.GetLinear(local), accumulators[gi]!, quantize);
                        // a group's Hessian is freed as soon as its linears are done (down_proj's alone is 822 MB at 8B)
                        accumulators[gi]?.Dispose();
                        accumulators[gi] = null;
                    }
                }
                finally
                {
                    foreach (var a in accumulators) a?.Dispose();
                }
                quantizeS = clock.Elapsed.TotalSeconds - holdS - captureS;
            }
            for (int b = 0; b < hidden.Count && anyLeft; b++)
            {
                using var scope = NewDisposeScope();
                var next = layer.forward(hidden[b]).MoveToOuterDisposeScope();
                hidden[b].Dispose();
                hidden[b] = next;
            }
            if (device.type == DeviceType.CUDA) cuda.synchronize();   // the phase times below are the GPU's, not its queue's
            if (i >= resumeBlocks)
            {
                double propagateS = clock.Elapsed.TotalSeconds - holdS - captureS - quantizeS;
                progress?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"block {i + 1}/{model.Layers.Count} done ({tokens} calibration tokens): hold {holdS:F2} s, capture {captureS:F2} s, quantize {quantizeS:F2} s, propagate {propagateS:F2} s"));
                Scoped(() => blockDone?.Invoke(i));
            }
        }
        using var heldHead = includeHead && select("lm_head") ? Scoped(() => hold(model.Layers.Count)) : null;
        if (includeHead && select("lm_head") && model.Layers.Count < resumeBlocks) Scoped(() => restore?.Invoke(model.Layers.Count));
        else if (includeHead && select("lm_head"))
        {
            var head = model.LmHead!;
            using var acc = new HessianAccumulator("lm_head", WeightOf(head, "lm_head").shape[1], hessianDevice);
            foreach (var h in hidden)
            {
                using var scope = NewDisposeScope();
                acc.Add(model.Norm.call(h));
            }
            Install("lm_head", model.Layers.Count, head, acc, quantize);
            Scoped(() => blockDone?.Invoke(model.Layers.Count));
        }
        foreach (var h in hidden) h.Dispose();
        return tokens;
    }

    // The callbacks (hold, restore, blockDone) run in a dispose scope of their own: a tensor they make and do not dispose
    // (a detached alias of a block's weights, a host copy of it) would otherwise join the run's scope and keep that
    // block's memory alive until the whole run ends, one block's worth more per block.
    private static void Scoped(Action action)
    {
        using var scope = NewDisposeScope();
        action();
    }

    private static T Scoped<T>(Func<T> func)
    {
        using var scope = NewDisposeScope();
        return func();
    }

    /// <summary>Step 1: one forward of the float block over all batches with capturing stand-ins for the groups marked in
    /// <paramref name="capture"/> (null accumulators for the others); originals restored after.</summary>
    private static List<HessianAccumulator?> Capture(LlamaDecoderLayer layer, List<Tensor> hidden, Device hessianDevice, bool[] capture)
    {
        var accumulators = new List<HessianAccumulator?>();
        var swapped = new List<(string Local, nn.Module<Tensor, Tensor> Original, InputCapture Wrapper)>();
        try
        {
            for (int gi = 0; gi < SharedInputGroups.Count; gi++)
            {
                var group = SharedInputGroups[gi];
                if (!capture[gi])
                {
                    accumulators.Add(null);
                    continue;
                }
                var original = layer.GetLinear(group[0]);
                long inFeatures = WeightOf(original, Name(layer, group[0])).shape[1];
                string label = Name(layer, group[0]) + (group.Count > 1 ? $" (shared with {string.Join(", ", group.Skip(1))})" : "");
                var acc = new HessianAccumulator(label, inFeatures, hessianDevice);
                accumulators.Add(acc);
                var wrapper = new InputCapture(original, acc);
                layer.ReplaceLinear(group[0], wrapper);
                swapped.Add((group[0], original, wrapper));
            }
            if (swapped.Count > 0)
                foreach (var h in hidden)
                {
                    using var scope = NewDisposeScope();
                    layer.forward(h);
                }
            return accumulators;
        }
        catch
        {
            foreach (var a in accumulators) a?.Dispose();
            throw;
        }
        finally
        {
            foreach (var (local, original, wrapper) in swapped)
            {
                layer.ReplaceLinear(local, original);
                wrapper.Dispose();
            }
        }
    }

    /// <summary>Step 2 for one linear: hand out (W, H), install what comes back.</summary>
    private static void Install(string name, int block, nn.Module<Tensor, Tensor> linear, HessianAccumulator acc, Func<CalibratedLinear, Tensor> quantize)
    {
        using var scope = NewDisposeScope();
        Tensor weight = WeightOf(linear, name);
        // the quantizer reads the weight and returns what to install (possibly the weight itself, overwritten once it has
        // solved): an fp32 weight is handed over as it is (a copy of the 128256-row head would be 2.1 GB more at the
        // peak), others as one fp32 copy
        Tensor w32 = weight.dtype == ScalarType.Float32 ? weight.detach() : weight.detach().to(ScalarType.Float32);
        Tensor installed = quantize(new CalibratedLinear(name, block, w32, acc.Hessian, acc.Count));
        if (!installed.shape.SequenceEqual(weight.shape))
            throw new InvalidOperationException($"{name}: the quantizer returned [{string.Join(", ", installed.shape)}] for a [{string.Join(", ", weight.shape)}] weight");
        weight.copy_(installed.to(weight.dtype, weight.device));
    }

    private static string Name(LlamaDecoderLayer layer, string local) => $"model.layers.{layer.Index}.{local}";

    private static Tensor WeightOf(nn.Module<Tensor, Tensor> module, string name) =>
        module is Linear { weight: { } w } ? w
            : throw new MatqException($"{name} is not a plain linear layer ({module.GetType().Name}); sequential calibration needs the float model");
}
