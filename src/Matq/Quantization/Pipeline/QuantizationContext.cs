// Contract: everything an algorithm may use during Prepare/Convert — the model, the device, lazily provided
// calibration token windows, a seed, a cancellation token, and (bound by QuantizationRunner for the run) the selected
// linears and the progress reporter that counts blocks and finished layers for the events.
using Matq.Data;
using Matq.Loading;
using Matq.Models;
using static TorchSharp.torch;

namespace Matq.Quantization.Pipeline;

public enum QuantizationEventKind
{
    /// <summary>Convert begins: LayerCount linears in BlockCount blocks.</summary>
    Started,
    BlockStarted,
    /// <summary>One linear is done; Report is set.</summary>
    LayerDone,
    BlockDone,
    /// <summary>Free-form status (e.g. "capturing block inputs"); Message is set.</summary>
    Message,
}

/// <summary>A progress event. Block is the decoder layer index (lm_head: BlockCount − 1 when included).</summary>
public sealed record QuantizationEvent(
    QuantizationEventKind Kind,
    int Block,
    int BlockCount,
    int LayersDone,
    int LayerCount,
    LayerReport? Report = null,
    string? Message = null);

/// <summary>N calibration windows of L token ids each (same L), from <see cref="CalibrationSampler"/> or given directly.</summary>
public sealed class CalibrationTokens
{
    public CalibrationTokens(IReadOnlyList<int[]> windows)
    {
        ArgumentNullException.ThrowIfNull(windows);
        if (windows.Count == 0) throw new MatqException("calibration set is empty: use at least 1 window");
        int len = windows[0].Length;
        if (len == 0) throw new MatqException("calibration windows are empty: use at least 1 token per window");
        if (windows.Any(w => w.Length != len))
            throw new MatqException("calibration windows differ in length: every window must hold the same number of tokens");
        Windows = windows.Select(w => (int[])w.Clone()).ToArray();
        Length = len;
    }

    public IReadOnlyList<int[]> Windows { get; }
    public int Count => Windows.Count;
    public int Length { get; }

    /// <summary>Seeded, disjoint windows of a token stream (see <see cref="CalibrationSampler.Sample"/>).</summary>
    public static CalibrationTokens Sample(ReadOnlySpan<int> tokens, int count, int length, int seed) =>
        new(CalibrationSampler.Sample(tokens, count, length, seed));

    /// <summary>ids [B, L] int64 on <paramref name="device"/>, B ≤ batchSize, in window order (the caller disposes each).</summary>
    public IEnumerable<Tensor> Batches(int batchSize, Device device)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch size must be ≥ 1");
        for (int start = 0; start < Count; start += batchSize)
        {
            int b = Math.Min(batchSize, Count - start);
            var flat = new long[(long)b * Length];
            for (int i = 0; i < b; i++)
                for (int t = 0; t < Length; t++) flat[(long)i * Length + t] = Windows[start + i][t];
            yield return tensor(flat, new long[] { b, Length }, dtype: ScalarType.Int64, device: device);
        }
    }
}

/// <summary>The run's environment. Calibration is produced on first request, so methods that need none never load text.</summary>
public sealed class QuantizationContext
{
    private readonly Func<CalibrationTokens>? _calibrationProvider;
    private CalibrationTokens? _calibration;

