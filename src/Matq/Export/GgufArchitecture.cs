// Contract: maps a decoder description to the llama.cpp architecture that runs it as matq does (the build LLamaSharp
// 0.30.0 ships): the architecture name, the metadata keys its loader reads, GGUF tensor names (and which model tensors
// fuse into one), whether q/k rows move to interleaved rope pairs, Gemma's (1 + w) norms baked into the weights, and the
// rope_freqs tensor of llama3 rope. A description llama.cpp would run differently is refused in one line.
//   llama  ← Llama 1-3, Mistral without a window (q/k rows permuted: llama.cpp's rope rotates pairs (2i, 2i+1));
//   qwen2, qwen3, gemma2, gemma3, phi3 rotate halves (NEOX) as HF does: rows stay in HF order.
// What llama.cpp reads per architecture (llama-model.cpp load_hparams; the convert_hf_to_gguf.py counterpart):
//   llama, qwen2, qwen3, phi3 read no sliding window (phi3 reads and then disables it), so a model with one is refused;
//   gemma2 always slides on layers 0, 2, 4, ... (pattern 2) with %s.attention.sliding_window and always soft-caps with
//   %s.attn_logit_softcapping and %s.final_logit_softcapping; gemma3 slides when %s.attention.sliding_window > 0, on
//   layers i with i % p < p − 1 (p = %s.attention.sliding_window_pattern, default 6), local rope base
//   %s.rope.freq_base_swa (%s.rope.scaling.* apply to full-attention layers only); both scale attention by head_dim^−½ (hidden/heads for the 27B layer counts), not by
//   query_pre_attn_scalar; convert_hf_to_gguf.py adds 1 to every Gemma "norm.weight" and the graphs multiply by w.
using Matq.Formats.Gguf;
using Matq.Models;
using Matq.Runtime.Models;

namespace Matq.Export;

public sealed class GgufArchitecture
{
    public string Name { get; }
    public LlamaConfig Config { get; }
    /// <summary>llama.cpp's llama architecture rotates interleaved pairs: q/k rows (and biases) are permuted.</summary>
    public bool InterleavedRope => Name == "llama";
    /// <summary>Phi-3: q/k/v fuse into attn_qkv and gate/up into ffn_up (gate rows first), as llama.cpp's phi3 reads them.</summary>
    public bool Fused => Name == "phi3";
    /// <summary>The sliding-window period written for gemma3 (layer i slides when i % p &lt; p − 1).</summary>
    private readonly int _swaPeriod;

    private GgufArchitecture(string name, LlamaConfig config, int swaPeriod)
    {
        Name = name;
        Config = config;
        _swaPeriod = swaPeriod;
    }

