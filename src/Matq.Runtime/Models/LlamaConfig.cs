// The decoder description: shape and numerics of a Llama-family decoder (Llama 1-3, Mistral, Qwen 2/2.5/3, Gemma 2/3,
// Phi-3, SmolLM) in one immutable record whose constructor validates every field and throws MatqException naming it.
// Structural traits come from the family (FamilyTraits); windows, rope, soft-caps and scalars from config.json values.
// HF config.json I/O (both key forms, one reader per family) is in Loading/HfLlamaConfig; every backend reads this type.
namespace Matq.Runtime.Models;

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
    /// <summary>Bias on q/k/v projections (attention_bias for Llama/Qwen3/Gemma; always for Qwen2; never for Mistral/Phi-3).</summary>
    public bool QkvBias { get; }
    /// <summary>Bias on o_proj (attention_bias for Llama/Qwen3/Gemma; never for Qwen2/Mistral/Phi-3).</summary>
    public bool OutputBias { get; }
    public bool MlpBias { get; }
    /// <summary>The rope of full-attention layers (and of every layer unless <see cref="LocalRope"/> differs).</summary>
    public RopeSpec Rope { get; }
    /// <summary>The rope of sliding-window layers (Gemma 3's rope_local_base_freq); equals <see cref="Rope"/> otherwise.</summary>
    public RopeSpec LocalRope { get; }
    public double RopeTheta => Rope.Theta;
    public RopeScaling RopeScaling => Rope.Type;
    /// <summary>Rope factor (1 for default rope).</summary>
    public double RopeFactor => Rope.Factor;
    /// <summary>
    /// Sliding-window size W of the layers marked in <see cref="SlidingLayers"/>, when shorter than the context: query i
    /// sees keys j with i − W &lt; j ≤ i (HF's convention). Null: every layer attends to the full causal context.
    /// </summary>
    public int? SlidingWindow { get; }
    /// <summary>Per layer: true for a "sliding_attention" layer type (its window is <see cref="SlidingWindow"/>, its rope <see cref="LocalRope"/>).</summary>
    public LayerPattern SlidingLayers { get; }
    public Activation Activation { get; }
    /// <summary>Attention-logit soft-cap c: scores → tanh(scores / c)·c before the mask (Gemma 2); null = none.</summary>
    public double? AttnLogitSoftcap { get; }
    /// <summary>Final-logit soft-cap c: logits → tanh(logits / c)·c (Gemma 2); null = none.</summary>
    public double? FinalLogitSoftcap { get; }
    /// <summary>Attention scale is QueryPreAttnScalar^−½ (Gemma); null = head_dim^−½.</summary>
    public double? QueryPreAttnScalar { get; }
    /// <summary>config.json keys we do not model (token ids, generation hints), kept as raw JSON text and written back.</summary>
    public IReadOnlyDictionary<string, string> Extra { get; }

    public FamilyTraits Traits => FamilyTraits.For(Family);
    public bool NormOffset => Traits.NormOffset;
    public bool SandwichNorms => Traits.SandwichNorms;
    public bool ScaleEmbeddings => Traits.ScaleEmbeddings;
    public bool QkNorm => Traits.QkNorm;
    public bool FusedProjections => Traits.FusedProjections;

    public int NumKvGroups => NumHeads / NumKvHeads;
    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;
    /// <summary>Attention scale applied to q·k.</summary>
    public double AttentionScale => 1.0 / Math.Sqrt(QueryPreAttnScalar ?? HeadDim);
    /// <summary>The window of layer <paramref name="layer"/>, null for full attention.</summary>
    public int? WindowOf(int layer) => SlidingLayers[layer] ? SlidingWindow : null;
    /// <summary>The rope of layer <paramref name="layer"/>.</summary>
    public RopeSpec RopeOf(int layer) => SlidingLayers[layer] ? LocalRope : Rope;
    /// <summary>Longest sequence (cache included) that the TorchSharp forward accepts: null, sliding windows are implemented there.</summary>
    public int? MaxSequenceLength => null;

    public LlamaConfig(
        int hiddenSize, int intermediateSize, int numLayers, int numHeads, int vocabSize,
        LlamaFamily family = LlamaFamily.Llama,
        int? numKvHeads = null, int? headDim = null, double rmsNormEps = 1e-6, int maxPositionEmbeddings = 2048,
        bool tieWordEmbeddings = false, bool attentionBias = false, bool mlpBias = false,
        double ropeTheta = 10000.0, RopeScaling ropeScaling = RopeScaling.Default, double ropeFactor = 1.0,
        int? slidingWindow = null, IReadOnlyDictionary<string, string>? extra = null,
        RopeSpec? rope = null, RopeSpec? localRope = null, IReadOnlyList<bool>? slidingLayers = null,
        Activation? activation = null, double? attnLogitSoftcap = null, double? finalLogitSoftcap = null,
        double? queryPreAttnScalar = null)
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
        // HF layouts: attention_bias covers q/k/v/o (Llama, Qwen3, Gemma); Qwen2 always has q/k/v bias and no o bias;
        // Mistral and Phi-3 have none
        bool allBias = family is LlamaFamily.Llama or LlamaFamily.Qwen3 or LlamaFamily.Gemma2 or LlamaFamily.Gemma3;
        QkvBias = family == LlamaFamily.Qwen2 || (allBias && attentionBias);
        OutputBias = allBias && attentionBias;
        MlpBias = family == LlamaFamily.Llama && mlpBias;
        Rope = rope ?? new RopeSpec(ropeTheta, ropeScaling, ropeFactor);
        LocalRope = localRope ?? Rope;
        if (slidingLayers is not null && slidingLayers.Count != numLayers)
            throw new MatqException($"layer_types has {slidingLayers.Count} entries but num_hidden_layers is {numLayers}");
        if (slidingWindow is int w)
        {
            Positive(w, "sliding_window");
            // a window at least as long as the context never masks anything: plain causal attention
            SlidingWindow = w < MaxPositionEmbeddings ? w : null;
        }
        // without layer types, every layer slides when a window applies (Mistral, Qwen2 use_sliding_window, Phi-3)
        SlidingLayers = slidingLayers as LayerPattern ?? (slidingLayers is null ? LayerPattern.Uniform(numLayers, SlidingWindow is not null) : new LayerPattern(numLayers, slidingLayers));
        Activation = activation ?? FamilyTraits.For(family).DefaultActivation;
        AttnLogitSoftcap = PositiveOrNull(attnLogitSoftcap, "attn_logit_softcapping");
        FinalLogitSoftcap = PositiveOrNull(finalLogitSoftcap, "final_logit_softcapping");
        QueryPreAttnScalar = PositiveOrNull(queryPreAttnScalar, "query_pre_attn_scalar");
        Extra = extra ?? new Dictionary<string, string>();
    }

    private static int Positive(int value, string field) =>
        value > 0 ? value : throw new MatqException($"{field} {value} must be a positive integer");

    private static double? PositiveOrNull(double? value, string field) =>
        value is not double v || (v > 0 && !double.IsInfinity(v)) ? value : throw new MatqException($"{field} {v} must be a positive finite number or null");

    /// <summary>
    /// Throws one line naming the first feature of this description that <paramref name="backend"/> does not implement:
    /// backends serve the classic Llama layout (RMSNorm w, pre-norms, SwiGLU, default/linear rope, full attention) plus
    /// the features they declare (llama3 rope, plain q/k RMSNorm, sliding windows).
    /// </summary>
    public void RequireClassicLlama(string backend, bool llama3Rope = false, bool qkNorm = false, bool slidingWindows = false)
    {
        string? feature =
            NormOffset ? "(1 + w) RMSNorm" : SandwichNorms ? "pre/post feed-forward norms" : ScaleEmbeddings ? "embedding scale √hidden"
            : QkNorm && !qkNorm ? "q/k RMSNorm" : Activation != Activation.Silu ? $"activation {Activation}"
            : AttnLogitSoftcap is not null ? "attention-logit soft-cap" : FinalLogitSoftcap is not null ? "final-logit soft-cap"
            : QueryPreAttnScalar is not null && QueryPreAttnScalar != HeadDim ? "query_pre_attn_scalar"
            : Rope.Type == RopeScaling.Llama3 && !llama3Rope ? "rope type llama3" : LocalRope != Rope ? "rope per layer type"
            : SlidingWindow is not null && SlidingLayers.Mixed && !slidingWindows ? "sliding windows on some layers only"
            : null;
        if (feature is null) return;
        var extras = new List<string>();
        if (llama3Rope) extras.Add("llama3 rope");
        if (qkNorm) extras.Add("q/k RMSNorm");
        if (slidingWindows) extras.Add("per-layer sliding windows");
        throw new MatqException($"{backend} does not support {feature} ({Family} model); it serves the Llama layout (default or linear rope"
            + (extras.Count > 0 ? ", " + string.Join(", ", extras) : "") + "); the TorchSharp model (--engine torch) runs every family");
    }

    public bool Equals(LlamaConfig? other) =>
        other is not null && Family == other.Family && HiddenSize == other.HiddenSize && IntermediateSize == other.IntermediateSize
        && NumLayers == other.NumLayers && NumHeads == other.NumHeads && NumKvHeads == other.NumKvHeads && HeadDim == other.HeadDim
        && RmsNormEps == other.RmsNormEps && VocabSize == other.VocabSize && MaxPositionEmbeddings == other.MaxPositionEmbeddings
        && TieWordEmbeddings == other.TieWordEmbeddings && QkvBias == other.QkvBias && OutputBias == other.OutputBias
        && MlpBias == other.MlpBias && Rope == other.Rope && LocalRope == other.LocalRope
        && SlidingWindow == other.SlidingWindow && SlidingLayers.SequenceEqual(other.SlidingLayers)
        && Activation == other.Activation && AttnLogitSoftcap == other.AttnLogitSoftcap && FinalLogitSoftcap == other.FinalLogitSoftcap
        && QueryPreAttnScalar == other.QueryPreAttnScalar
        && Extra.Count == other.Extra.Count && Extra.All(kv => other.Extra.TryGetValue(kv.Key, out var v) && v == kv.Value);

    public override int GetHashCode() => HashCode.Combine(Family, HiddenSize, IntermediateSize, NumLayers, NumHeads, NumKvHeads, HeadDim, VocabSize);

    /// <summary>Number of parameters, counting a tied embedding once.</summary>
    public long ParameterCount()
    {
        long h = HiddenSize, kv = KvDim, q = QDim, m = IntermediateSize;
        long attn = h * q + 2 * h * kv + q * h + (QkvBias ? q + 2 * kv : 0) + (OutputBias ? h : 0) + (QkNorm ? 2L * HeadDim : 0);
        long mlp = 3 * h * m + (MlpBias ? 2 * m + h : 0);
        long layer = attn + mlp + (SandwichNorms ? 4 : 2) * h;
        return NumLayers * layer + VocabSize * h * (TieWordEmbeddings ? 1 : 2) + h;
    }
}