    public QuantizationContext(LlamaForCausalLM model, Device? device = null, Func<CalibrationTokens>? calibration = null, int seed = 1234,
        Action<QuantizationEvent>? progress = null, CancellationToken cancellation = default)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Device = device ?? model.Device;
        _calibrationProvider = calibration;
        Seed = seed;
        _sink = progress;
        Cancellation = cancellation;
    }

    public LlamaForCausalLM Model { get; }
    public Device Device { get; }
    public int Seed { get; }
    public CancellationToken Cancellation { get; }

    /// <summary>The ranks of a data-parallel run (`--gpus N`); QAT-based methods split each step's rows over them.</summary>
    public Matq.Distributed.ProcessGroup Group { get; init; } = new Matq.Distributed.SingleProcessGroup();

    private readonly Action<QuantizationEvent>? _sink;
    private IReadOnlyList<SelectedLinear>? _selected;
    private QuantizationProgress? _progress;

    /// <summary>The linears this run quantizes, in model order (bound by <see cref="QuantizationRunner"/> from the config).</summary>
    public IReadOnlyList<SelectedLinear> Selected => _selected ?? throw Unbound();

    /// <summary>The run's progress reporter: block count, layer count and layers done of every event.</summary>
    public QuantizationProgress Progress => _progress ?? throw Unbound();

    /// <summary>Binds the run's selection (called by <see cref="QuantizationRunner"/> before Prepare).</summary>
    internal void Bind(IReadOnlyList<SelectedLinear> selected)
    {
        _selected = selected;
        _progress = new QuantizationProgress(_sink, LinearSelection.BlockCount(Model, selected), selected.Count);
    }

    private static InvalidOperationException Unbound() =>
        new("the selected linears are bound by QuantizationRunner.Run; run the algorithm through it");

    /// <summary>Where a block-walking algorithm stores each finished block and, when it holds finished blocks, what it
    /// resumes from (<see cref="QuantizationAlgorithm.SupportsResume"/>); null = no checkpoint.</summary>
    public QuantizationCheckpoint? Checkpoint { get; init; }

    /// <summary>Where a method without a checkpoint (rtn) offloads each finished linear's codes; null = they stay in
    /// memory (1 byte per weight). Methods with a checkpoint offload to it instead.</summary>
    public CodeSpill? CodeSpill { get; init; }

    /// <summary>Set when the model is block-streamed (<see cref="LlamaBlockStream"/>): only held blocks hold weights, so
    /// an algorithm must <see cref="Hold"/> each block it reads; null = the whole model is resident.</summary>
    public LlamaBlockStream? Blocks { get; init; }

    /// <summary>Keeps block <paramref name="block"/> (embedding −1, layers 0..L−1, head L) resident until disposed;
    /// a no-op for a resident model.</summary>
    public IDisposable Hold(int block) => Blocks?.Hold(block) ?? LlamaBlockStream.NoHold.Instance;

    public bool HasCalibration => _calibration is not null || _calibrationProvider is not null;

    /// <summary>The calibration windows (built once); throws a one-line error naming <paramref name="method"/> when none were given.</summary>
    public CalibrationTokens RequireCalibration(string method)
    {
        if (_calibration is not null) return _calibration;
        if (_calibrationProvider is null)
            throw new MatqException($"method '{method}' needs calibration text: pass --calib-data (e.g. sotu-train or a text file)");
        var calibration = _calibrationProvider();
        Checkpoint?.MatchCalibration(calibration);   // a resume must see the same windows
        return _calibration = calibration;
    }
}

/// <summary>Emits a run's progress events with its block count (decoder layers, plus one for a selected lm_head) and
/// layer count, counting finished layers itself, so no algorithm recounts them.</summary>
public sealed class QuantizationProgress
{
    private readonly Action<QuantizationEvent>? _sink;

    public QuantizationProgress(Action<QuantizationEvent>? sink, int blockCount, int layerCount)
    {
        _sink = sink;
        BlockCount = blockCount;
        LayerCount = layerCount;
    }

    public int BlockCount { get; }
    public int LayerCount { get; }
    public int LayersDone { get; private set; }

    /// <summary>Convert begins at <paramref name="block"/> with <paramref name="layersDone"/> layers already finished (resume).</summary>
    public void Started(int block = 0, int layersDone = 0)
    {
        LayersDone = layersDone;
        Emit(QuantizationEventKind.Started, block);
    }

    /// <summary>Counts <paramref name="layers"/> restored from a checkpoint without an event.</summary>
    public void Restored(int layers) => LayersDone += layers;

    public void BlockStarted(int block) => Emit(QuantizationEventKind.BlockStarted, block);

    public void LayerDone(int block, LayerReport report)
    {
        LayersDone++;
        Emit(QuantizationEventKind.LayerDone, block, report);
    }

    public void BlockDone(int block, string? message = null) => Emit(QuantizationEventKind.BlockDone, block, message: message);

    public void Message(int block, string message) => Emit(QuantizationEventKind.Message, block, message: message);

    private void Emit(QuantizationEventKind kind, int block, LayerReport? report = null, string? message = null) =>
        _sink?.Invoke(new QuantizationEvent(kind, block, BlockCount, LayersDone, LayerCount, report, message));
}
