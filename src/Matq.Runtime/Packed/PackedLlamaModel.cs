// Contract: a decoder of any family of the description (Llama 1-3, Mistral, Qwen 2/3, Phi-3, Gemma 2/3) held for the
// packed CPU runtime, no TorchSharp: every quantized linear of a .matq artifact sliced to its served bits r (--bits, or
// per layer from a plan) and packed (Matq.Kernels), norms and biases in fp32 (Gemma's (1 + w) folded into the norm
// weights at load, in fp32 as HF computes it), RoPE tables precomputed per rope (Gemma 3: one per layer type). Loading
// validates the artifact like QuantizedModelLoader (shapes, tensors, plan names, bits ≤ master) and refuses what the
// packed kernels cannot hold with one line naming the fix.
// Head: the artifact's lm_head as stored (fp32, or packed at its plan bits when quantized), or, with HeadBits, the fp32
// head (the tied embedding for tied models) RTN-quantized at load (asymmetric min-max, HeadGroup columns per group); a
// tied model then also looks its embeddings up in that one packed table, so the fp32 table is not kept.
using Matq.Formats.Artifact;
using Matq.Kernels.Packed;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;
using Matq.Runtime.Plans;

namespace Matq.Runtime.Packed;

/// <summary>What to serve: bits r (null = master), per-layer plan, head precision (null = as stored).</summary>
public sealed record PackedModelOptions
{
    public int? Bits { get; init; }
    /// <summary>Per-layer bits (layers it does not name: Bits); a plan made for another model is refused at load.</summary>
    public BitPlan? Plan { get; init; }
    /// <summary>Quantize a float head at load to this many bits (1..8); null keeps the artifact's head as stored.</summary>
    public int? HeadBits { get; init; }
    /// <summary>Group width for the head quantization: a multiple of 32, or −1 for per-channel.</summary>
    public int HeadGroup { get; init; } = 128;
}

/// <summary>
/// One decoder block's weights. Norm weights are the effective multipliers (1 + w for Gemma). QNorm/KNorm [HeadDim] for
/// q/k RMSNorm (Qwen 3, Gemma 3); PreFeedforwardNorm/PostFeedforwardNorm for sandwich norms (Gemma 2/3: PostNorm then
/// normalizes the attention output); Window its sliding window (null = full); LocalRope: the sliding layers' rope.
/// </summary>
public sealed record PackedLlamaLayer(
    float[] InputNorm, PackedLinear Q, PackedLinear K, PackedLinear V, PackedLinear O,
    float[] PostNorm, PackedLinear Gate, PackedLinear Up, PackedLinear Down)
{
    public float[]? QNorm { get; init; }
    public float[]? KNorm { get; init; }
    public int? Window { get; init; }
    public float[]? PreFeedforwardNorm { get; init; }
    public float[]? PostFeedforwardNorm { get; init; }
    public bool LocalRope { get; init; }

    internal IEnumerable<float[]> Norms => new[] { InputNorm, PostNorm, QNorm, KNorm, PreFeedforwardNorm, PostFeedforwardNorm }.OfType<float[]>();

    public IEnumerable<PackedLinear> Linears => [Q, K, V, O, Gate, Up, Down];
}

public sealed class PackedLlamaModel
{
    public LlamaConfig Config { get; }
    public string Path { get; }
    public MatqMetadata Metadata { get; }
    /// <summary>Default bits r (layers not named by the plan).</summary>
    public int Bits { get; }
    public IReadOnlyList<PackedLlamaLayer> Layers { get; }
    public float[] FinalNorm { get; }
    public PackedLinear Head { get; }
    /// <summary>fp32 embedding table [vocab, hidden], or null when the lookups read the packed head (tied + HeadBits).</summary>
    public float[]? Embedding { get; }
    /// <summary>cos/sin of position p and pair i at [p·HeadDim/2 + i], for p &lt; MaxPositions.</summary>
    internal float[] RopeCos { get; }
    internal float[] RopeSin { get; }
    /// <summary>The sliding layers' tables (the same arrays as RopeCos/RopeSin unless the rope differs per layer type).</summary>
    internal float[] LocalRopeCos { get; }
    internal float[] LocalRopeSin { get; }
    /// <summary>Embedding multiplier: √hidden rounded to fp32 (Gemma), else 1.</summary>
    public float EmbeddingScale { get; }
    /// <summary>Longest sequence (cache included): max_position_embeddings (sliding-window layers mask older keys).</summary>
    public int MaxPositions { get; }

