// The shape and numerics of a Llama-family decoder (Llama, Mistral, Qwen2, SmolLM): an immutable record whose
// constructor validates every field and throws MatqException naming the field. HF config.json I/O is in Loading/HfLlamaConfig.
namespace Matq.Models;

/// <summary>Which HF family a config came from; it decides the defaults and the bias layout.</summary>
public enum LlamaFamily { Llama, Mistral, Qwen2 }

/// <summary>Rotary position scaling. Linear divides positions by <see cref="LlamaConfig.RopeFactor"/>.</summary>
public enum RopeScaling { Default, Linear }

public sealed record LlamaConfig
{
    public LlamaFamily Family { get; }
    public int HiddenSize { get; }
    public int IntermediateSize { get; }
    public int NumLayers { get; }
    public int NumHeads { get; }
    public int NumKvHeads { get; }
    public int HeadDim { get; }
    public double RmsNormEps { get; }
    public int VocabSize { get; }
    public int MaxPositionEmbeddings { get; }
    public bool TieWordEmbeddings { get; }
    /// <summary>Bias on q/k/v projections (Llama attention_bias; always for Qwen2; never for Mistral).</summary>
    public bool QkvBias { get; }
    /// <summary>Bias on o_proj (Llama attention_bias; never for Qwen2/Mistral).</summary>
    public bool OutputBias { get; }
    public bool MlpBias { get; }
    public double RopeTheta { get; }
    public RopeScaling RopeScaling { get; }
    /// <summary>Linear rope factor (1 for default rope).</summary>
    public double RopeFactor { get; }
    /// <summary>
    /// Sliding-window size when the checkpoint uses one that is shorter than its context. Sliding-window attention is
    /// not implemented: full causal attention equals it for sequences up to the window, so longer inputs are refused.
    /// </summary>
    public int? SlidingWindow { get; }
    /// <summary>config.json keys we do not model (token ids, generation hints), kept as raw JSON text and written back.</summary>
    public IReadOnlyDictionary<string, string> Extra { get; }

    public int NumKvGroups => NumHeads / NumKvHeads;
    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
    /// <summary>Longest sequence (cache included) that forward accepts: the sliding window when one is set.</summary>
    public int? MaxSequenceLength => SlidingWindow;

    public LlamaConfig(
        int hiddenSize, int intermediateSize, int numLayers, int numHeads, int vocabSize,
        LlamaFamily family = LlamaFamily.Llama,
        int? numKvHeads = null, int? headDim = null, double rmsNormEps = 1e-6, int maxPositionEmbeddings = 2048,
        bool tieWordEmbeddings = false, bool attentionBias = false, bool mlpBias = false,
        double ropeTheta = 10000.0, RopeScaling ropeScaling = RopeScaling.Default, double ropeFactor = 1.0,
        int? slidingWindow = null, IReadOnlyDictionary<string, string>? extra = null)
    {
        Family = family;
        HiddenSize = Positive(hiddenSize, "hidden_size");
        IntermediateSize = Positive(intermediateSize, "intermediate_size");
        NumLayers = Positive(numLayers, "num_hidden_layers");
        NumHeads = Positive(numHeads, "num_attention_heads");
        VocabSize = Positive(vocabSize, "vocab_size");
        NumKvHeads = Positive(numKvHeads ?? numHeads, "num_key_value_heads");
        if (NumHeads % NumKvHeads != 0)
            throw new MatqException($"num_key_value_heads {NumKvHeads} must divide num_attention_heads {NumHeads} (grouped-query attention)");
        if (headDim is null && hiddenSize % numHeads != 0)
            throw new MatqException($"hidden_size {hiddenSize} is not divisible by num_attention_heads {numHeads}; set head_dim explicitly");
        HeadDim = Positive(headDim ?? hiddenSize / numHeads, "head_dim");
        if (HeadDim % 2 != 0)
            throw new MatqException($"head_dim {HeadDim} must be even (rotary embeddings rotate pairs of dimensions)");
        if (!(rmsNormEps > 0) || double.IsInfinity(rmsNormEps))
            throw new MatqException($"rms_norm_eps {rmsNormEps} must be a positive finite number");
        RmsNormEps = rmsNormEps;
        MaxPositionEmbeddings = Positive(maxPositionEmbeddings, "max_position_embeddings");
        TieWordEmbeddings = tieWordEmbeddings;
        // HF layouts: Llama's attention_bias covers q/k/v/o; Qwen2 always has q/k/v bias and no o bias; Mistral has none
        QkvBias = family switch { LlamaFamily.Qwen2 => true, LlamaFamily.Llama => attentionBias, _ => false };
        OutputBias = family == LlamaFamily.Llama && attentionBias;
        MlpBias = family == LlamaFamily.Llama && mlpBias;
        if (!(ropeTheta > 0) || double.IsInfinity(ropeTheta))
            throw new MatqException($"rope_theta {ropeTheta} must be a positive finite number");
        RopeTheta = ropeTheta;
        RopeScaling = ropeScaling;
        if (!(ropeFactor > 0) || double.IsInfinity(ropeFactor))
            throw new MatqException($"rope factor {ropeFactor} must be a positive finite number");
        if (ropeScaling == RopeScaling.Default && ropeFactor != 1.0)
            throw new MatqException($"rope factor {ropeFactor} needs rope type 'linear' (the default rope has no factor)");
        RopeFactor = ropeFactor;
        if (slidingWindow is int w)
        {
            Positive(w, "sliding_window");
            // a window at least as long as the context never masks anything: plain causal attention
            SlidingWindow = w < MaxPositionEmbeddings ? w : null;
        }
        Extra = extra ?? new Dictionary<string, string>();
    }

    private static int Positive(int value, string field) =>
        value > 0 ? value : throw new MatqException($"{field} {value} must be a positive integer");

    public bool Equals(LlamaConfig? other) =>
        other is not null && Family == other.Family && HiddenSize == other.HiddenSize && IntermediateSize == other.IntermediateSize
        && NumLayers == other.NumLayers && NumHeads == other.NumHeads && NumKvHeads == other.NumKvHeads && HeadDim == other.HeadDim
        && RmsNormEps == other.RmsNormEps && VocabSize == other.VocabSize && MaxPositionEmbeddings == other.MaxPositionEmbeddings
        && TieWordEmbeddings == other.TieWordEmbeddings && QkvBias == other.QkvBias && OutputBias == other.OutputBias
        && MlpBias == other.MlpBias && RopeTheta == other.RopeTheta && RopeScaling == other.RopeScaling && RopeFactor == other.RopeFactor
        && SlidingWindow == other.SlidingWindow
        && Extra.Count == other.Extra.Count && Extra.All(kv => other.Extra.TryGetValue(kv.Key, out var v) && v == kv.Value);

    public override int GetHashCode() => HashCode.Combine(Family, HiddenSize, IntermediateSize, NumLayers, NumHeads, NumKvHeads, HeadDim, VocabSize);

    /// <summary>Number of parameters, counting a tied embedding once.</summary>
    public long ParameterCount()
    {
        long h = HiddenSize, kv = KvDim, q = QDim, m = IntermediateSize;
        long attn = h * q + 2 * h * kv + q * h + (QkvBias ? q + 2 * kv : 0) + (OutputBias ? h : 0);
        long mlp = 3 * h * m + (MlpBias ? 2 * m + h : 0);
        long layer = attn + mlp + 2 * h;
        return NumLayers * layer + VocabSize * h * (TieWordEmbeddings ? 1 : 2) + h;
    }
}
