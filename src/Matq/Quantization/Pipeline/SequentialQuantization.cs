// Contract: the block walk shared by the methods that quantize through SequentialCalibrator (gptq, athena, matquant
// with the athena base): the context's selection, progress events (Started, BlockStarted, LayerDone, BlockDone), cancellation, and the
// resume checkpoint — each finished block's results and installed weights are committed; a checkpoint holding k finished
// blocks restores them (results as stored, weights bit-identical) and the walk quantizes from block k on.
// Layer-parallel (a context group of W ranks, `--gpus W`): every rank captures each block's Hessians and propagates the
// block as before, but quantizes only the linears it owns (the k-th linear of the run belongs to rank k mod W); the
// owner then broadcasts the weight to install and the result, so every rank installs the same weights and holds the
// same results as the one-process walk: the artifact is the one-process artifact, bit for bit on identical devices.
using Matq.Calibration;
using static TorchSharp.torch;

namespace Matq.Quantization.Pipeline;

public static class SequentialQuantization
{
    /// <summary>
    /// Runs <paramref name="quantize"/> on every selected linear of the run (<see cref="QuantizationContext.Selected"/>), block by block, and returns
    /// the results in model order. <paramref name="quantize"/> returns the linear's result and the weight to install
    /// (fp32 [out, in]) for the blocks after it; its tensors live in the calibrator's per-linear dispose scope.
    /// </summary>
    public static IReadOnlyList<QuantizedLinearResult> Run(QuantizationContext context, string method, int batchSize,
        Func<CalibratedLinear, (QuantizedLinearResult Result, Tensor Installed)> quantize)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(quantize);
        var model = context.Model;
        var selected = context.Selected;
        var progress = context.Progress;
        var names = selected.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var calibration = context.RequireCalibration(method);
        int blockCount = progress.BlockCount;
        var checkpoint = context.Checkpoint;
        int resume = checkpoint?.BlocksDone ?? 0;
        if (resume > blockCount)
            throw new MatqException($"the checkpoint {checkpoint!.Folder} holds {resume} finished blocks, this run has {blockCount}; run without --resume to start over");
        var results = new List<QuantizedLinearResult>(selected.Count);
        for (int b = 0; b < resume; b++) results.AddRange(checkpoint!.Results(b));
        progress.Started(Math.Min(resume, Math.Max(0, blockCount - 1)), results.Count);
        if (resume > 0)
            progress.Message(Math.Min(resume, blockCount - 1), $"resuming at block {resume + 1}/{blockCount}: blocks 1..{resume} restored from the checkpoint");
        int block = -1, blockStart = results.Count;
        double solveS = 0, methodS = 0;   // per block: the solvers' own seconds, and the method's (solve + its results)
        var clock = new System.Diagnostics.Stopwatch();
        var group = context.Group;
        int owned = -1;
        (QuantizedLinearResult, Tensor) Quantize(CalibratedLinear linear)
        {
            if (group.WorldSize == 1) return quantize(linear);
            int owner = ++owned % group.WorldSize;
            QuantizedLinearResult? mine = null;
            Tensor installed;
            if (group.Rank == owner)
            {
                (mine, installed) = quantize(linear);
                installed = installed.to_type(ScalarType.Float32).contiguous();
            }
            else installed = zeros(linear.Weight.shape, ScalarType.Float32, linear.Weight.device);
            group.Broadcast(installed, owner);
            return (QuantizedLinearResult.FromBytes(group.BroadcastBytes(mine?.ToBytes(), owner)), installed);
        }
        SequentialCalibrator.Run(model, calibration.Windows, linear =>
        {
            context.Cancellation.ThrowIfCancellationRequested();
            if (linear.Block != block)
            {
                block = linear.Block;
                progress.BlockStarted(block);
            }
            clock.Restart();
            var (result, installed) = Quantize(linear);
            methodS += clock.Elapsed.TotalSeconds;
            solveS += result.Report.Seconds;
            results.Add(result);
            progress.LayerDone(block, result.Report);
            return installed;
        }, batchSize, context.Device, progress: message => progress.Message(Math.Max(block, 0), message), select: names.Contains, includeHead: names.Contains("lm_head"), resumeBlocks: resume,
        restore: b => checkpoint!.RestoreInstalled(b, model),
        blockDone: b =>
        {
            double commitS = 0;
            if (checkpoint is not null)
            {
                clock.Restart();
                var committed = results.GetRange(blockStart, results.Count - blockStart);
                checkpoint.CommitInstalled(b, committed, model);
                // the block's codes live in its checkpoint file from now on: memory holds one block's, not the model's
                var offloaded = checkpoint.Offload(b, committed);
                for (int k = 0; k < offloaded.Count; k++) results[blockStart + k] = offloaded[k];
                commitS = clock.Elapsed.TotalSeconds;
            }
            blockStart = results.Count;
            if (methodS > 0)
                progress.Message(Math.Max(block, 0), string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"block {b + 1} quantize detail: solver {solveS:F2} s, the method's results {methodS - solveS:F2} s (the rest of quantize: installing weights, Hessians){(checkpoint is null ? "" : $"; checkpoint commit {commitS:F2} s")}"));
            (solveS, methodS) = (0, 0);
            Runtime.HostMemoryRelease.AfterBlock();   // the block's freed buffers back to the OS before the next is held
            if (block == b) progress.BlockDone(b);
        }, hold: context.Hold);
        return results;
    }
}