    /// <summary>The architecture for <paramref name="c"/>, or a MatqException (one line) naming what llama.cpp cannot run.</summary>
    public static GgufArchitecture For(LlamaConfig c)
    {
        string name = c.Family switch
        {
            LlamaFamily.Llama or LlamaFamily.Mistral => "llama",
            LlamaFamily.Qwen2 => "qwen2", LlamaFamily.Qwen3 => "qwen3",
            LlamaFamily.Gemma2 => "gemma2", LlamaFamily.Gemma3 => "gemma3", LlamaFamily.Phi3 => "phi3",
            _ => throw Refuse(c, $"the {c.Family} family", "it has no llama.cpp architecture mapping in matq"),
        };
        bool gemma = name is "gemma2" or "gemma3";
        var act = gemma ? Activation.GeluTanh : Activation.Silu;
        if (c.Activation != act) throw Refuse(c, $"activation {c.Activation}", $"llama.cpp's {name} architecture uses {act}");

        // biases: llama reads optional q/k/v/o and MLP biases; qwen2 requires q/k/v biases; the others read none
        bool biasOk = name == "llama" || (name == "qwen2" && !c.OutputBias && !c.MlpBias) || (!c.QkvBias && !c.OutputBias && !c.MlpBias);
        if (!biasOk) throw Refuse(c, "projection biases", $"llama.cpp's {name} architecture reads no such bias");

        // rope: llama3 only through the llama graph's rope_freqs; per-layer-type rope only as gemma3's local base (default
        // rope; the global rope may be linear, which llama.cpp's gemma3 applies to full-attention layers only)
        if (c.Rope.Type == RopeScaling.Llama3 && name != "llama")
            throw Refuse(c, "rope type llama3", $"llama.cpp's {name} graph applies no rope_freqs factors");
        if (name == "gemma3" && c.LocalRope.Type != RopeScaling.Default)
            throw Refuse(c, $"rope type {c.LocalRope.Type} on sliding layers", "llama.cpp's gemma3 rotates its sliding layers with unscaled rope");
        if (c.LocalRope != c.Rope && name != "gemma3")
            throw Refuse(c, "rope per layer type", $"llama.cpp's {name} architecture has one rope for every layer");

        // attention scale: llama.cpp fixes it per architecture
        double want = c.QueryPreAttnScalar ?? c.HeadDim;
        double llamaCpp = gemma && c.NumLayers == (name == "gemma2" ? 46 : 62) ? c.HiddenSize / c.NumHeads : c.HeadDim;
        if (want != llamaCpp)
            throw Refuse(c, $"query_pre_attn_scalar {want}", $"llama.cpp's {name} architecture scales attention by {llamaCpp}^-1/2");

        // soft-caps: gemma2 always applies both (defaults 50 and 30 when absent); nothing else applies any
        if (name == "gemma2")
        {
            // llama.cpp's gemma2 creates its output head from token_embd and reads no output.weight: an untied head would
            // be refused at load (one tensor too many) or, if dropped, silently replaced by the embedding
            if (!c.TieWordEmbeddings)
                throw Refuse(c, "an untied lm_head", "llama.cpp's gemma2 always takes its output head from token_embd");
            if (c.AttnLogitSoftcap is null || c.FinalLogitSoftcap is null)
                throw Refuse(c, "gemma2 without soft-caps", "llama.cpp's gemma2 always soft-caps attention and final logits");
        }
        else if (c.AttnLogitSoftcap is not null || c.FinalLogitSoftcap is not null)
            throw Refuse(c, c.AttnLogitSoftcap is not null ? "attention-logit soft-cap" : "final-logit soft-cap", $"llama.cpp's {name} architecture applies none");

        int period = 0;
        if (gemma)
        {
            if (c.SlidingWindow is null)
                throw Refuse(c, $"{name} without a sliding window", $"llama.cpp's {name} is verified here only with its sliding layers");
            period = name == "gemma2" ? 2 : SlidingPeriod(c.SlidingLayers)
                ?? throw Refuse(c, "this pattern of sliding layers", "llama.cpp's gemma3 slides on layers i with i % p < p - 1 only");
            if (name == "gemma2" && SlidingPeriod(c.SlidingLayers) != 2)
                throw Refuse(c, "this pattern of sliding layers", "llama.cpp's gemma2 slides on even layers only");
        }
        else if (c.SlidingWindow is int w)
            throw Refuse(c, $"a sliding window of {w} tokens", name == "phi3"
                ? "llama.cpp's phi3 reads the window and then disables it, so it would attend past it"
                : $"llama.cpp's {name} architecture attends to the whole context, so it would run this model wrongly past {w} tokens");
        return new GgufArchitecture(name, c, period);
    }

    private static MatqException Refuse(LlamaConfig c, string feature, string reason) =>
        new($"the GGUF export does not support {feature} ({c.Family} model): {reason}; the TorchSharp model (--engine torch) runs every family");

    /// <summary>The smallest p ≥ 2 with layer i sliding iff i % p &lt; p − 1 (llama.cpp's set_swa_pattern), or null.</summary>
    public static int? SlidingPeriod(IReadOnlyList<bool> sliding)
    {
        int n = sliding.Count;
        if (n > 4096) return null;
        for (int p = 2; p <= Math.Max(2, n + 1); p++)
        {
            bool ok = true;
            for (int i = 0; i < n && ok; i++) ok = sliding[i] == (i % p < p - 1);
            if (ok) return p;
        }
        return null;
    }

