// One-file training checkpoint (safetensors, written to a temp file then renamed): fp32 master weights
// "master.<name>", the optimizer state as opaque bytes "optimizer" (TorchSharp's own format), the torch RNG
// state "rng", and the trainer's counters and loss history as JSON in the header metadata "matq.train".
using System.Runtime.InteropServices;
using System.Text.Json;
using Matq.Formats.Safetensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Training;

/// <summary>One point of a loss curve; Lr is 0 for validation points.</summary>
public sealed record LossPoint(int Step, double Loss, double Lr = 0);

/// <summary>Everything besides tensors that a resumed run needs to continue exactly.</summary>
public sealed record TrainState
{
    /// <summary>Optimizer updates done so far (= the next step index; the data position is a function of it).</summary>
    public int Step { get; init; }
    public int PlannedSteps { get; init; }
    public long Seed { get; init; }
    public long TokensSeen { get; init; }
    /// <summary>Training wall time so far, summed over resumed segments.</summary>
    public double ElapsedSeconds { get; init; }
    /// <summary>What must not change across a resume (architecture, batch, context, tokenizer, lr); compared verbatim.</summary>
    public string RunKey { get; init; } = "";
    public List<LossPoint> Train { get; init; } = new();
    public List<LossPoint> Validation { get; init; } = new();
}

public static class TrainCheckpoint
{
    public const string FileName = "checkpoint.safetensors";
    private const string FormatKey = "format";
    private const string FormatValue = "matq-train-checkpoint-v1";
    private const string StateKey = "matq.train";
    private const string MasterPrefix = "master.";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public static void Save(string path, IReadOnlyList<(string Name, Tensor Master)> masters, optim.Optimizer optimizer, TrainState state)
    {
        var w = new SafetensorsWriter();
        w.Metadata[FormatKey] = FormatValue;
        w.Metadata[StateKey] = JsonSerializer.Serialize(state, Json);
        foreach (var (name, p) in masters)
        {
            using var cpu = p.detach().cpu().contiguous();
            w.AddFloat32(MasterPrefix + name, cpu.shape, cpu.data<float>().ToArray());
        }
        using (var ms = new MemoryStream())
        {
            using (var bw = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
                ((OptimizerHelper)optimizer).save_state_dict(bw);
            w.Add("optimizer", SafetensorsDtype.U8, [ms.Length], ms.ToArray());
        }
        using (var rng = torch.get_rng_state())
            w.Add("rng", SafetensorsDtype.U8, [rng.numel()], rng.bytes.ToArray());
        w.Write(path);   // temp file + rename: a crash mid-write leaves the previous checkpoint intact
    }

    /// <summary>Reads only the JSON state (cheap; used to decide whether a resume is possible).</summary>
    public static TrainState ReadState(string path)
    {
        using var f = OpenChecked(path);
        return ParseState(f, path);
    }

    /// <summary>Loads masters (validated by name, shape, dtype), optimizer state and RNG; returns the trainer state.</summary>
    public static TrainState Load(string path, IReadOnlyList<(string Name, Tensor Master)> masters, optim.Optimizer optimizer)
    {
        using var f = OpenChecked(path);
        var state = ParseState(f, path);
        var expected = masters.Select(m => MasterPrefix + m.Name).ToHashSet(StringComparer.Ordinal);
        var stored = f.Tensors.Where(t => t.Name.StartsWith(MasterPrefix, StringComparison.Ordinal)).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        if (!expected.SetEquals(stored))
        {
            var diff = expected.Except(stored).Concat(stored.Except(expected)).First();
            throw new MatqException($"{path} does not match this model (tensor {diff} differs): it was written for another architecture; remove it or use another --out");
        }
        using (no_grad())
            foreach (var (name, p) in masters)
            {
                var info = f.Get(MasterPrefix + name);
                if (info.Dtype != SafetensorsDtype.F32 || !info.Shape.SequenceEqual(p.shape))
                    throw new MatqException($"{path}: {info.Name} is {SafetensorsDtypes.ToName(info.Dtype)}{info.ShapeText}, expected F32[{string.Join(", ", p.shape)}]");
                using var t = tensor(f.ReadFloat32(info.Name), p.shape, ScalarType.Float32);
                p.copy_(t);
            }
        var opt = f.ReadBytes("optimizer");
        using (var br = new BinaryReader(new MemoryStream(opt)))
            ((OptimizerHelper)optimizer).load_state_dict(br);
        var rng = f.ReadBytes("rng");
        using (var r = tensor(rng, ScalarType.Byte))
            torch.set_rng_state(r);
        return state;
    }

    private static SafetensorsFile OpenChecked(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"no checkpoint at {path}: nothing to resume (start without --resume)");
        var f = SafetensorsFile.Open(path);
        if (!f.Metadata.TryGetValue(FormatKey, out var fmt) || fmt != FormatValue || !f.Contains("optimizer") || !f.Contains("rng"))
        {
            f.Dispose();
            throw new MatqException($"{path} is not a matq training checkpoint ({FormatValue})");
        }
        return f;
    }

    private static TrainState ParseState(SafetensorsFile f, string path)
    {
        try
        {
            return f.Metadata.TryGetValue(StateKey, out var json) ? JsonSerializer.Deserialize<TrainState>(json, Json)!
                : throw new MatqException($"{path} has no {StateKey} metadata");
        }
        catch (JsonException e)
        {
            throw new MatqException($"{path}: the trainer state is not valid JSON ({e.Message})");
        }
    }
}