    private PackedLlamaModel(LlamaConfig config, string path, MatqMetadata metadata, int bits, IReadOnlyList<PackedLlamaLayer> layers,
        float[] finalNorm, PackedLinear head, float[]? embedding)
    {
        Config = config; Path = path; Metadata = metadata; Bits = bits; Layers = layers; FinalNorm = finalNorm; Head = head; Embedding = embedding;
        MaxPositions = config.MaxPositionEmbeddings;
        (RopeCos, RopeSin) = RopeTables(config.Rope, config.HeadDim, MaxPositions);
        (LocalRopeCos, LocalRopeSin) = config.LocalRope == config.Rope ? (RopeCos, RopeSin) : RopeTables(config.LocalRope, config.HeadDim, MaxPositions);
        EmbeddingScale = config.ScaleEmbeddings ? (float)Math.Sqrt(config.HiddenSize) : 1f;
    }

    /// <summary>Every linear, decoder layers first, head last.</summary>
    public IEnumerable<PackedLinear> Linears => Layers.SelectMany(l => l.Linears).Append(Head);

    /// <summary>Bytes of the decoder layers' weights as held (packed codes + scales/biases + biases).</summary>
    public long LayerWeightBytes => Layers.Sum(l => l.Linears.Sum(x => x.WeightBytes));
    /// <summary>Bytes of the head as held.</summary>
    public long HeadBytes => Head.WeightBytes;
    /// <summary>Bytes of the fp32 embedding table (0 when lookups read the packed head, or when a tied fp32 head is that
    /// same array) and of the norms.</summary>
    public long OtherBytes => 4L * ((Embedding is null || ReferenceEquals(Embedding, Head.Dense) ? 0 : Embedding.LongLength)
                                    + FinalNorm.Length + Layers.Sum(l => l.Norms.Sum(n => (long)n.Length)));
    public long ResidentWeightBytes => LayerWeightBytes + HeadBytes + OtherBytes;

    /// <summary>Weight-count-weighted mean served bits of the decoder layers' linears.</summary>
    public double MeanLayerBits => Layers.SelectMany(l => l.Linears).Sum(x => (double)x.Bits * x.Out * x.In)
                                   / Layers.SelectMany(l => l.Linears).Sum(x => (double)x.Out * x.In);

    /// <summary>Opens, validates and packs <paramref name="path"/> (a .matq artifact).</summary>
    public static PackedLlamaModel Load(string path, PackedModelOptions? options = null)
    {
        if (!File.Exists(path)) throw new MatqException($"--model {path} does not exist (the packed runtime serves .matq artifacts)");
        return Load(MatqArtifact.Open(path), options);
    }