    /// <summary>general.* and {arch}.* keys as llama.cpp's loader for this architecture reads them.</summary>
    public GgufWriter Header(string modelName, int fileType)
    {
        var c = Config;
        string a = Name;
        var w = new GgufWriter()
            .Add("general.architecture", a).Add("general.name", modelName)
            .Add("general.alignment", (uint)GgufWriter.Alignment).Add("general.file_type", (uint)fileType)
            .Add($"{a}.context_length", (uint)c.MaxPositionEmbeddings).Add($"{a}.embedding_length", (uint)c.HiddenSize)
            .Add($"{a}.block_count", (uint)c.NumLayers).Add($"{a}.feed_forward_length", (uint)c.IntermediateSize)
            .Add($"{a}.attention.head_count", (uint)c.NumHeads).Add($"{a}.attention.head_count_kv", (uint)c.NumKvHeads)
            .Add($"{a}.rope.freq_base", (float)c.RopeTheta).Add($"{a}.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps)
            .Add($"{a}.rope.dimension_count", (uint)c.HeadDim).Add($"{a}.vocab_size", (uint)c.VocabSize)
            // explicit even when head_dim = hidden/heads: llama.cpp derives n_rot from these and refuses a mismatch
            .Add($"{a}.attention.key_length", (uint)c.HeadDim).Add($"{a}.attention.value_length", (uint)c.HeadDim);
        if (c.RopeScaling == RopeScaling.Linear)
            w.Add($"{a}.rope.scaling.type", "linear").Add($"{a}.rope.scaling.factor", (float)c.RopeFactor);
        if (Name is "gemma2" or "gemma3") w.Add($"{a}.attention.sliding_window", (uint)c.SlidingWindow!.Value);
        if (Name == "gemma2")
            w.Add($"{a}.attn_logit_softcapping", (float)c.AttnLogitSoftcap!.Value).Add($"{a}.final_logit_softcapping", (float)c.FinalLogitSoftcap!.Value);
        if (Name == "gemma3")
            w.Add($"{a}.attention.sliding_window_pattern", (uint)_swaPeriod).Add($"{a}.rope.freq_base_swa", (float)c.LocalRope.Theta);
        return w;
    }

    /// <summary>Tensors llama.cpp needs that the model does not hold: rope_freqs.weight [D/2] for llama3 rope.</summary>
    public IEnumerable<(string Name, float[] Values)> ExtraTensors()
    {
        if (Config.Rope.Type == RopeScaling.Llama3) yield return ("rope_freqs.weight", Llama3RopeFactors(Config.Rope, Config.HeadDim));
    }

    /// <summary>
    /// llama3 rope as llama.cpp applies it: θ_i = pos·base^(−2i/D) / f_i, with f_i per wavelength band λ_i = 2π/inv_i
    /// (fp32, as convert_hf_to_gguf.py computes it): λ &lt; original/high → 1; λ &gt; original/low → factor; between,
    /// s = (original/λ − low)/(high − low) and f = 1/((1 − s)/factor + s) (the reciprocal of HF's smoothed rescaling).
    /// </summary>
    public static float[] Llama3RopeFactors(RopeSpec rope, int headDim)
    {
        float factor = (float)rope.Factor, low = (float)rope.LowFreqFactor, high = (float)rope.HighFreqFactor;
        double old = rope.OriginalMaxPositions;
        float lowWavelen = (float)(old / rope.LowFreqFactor), highWavelen = (float)(old / rope.HighFreqFactor);
        var f = new float[headDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            float inv = 1f / MathF.Pow((float)rope.Theta, (float)(2 * i) / headDim);
            float wavelen = (float)(2 * Math.PI) / inv;
            if (wavelen < highWavelen) f[i] = 1f;
            else if (wavelen > lowWavelen) f[i] = factor;
            else
            {
                float smooth = ((float)old / wavelen - low) / (high - low);
                f[i] = 1f / ((1 - smooth) / factor + smooth);
            }
        }
        return f;
    }

    /// <summary>
    /// HF model tensor name → (GGUF name, part index within a fused tensor). Phi-3's q/k/v → attn_qkv parts 0/1/2 and
    /// gate/up → ffn_up parts 0/1; Gemma's four norms → attn_norm, post_attention_norm, ffn_norm, post_ffw_norm.
    /// </summary>
    public (string Name, int Part) TensorName(string hf)
    {
        if (hf == "model.embed_tokens.weight") return ("token_embd.weight", 0);
        if (hf == "model.norm.weight") return ("output_norm.weight", 0);
        if (hf == "lm_head.weight") return ("output.weight", 0);
        var p = hf.Split('.');
        if (p.Length >= 5 && p[0] == "model" && p[1] == "layers")
        {
            string module = string.Join('.', p[3..^1]);
            var (part, index) = module switch
            {
                "self_attn.q_proj" => Fused ? ("attn_qkv", 0) : ("attn_q", 0),
                "self_attn.k_proj" => Fused ? ("attn_qkv", 1) : ("attn_k", 0),
                "self_attn.v_proj" => Fused ? ("attn_qkv", 2) : ("attn_v", 0),
                "self_attn.o_proj" => ("attn_output", 0),
                "self_attn.q_norm" => ("attn_q_norm", 0), "self_attn.k_norm" => ("attn_k_norm", 0),
                "mlp.gate_proj" => Fused ? ("ffn_up", 0) : ("ffn_gate", 0),
                "mlp.up_proj" => Fused ? ("ffn_up", 1) : ("ffn_up", 0),
                "mlp.down_proj" => ("ffn_down", 0),
                "input_layernorm" => ("attn_norm", 0),
                "post_attention_layernorm" => Config.SandwichNorms ? ("post_attention_norm", 0) : ("ffn_norm", 0),
                "pre_feedforward_layernorm" => ("ffn_norm", 0),
                "post_feedforward_layernorm" => ("post_ffw_norm", 0),
                var other => throw new MatqException($"tensor '{hf}' ({other}) has no llama.cpp GGUF name for the {Name} architecture"),
            };
            return ($"blk.{p[2]}.{part}.{p[^1]}", index);
        }
        throw new MatqException($"tensor '{hf}' has no llama.cpp GGUF name for the {Name} architecture");
    }

    /// <summary>How many model tensors fuse into the GGUF tensor <paramref name="gguf"/> (Phi-3: attn_qkv 3, ffn_up 2).</summary>
    public int PartsOf(string gguf) =>
        !Fused || !gguf.StartsWith("blk.", StringComparison.Ordinal) ? 1
        : gguf.EndsWith(".attn_qkv.weight", StringComparison.Ordinal) ? 3 : gguf.EndsWith(".ffn_up.weight", StringComparison.Ordinal) ? 2 : 1;

    /// <summary>Gemma's (1 + w) RMSNorm: llama.cpp multiplies by the stored weight, so the stored norm is 1 + w (fp32).</summary>
    public float[] StoredNorm(string hf, float[] values)
    {
        if (!Config.NormOffset || !hf.EndsWith("norm.weight", StringComparison.Ordinal)) return values;
        var o = new float[values.Length];
        for (int i = 0; i < o.Length; i++) o[i] = 1f + values[i];
        return o;
    }

    /// <summary>GGUF row → HF row for q/k weights and biases on the llama architecture (interleaved rope); null otherwise.</summary>
    public int[]? RowPerm(string hf, int rows) =>
        InterleavedRope ? GgufExporter.RowPerm(hf, rows, Config.NumHeads, Config.NumKvHeads, Config.HeadDim) : null;
}
