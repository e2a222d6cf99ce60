// Rotary position embeddings in HF's "rotate_half" convention: for x [B, H, T, D], x*cos + rotate_half(x)*sin with
// inv_freq[i] = 1/theta^(2i/D) (then scaled per RopeSpec: ÷ factor for linear, wavelength bands for llama3) and
// cos/sin tables computed once in fp32.
using Matq.Runtime.Models;
using static TorchSharp.torch;

namespace Matq.Models;

/// <summary>
/// Not a Module on purpose: Module.to(dtype) would cast the fp32 tables. Tables live per (device, dtype), grow on
/// demand (doubling) and are detached from every DisposeScope; HF also computes cos/sin in fp32 and casts to x's dtype.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<(string Device, ScalarType Dtype), (Tensor Cos, Tensor Sin)> _tables = new();
    private long _length;

    public int HeadDim { get; }
    public RopeSpec Spec { get; }
    public double Theta => Spec.Theta;
    public double Factor => Spec.Factor;

    public RotaryEmbedding(int headDim, double theta, double linearFactor = 1.0, long initialLength = 0)
        : this(headDim, new RopeSpec(theta, linearFactor == 1.0 ? RopeScaling.Default : RopeScaling.Linear, linearFactor), initialLength)
    {
    }

    public RotaryEmbedding(int headDim, RopeSpec spec, long initialLength = 0)
    {
        HeadDim = headDim;
        Spec = spec;
        _length = Math.Max(initialLength, 0);
    }

    /// <summary>The rope of full-attention layers.</summary>
    public static RotaryEmbedding For(LlamaConfig c) => new(c.HeadDim, c.Rope, Math.Min(c.MaxPositionEmbeddings, 4096));

    /// <summary>inv_freq [D/2] in fp32, computed the way HF does (fp32 exponent, fp32 power).</summary>
    public Tensor InverseFrequencies(Device? device = null)
    {
        using var scope = NewDisposeScope();
        var exponent = arange(0, HeadDim, 2, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32) / HeadDim;
        var invFreq = 1.0f / pow(full(1, (float)Theta, dtype: ScalarType.Float32, device: device), exponent);
        if (Spec.Type == RopeScaling.Linear) invFreq = invFreq / (float)Factor;
        else if (Spec.Type == RopeScaling.Llama3)
        {
            // the band rescaling elementwise in fp32 (RopeSpec mirrors HF's torch ops)
            var host = invFreq.cpu().data<float>().ToArray();
            invFreq = tensor(host.Select(Spec.Scale).ToArray(), dtype: ScalarType.Float32, device: device);
        }
        return invFreq.MoveToOuterDisposeScope();
    }

    /// <summary>cos, sin as [1, 1, T, D] for positions start..start+T-1, in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public (Tensor Cos, Tensor Sin) ForRange(long start, long length, Device device, ScalarType dtype)
    {
        var (cos, sin) = Tables(start + length, device, dtype);
        return (cos.narrow(0, start, length).unsqueeze(0).unsqueeze(0), sin.narrow(0, start, length).unsqueeze(0).unsqueeze(0));
    }

    /// <summary>cos, sin as [B, 1, T, D] for explicit positions [B, T] (or [T]), int64.</summary>
    public (Tensor Cos, Tensor Sin) ForPositions(Tensor positions, Device device, ScalarType dtype)
    {
        if (positions.ndim == 1) positions = positions.unsqueeze(0);
        if (positions.ndim != 2) throw new ArgumentException($"positions must be [T] or [B, T], got [{string.Join(", ", positions.shape)}]");
        long max = positions.numel() == 0 ? 0 : positions.max().item<long>() + 1;
        var (cos, sin) = Tables(max, device, dtype);
        var idx = positions.to(ScalarType.Int64).to(device);
        // table[idx] -> [B, T, D]; unsqueeze the head axis so it broadcasts over [B, H, T, D]
        return (cos[idx].unsqueeze(1), sin[idx].unsqueeze(1));
    }

    private (Tensor Cos, Tensor Sin) Tables(long needed, Device device, ScalarType dtype)
    {
        lock (_gate)
        {
            var key = (device.ToString(), dtype);
            if (needed > _length)
            {
                long n = Math.Max(_length, 256);
                while (n < needed) n *= 2;
                _length = n;
                Clear();
            }
            if (_tables.TryGetValue(key, out var t)) return t;
            using var scope = NewDisposeScope();
            // [T] x [D/2] outer product in fp32, duplicated to [T, D] (rotate_half pairs dim i with i + D/2)
            var pos = arange(0, _length, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32);
            var freqs = outer(pos, InverseFrequencies(device));
            var emb = cat(new[] { freqs, freqs }, 1);
            var cos = emb.cos().to(dtype).DetachFromDisposeScope();
            var sin = emb.sin().to(dtype).DetachFromDisposeScope();
            _tables[key] = (cos, sin);
            return (cos, sin);
        }
    }

    /// <summary>q*cos + rotate_half(q)*sin for x [B, H, T, D] and cos/sin broadcastable to it.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat(new[] { x2.neg(), x1 }, -1);
        return x * cos + rotated * sin;
    }

    private void Clear()
    {
        foreach (var (c, s) in _tables.Values) { c.Dispose(); s.Dispose(); }
        _tables.Clear();
    }

    public void Dispose()
    {
        lock (_gate) Clear();
    }
}
