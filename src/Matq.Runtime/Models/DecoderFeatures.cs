// The parts of the decoder description that vary by family beyond Llama's shape: rotary scaling (RopeSpec), the MLP
// activation, and the per-family structural traits (norm offset, sandwich norms, embedding scale, q/k norms, fused
// projections) that LlamaConfig derives from its family. Every backend reads these through LlamaConfig.
namespace Matq.Runtime.Models;

/// <summary>Which HF family a config came from; it decides the structural traits (<see cref="FamilyTraits"/>) and the bias layout.</summary>
public enum LlamaFamily { Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Phi3 }

/// <summary>Rotary position scaling. Linear divides positions by the factor; Llama3 rescales frequencies by wavelength band.</summary>
public enum RopeScaling { Default, Linear, Llama3 }

/// <summary>The gated MLP's activation: SiLU (SwiGLU) or GELU with the tanh approximation (GeGLU, HF "gelu_pytorch_tanh").</summary>
public enum Activation { Silu, GeluTanh }

/// <summary>
/// One rotary embedding: theta and scaling. Llama3 uses Factor, LowFreqFactor, HighFreqFactor and OriginalMaxPositions
/// (HF's _compute_llama3_parameters); Linear uses Factor; Default uses only Theta (Factor 1).
/// </summary>
public sealed record RopeSpec
{
    public double Theta { get; }
    public RopeScaling Type { get; }
    public double Factor { get; }
    public double LowFreqFactor { get; }
    public double HighFreqFactor { get; }
    public int OriginalMaxPositions { get; }

    public RopeSpec(double theta, RopeScaling type = RopeScaling.Default, double factor = 1.0,
        double lowFreqFactor = 1.0, double highFreqFactor = 4.0, int originalMaxPositions = 8192)
    {
        if (!(theta > 0) || double.IsInfinity(theta))
            throw new MatqException($"rope_theta {theta} must be a positive finite number");
        if (!(factor > 0) || double.IsInfinity(factor))
            throw new MatqException($"rope factor {factor} must be a positive finite number");
        if (type == RopeScaling.Default && factor != 1.0)
            throw new MatqException($"rope factor {factor} needs rope type 'linear' or 'llama3' (the default rope has no factor)");
        if (type == RopeScaling.Llama3)
        {
            if (!(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor) || double.IsInfinity(highFreqFactor))
                throw new MatqException($"rope low_freq_factor {lowFreqFactor} and high_freq_factor {highFreqFactor} must satisfy 0 < low < high (rope type 'llama3')");
            if (originalMaxPositions <= 0)
                throw new MatqException($"rope original_max_position_embeddings {originalMaxPositions} must be a positive integer (rope type 'llama3')");
        }
        Theta = theta;
        Type = type;
        Factor = type == RopeScaling.Default ? 1.0 : factor;
        // fields that a type does not use are normalized, so equal ropes compare equal whatever the file carried
        LowFreqFactor = type == RopeScaling.Llama3 ? lowFreqFactor : 1.0;
        HighFreqFactor = type == RopeScaling.Llama3 ? highFreqFactor : 4.0;
        OriginalMaxPositions = type == RopeScaling.Llama3 ? originalMaxPositions : 8192;
    }

    /// <summary>inv_freq [D/2] in fp32 exactly as HF computes it (fp32 power; llama3 band rescaling in fp32).</summary>
    public float[] InverseFrequencies(int headDim)
    {
        int half = headDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
            inv[i] = Scale(1f / MathF.Pow((float)Theta, (float)(2 * i) / headDim));
        return inv;
    }

    /// <summary>The scaling applied to one unscaled inverse frequency (identity for the default rope).</summary>
    public float Scale(float invFreq) => Type switch
    {
        RopeScaling.Linear => invFreq / (float)Factor,
        RopeScaling.Llama3 => Llama3(invFreq),
        _ => invFreq,
    };

