// Contract: the lifetime of tensors created inside a custom autograd Function's backward. TorchSharp runs CUDA
// backward passes on autograd worker threads, outside every DisposeScope of the training loop, so the tensors a
// backward returns (and the wrappers of the incoming gradient and of the saved variables) would stay alive until the
// GC finalizes them; CUDA memory then fills within a few dozen steps (seen: 77 GB after ~65 QAT steps of a small CNN).
// Each backward starts with Begin() and ends with Hand(...): the handed tensors are disposed when the next backward
// starts on the same thread — by then the engine holds its own references — so at most one backward's tensors per
// thread outlive their use. On the CPU the backward runs on the caller's thread and the loop's scope would free them
// too; disposing twice is harmless.
using static TorchSharp.torch;

namespace Matq.Quantization;

public static class BackwardTensors
{
    [ThreadStatic] private static List<Tensor>? _pending;

    /// <summary>Frees the tensors the previous backward on this thread handed over.</summary>
    public static void Begin()
    {
        if (_pending is null) return;
        foreach (var t in _pending) t.Dispose();
        _pending.Clear();
    }

    /// <summary>Returns <paramref name="outputs"/> after registering them and <paramref name="wrappers"/> (incoming
    /// gradient, saved variables) for disposal at the next backward on this thread; null entries are skipped.</summary>
    public static List<Tensor> Hand(List<Tensor> outputs, params Tensor?[] wrappers)
    {
        _pending ??= [];
        foreach (var t in outputs) if (t is not null) _pending.Add(t);
        foreach (var t in wrappers) if (t is not null) _pending.Add(t);
        return outputs;
    }
}