    public static PackedLlamaModel Load(MatqArtifact artifact, PackedModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        options ??= new PackedModelOptions();
        var md = artifact.Metadata;
        int c = md.MasterBits, r = options.Bits ?? c;
        ArtifactSource.CheckBits(r, c, "--bits");
        if (options.HeadBits is int hb && hb is < 1 or > 8)
            throw new MatqException($"--head {hb} is out of range: quantize the head to 1..8 bits, or keep it fp32");
        if (options.HeadGroup != -1 && (options.HeadGroup < 32 || options.HeadGroup % 32 != 0))
            throw new MatqException($"head group {options.HeadGroup} has no packed layout: use a multiple of 32 (32, 64, 128) or per-channel");
        var perLayer = BitPlan.PerLayerBits(artifact, options.Plan, r);
        var config = ArtifactSource.ModelConfig(artifact);
        ArtifactSource.CheckTensors(artifact, config);

        float[] F(string name) => artifact.GetFloat(name).Values;
        // Gemma's (1 + w) is added in fp32 once here, as HF adds it in fp32 on every call
        float[] Norm(string name)
        {
            var w = F(name);
            if (!config.NormOffset) return w;
            var folded = new float[w.Length];
            for (int i = 0; i < w.Length; i++) folded[i] = 1f + w[i];
            return folded;
        }
        float[]? FOpt(string name) => artifact.TryGetFloat(name, out var t) ? t.Values : null;
        PackedLinear Linear(string module)
        {
            var name = module + ".weight";
            var bias = FOpt(module + ".bias");
            if (artifact.TryGetQuantized(name, out var q)) return new PackedLinear(module, Pack(artifact, q, c, perLayer[name]), bias);
            var f = artifact.GetFloat(name);
            return new PackedLinear(module, f.Values, (int)f.Shape[0], (int)f.Shape[1], bias);
        }

        var layers = new List<PackedLlamaLayer>();
        for (int i = 0; i < config.NumLayers; i++)
        {
            var p = $"model.layers.{i}.";
            layers.Add(new PackedLlamaLayer(
                Norm(p + "input_layernorm.weight"), Linear(p + "self_attn.q_proj"), Linear(p + "self_attn.k_proj"),
                Linear(p + "self_attn.v_proj"), Linear(p + "self_attn.o_proj"), Norm(p + "post_attention_layernorm.weight"),
                Linear(p + "mlp.gate_proj"), Linear(p + "mlp.up_proj"), Linear(p + "mlp.down_proj"))
            {
                QNorm = config.QkNorm ? Norm(p + "self_attn.q_norm.weight") : null,
                KNorm = config.QkNorm ? Norm(p + "self_attn.k_norm.weight") : null,
                PreFeedforwardNorm = config.SandwichNorms ? Norm(p + "pre_feedforward_layernorm.weight") : null,
                PostFeedforwardNorm = config.SandwichNorms ? Norm(p + "post_feedforward_layernorm.weight") : null,
                Window = config.WindowOf(i),
                LocalRope = config.SlidingLayers[i],
            });
        }

        var embedding = F("model.embed_tokens.weight");
        PackedLinear head;
        if (config.TieWordEmbeddings)
        {
            head = options.HeadBits is int b
                ? new PackedLinear("lm_head", PackedMatrix.FromFloat(embedding, config.VocabSize, config.HiddenSize, b, options.HeadGroup))
                : new PackedLinear("lm_head", embedding, config.VocabSize, config.HiddenSize);
        }
        else
        {
            head = Linear("lm_head");
            if (head.Dense is not null && options.HeadBits is int b)
                head = new PackedLinear("lm_head", PackedMatrix.FromFloat(head.Dense, head.Out, head.In, b, options.HeadGroup));
        }
        // A tied model with a packed head looks its embeddings up in that table (one copy of the vocabulary matrix).
        bool embedFromHead = config.TieWordEmbeddings && head.Packed is not null;
        return new PackedLlamaModel(config, artifact.Path, md, r, layers, Norm("model.norm.weight"), head, embedFromHead ? null : embedding);
    }

    /// <summary>Slices and packs one quantized weight; group widths the kernels cannot hold are refused with the fix.</summary>
    private static PackedMatrix Pack(MatqArtifact artifact, MatqQuantizedTensor q, int masterBits, int bits)
    {
        if (q.SideTensors.Count > 0)
            throw new MatqException($"{artifact.Path}: '{q.Name}' carries side tensors ({string.Join(", ", q.SideTensors.Select(s => s.Suffix))}) the packed runtime does not read; use --engine torch");
        int g = q.GroupWidth >= q.InFeatures ? -1 : q.GroupWidth;
        if (g != -1 && g % 32 != 0)
            throw new MatqException($"{artifact.Path}: '{q.Name}' uses groups of {g} columns; the packed kernels need a multiple of 32 or per-channel (quantize again with --group 32, 64, 128 or 0; `matq generate --engine torch` can still run this one)");
        return PackedMatrix.FromMaster(q.Codes, q.OutFeatures, q.InFeatures, g, q.Scales, q.Zeros, masterBits, bits, q.Perm);
    }

    /// <summary>The token's embedding row into <paramref name="dst"/> [hidden], times <see cref="EmbeddingScale"/>.</summary>
    public void Embed(int id, Span<float> dst)
    {
        if ((uint)id >= (uint)Config.VocabSize)
            throw new MatqException($"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1}); the tokenizer does not match the model");
        int h = Config.HiddenSize;
        if (Embedding is not null) Embedding.AsSpan((int)((long)id * h), h).CopyTo(dst);
        else Head.Packed!.DequantizeRow(id, dst);
        if (EmbeddingScale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(dst[..h], EmbeddingScale, dst[..h]);
    }

    // HF rotate_half RoPE: inv_freq[i] = 1/θ^(2i/D) in fp32 scaled per the description's rope (÷ factor for linear,
    // wavelength bands for llama3: RopeSpec), angle = p·inv_freq[i] in fp32.
    private static (float[] Cos, float[] Sin) RopeTables(RopeSpec rope, int headDim, int positions)
    {
        int half = headDim / 2;
        var inv = rope.InverseFrequencies(headDim);
        var cos = new float[(long)positions * half];
        var sin = new float[(long)positions * half];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                float a = p * inv[i];
                cos[p * half + i] = MathF.Cos(a);
                sin[p * half + i] = MathF.Sin(a);
            }
        return (cos, sin);
    }
}