    // wavelength bands: long wavelengths (> original/low) are divided by the factor, short ones (< original/high) kept,
    // the band between interpolates smoothly. Mirrors HF's torch ops in fp32 (2π as a Python float times fp32 tensors).
    private float Llama3(float invFreq)
    {
        float factor = (float)Factor, low = (float)LowFreqFactor, high = (float)HighFreqFactor, old = OriginalMaxPositions;
        float lowWavelen = old / low, highWavelen = old / high;
        float wavelen = (float)(2 * Math.PI) / invFreq;
        float scaled = wavelen > lowWavelen ? invFreq / factor : invFreq;
        float smooth = (old / wavelen - low) / (high - low);
        float smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
        bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
        return medium ? smoothed : scaled;
    }

    public override string ToString() => Type switch
    {
        RopeScaling.Default => $"default(theta {Theta})",
        RopeScaling.Linear => $"linear(theta {Theta}, factor {Factor})",
        _ => $"llama3(theta {Theta}, factor {Factor}, low {LowFreqFactor}, high {HighFreqFactor}, original {OriginalMaxPositions})",
    };
}

/// <summary>
/// Structural traits of a family, fixed by its HF modeling code (not by config.json values): the table a family adds
/// a row to. Config-valued features (windows, rope, soft-caps, scalars, biases, tied head) are LlamaConfig fields.
/// </summary>
/// <param name="NormOffset">RMSNorm multiplies by (1 + w), computed in fp32 (Gemma).</param>
/// <param name="SandwichNorms">post_attention_layernorm normalizes the attention output, and pre_/post_feedforward_layernorm wrap the MLP (Gemma 2/3).</param>
/// <param name="ScaleEmbeddings">Embeddings are multiplied by √hidden in the model dtype (Gemma).</param>
/// <param name="QkNorm">RMSNorm over head_dim on q and k before rope: self_attn.q_norm / k_norm (Qwen 3, Gemma 3).</param>
/// <param name="FusedProjections">The checkpoint stores self_attn.qkv_proj and mlp.gate_up_proj (Phi-3); split at load, fused on save.</param>
/// <param name="DefaultActivation">The MLP activation the family's config names by default.</param>
public sealed record FamilyTraits(bool NormOffset, bool SandwichNorms, bool ScaleEmbeddings, bool QkNorm, bool FusedProjections, Activation DefaultActivation)
{
    public static FamilyTraits For(LlamaFamily family) => family switch
    {
        LlamaFamily.Gemma2 => new(true, true, true, false, false, Activation.GeluTanh),
        LlamaFamily.Gemma3 => new(true, true, true, true, false, Activation.GeluTanh),
        LlamaFamily.Qwen3 => new(false, false, false, true, false, Activation.Silu),
        LlamaFamily.Phi3 => new(false, false, false, false, true, Activation.Silu),
        _ => new(false, false, false, false, false, Activation.Silu),
    };
}

/// <summary>
/// A per-layer flag list held compactly, so a config claiming 2^31 layers costs nothing until a layer is asked for:
/// layer i is <c>i &gt;= From &amp;&amp; Cycle[i % Cycle.Length]</c>. An explicit list (layer_types) is its own cycle.
/// </summary>
public sealed class LayerPattern : IReadOnlyList<bool>
{
    private readonly bool[] _cycle;
    private readonly int _from;

    public LayerPattern(int count, IReadOnlyList<bool> cycle, int from = 0)
    {
        if (cycle.Count == 0) throw new ArgumentException("a layer pattern needs at least one entry", nameof(cycle));
        Count = count;
        _cycle = cycle.ToArray();
        _from = Math.Max(0, from);
    }

    public static LayerPattern Uniform(int count, bool value) => new(count, [value]);

    public int Count { get; }
    public bool this[int index] => (uint)index < (uint)Count ? index >= _from && _cycle[index % _cycle.Length] : throw new ArgumentOutOfRangeException(nameof(index));

    /// <summary>True when some layers are flagged and others are not (checks one period past the start, enough for any pattern).</summary>
    public bool Mixed
    {
        get
        {
            long n = Math.Min(Count, (long)_from + 2L * _cycle.Length);
            bool any = false, all = true;
            for (int i = 0; i < n; i++) { bool v = this[i]; any |= v; all &= v; }
            return any && !all;
        }
    }

    public IEnumerator<bool> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
