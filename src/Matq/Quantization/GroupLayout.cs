// Contract: shape helpers shared by the tensor quantizers: per-group parameters [out|1, nGroups] ↔ per-element
// [out, in], for groups of g consecutive input columns whose last group may be short.
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Quantization;

/// <summary>Expands per-group tensors to per-element ones and validates weight shapes.</summary>
public static class GroupLayout
{
    /// <summary>[rows, nGroups] (rows may be 1 to broadcast) → [rows, cols]: column j takes group ⌊j/g⌋.</summary>
    public static Tensor Expand(Tensor perGroup, int groupSize, long cols)
    {
        if (perGroup.dim() != 2) throw new ArgumentException($"per-group tensor must be [rows, nGroups], got [{string.Join(", ", perGroup.shape)}]");
        if (groupSize < 1) throw new ArgumentOutOfRangeException(nameof(groupSize));
        long groups = (cols + groupSize - 1) / groupSize;
        if (perGroup.shape[1] != groups)
            throw new ArgumentException($"per-group tensor has {perGroup.shape[1]} groups; {cols} columns in groups of {groupSize} need {groups}");
        if (groupSize == 1) return perGroup;
        // a broadcast view [rows, nGroups, g] copied once (its backward sums each group: no index-based scatter)
        using var full = perGroup.unsqueeze(2).expand(perGroup.shape[0], groups, groupSize).reshape(perGroup.shape[0], groups * groupSize);
        return full.narrow(1, 0, cols).contiguous();
    }

    /// <summary>Throws unless <paramref name="w"/> is a 2-D [out, in] tensor with in ≥ 1.</summary>
    public static void CheckMatrix(Tensor w, string name)
    {
        if (w.dim() != 2 || w.shape[0] < 1 || w.shape[1] < 1)
            throw new ArgumentException($"{name} must be a non-empty 2-D [out, in] tensor, got [{string.Join(", ", w.shape)}]");
    }

    /// <summary>Full tensor of <paramref name="value"/> like <paramref name="t"/>: dividing by it keeps true IEEE division
    /// on every device (a bare scalar divisor may be turned into a reciprocal multiply on some backends).</summary>
    internal static Tensor Constant(Tensor t, double value) => full_like(t, value);
}
