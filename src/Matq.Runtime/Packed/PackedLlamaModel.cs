// Contract: a decoder of any family of the description (Llama 1-3, Mistral, Qwen 2/3, Phi-3, Gemma 2/3) held for the
// packed CPU runtime, no TorchSharp: every quantized linear of a .matq artifact sliced to its served bits r (--bits, or
// per layer from a plan) and packed (Matq.Kernels), norms and biases in fp32 (Gemma's (1 + w) folded into the norm
// weights at load, in fp32 as HF computes it), RoPE tables precomputed per rope (Gemma 3: one per layer type). Loading
// validates the artifact like QuantizedModelLoader (shapes, tensors, plan names, bits ≤ master) and refuses what the
// packed kernels cannot hold with one line naming the fix.
// Loading a path memory-maps the artifact (MappedMatqArtifact): each quantized weight's codes are mapped, sliced and
// packed, then unmapped, one tensor at a time, so host memory holds the r-bit model and never the master codes; a
// bf16/f16 embedding and an unquantized head are kept as stored (StoredRows, widened per row / per tile of the head
// product). Loading a MatqArtifact already in memory packs the same model from its arrays (same logits, bit for bit).
// Head: the artifact's lm_head as stored (fp32, or packed at its plan bits when quantized), or, with HeadBits, the fp32
// head (the tied embedding for tied models) RTN-quantized at load (asymmetric min-max, HeadGroup columns per group); a
// tied model then also looks its embeddings up in that one packed table, so the fp32 (or stored) table is not kept.
// A quantized embedding (quantize --embedding-bits) is sliced to its served bits and packed like a linear; each lookup
// dequantizes one row (PackedMatrix.DequantizeRow), and a tied head is that same packed table (HeadBits does not apply,
// as for a quantized untied head).
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
    /// <summary>fp32 embedding table [vocab, hidden], or null when the lookups read the packed head (tied + HeadBits) or
    /// the stored bf16/f16 table (<see cref="StoredEmbedding"/>).</summary>
    public float[]? Embedding { get; }
    /// <summary>The embedding table in its stored bf16/f16 dtype (a memory-mapped load), widened per looked-up row; or null.</summary>
    public StoredRows? StoredEmbedding { get; }
    /// <summary>A quantized embedding sliced to its served bits and packed (one row dequantized per lookup); for a tied
    /// model the head's matrix is this same object. Null when the artifact stores the embedding float.</summary>
    public Matq.Kernels.Packed.PackedMatrix? PackedEmbedding { get; }
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
        float[] finalNorm, PackedLinear head, float[]? embedding, StoredRows? storedEmbedding, Matq.Kernels.Packed.PackedMatrix? packedEmbedding)
    {
        Config = config; Path = path; Metadata = metadata; Bits = bits; Layers = layers; FinalNorm = finalNorm; Head = head; Embedding = embedding;
        StoredEmbedding = storedEmbedding; PackedEmbedding = packedEmbedding;
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
                                    + FinalNorm.Length + Layers.Sum(l => l.Norms.Sum(n => (long)n.Length)))
                              + (StoredEmbedding is null || ReferenceEquals(StoredEmbedding, Head.Stored) ? 0 : StoredEmbedding.Bytes)
                              + (PackedEmbedding is null || ReferenceEquals(PackedEmbedding, Head.Packed) ? 0 : PackedEmbedding.WeightBytes);
    public long ResidentWeightBytes => LayerWeightBytes + HeadBytes + OtherBytes;

    /// <summary>Weight-count-weighted mean served bits of the decoder layers' linears.</summary>
    public double MeanLayerBits => Layers.SelectMany(l => l.Linears).Sum(x => (double)x.Bits * x.Out * x.In)
                                   / Layers.SelectMany(l => l.Linears).Sum(x => (double)x.Out * x.In);

    /// <summary>
    /// Opens, validates and packs <paramref name="path"/> (a .matq artifact) through a memory-mapped view: one quantized
    /// tensor at a time is mapped, sliced to its served bits and packed, then unmapped, so the master codes never sit in
    /// managed memory; a bf16/f16 embedding and an unquantized head stay in that dtype (<see cref="StoredRows"/>). The
    /// logits are the same, bit for bit, as those of <see cref="Load(MatqArtifact, PackedModelOptions?)"/> of the loaded artifact.
    /// </summary>
    public static PackedLlamaModel Load(string path, PackedModelOptions? options = null)
    {
        if (!File.Exists(path)) throw new MatqException($"--model {path} does not exist (the packed runtime serves .matq artifacts)");
        using var mapped = MappedMatqArtifact.Open(path);
        return Load(mapped, options);
    }

    /// <summary>Packs an artifact already held in memory (every tensor loaded, floats widened to fp32, by <see cref="MatqArtifact.Open"/>).</summary>
    public static PackedLlamaModel Load(MatqArtifact artifact, PackedModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        return Build(new LoadedSource(artifact), options);
    }

    /// <summary>Packs a memory-mapped artifact, reading one tensor at a time (see <see cref="Load(string, PackedModelOptions?)"/>).</summary>
    public static PackedLlamaModel Load(MappedMatqArtifact artifact, PackedModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var model = Build(new MappedSource(artifact), options);
        // the load's transient arrays (scales read per tensor, the head's codes before packing) go now, not at some
        // later collection, so the process starts serving at about the size of the model it holds
        GC.Collect();
        return model;
    }

    private static PackedLlamaModel Build(Source artifact, PackedModelOptions? options)
    {
        options ??= new PackedModelOptions();
        var md = artifact.Metadata;
        int c = md.MasterBits, r = options.Bits ?? c;
        ArtifactSource.CheckBits(r, c, "--bits");
        if (options.HeadBits is int hb && hb is < 1 or > 8)
            throw new MatqException($"--head {hb} is out of range: quantize the head to 1..8 bits, or keep it fp32");
        if (options.HeadGroup != -1 && (options.HeadGroup < 32 || options.HeadGroup % 32 != 0))
            throw new MatqException($"head group {options.HeadGroup} has no packed layout: use a multiple of 32 (32, 64, 128) or per-channel");
        var perLayer = BitPlan.PerLayerBits(artifact.Path, md, options.Plan, r);
        var config = artifact.ModelConfig();   // checks the tensors against the config too

        // Gemma's (1 + w) is added in fp32 once here, as HF adds it in fp32 on every call
        float[] Norm(string name)
        {
            var w = artifact.Float(name);
            if (!config.NormOffset) return w;
            var folded = new float[w.Length];
            for (int i = 0; i < w.Length; i++) folded[i] = 1f + w[i];
            return folded;
        }
        float[]? FOpt(string name) => artifact.HasFloat(name) ? artifact.Float(name) : null;
        PackedLinear Linear(string module)
        {
            var name = module + ".weight";
            var bias = FOpt(module + ".bias");
            if (artifact.TryGetQuantized(name, out var q)) return new PackedLinear(module, artifact.Pack(q, c, perLayer[name]), bias);
            var (rows, cols) = artifact.FloatShape(name);
            return new PackedLinear(module, artifact.Float(name), rows, cols, bias);
        }
        // A vocabulary table (embedding, unquantized head): fp32, or as stored (bf16/f16) for a mapped load.
        PackedLinear Table(string module, float[]? bias)
        {
            var name = module + ".weight";
            var (dense, stored) = artifact.Table(name);
            if (stored is not null) return new PackedLinear(module, stored, bias);
            var (rows, cols) = artifact.FloatShape(name);
            return new PackedLinear(module, dense!, rows, cols, bias);
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

        // A tied model with a packed head looks its embeddings up in that table (one copy of the vocabulary matrix), so
        // its float table is never held: --head B quantizes it straight from the artifact (RTN at load, as FromFloat).
        const string embedName = "model.embed_tokens.weight";
        var packedEmbedding = artifact.TryGetQuantized(embedName, out var qe) ? artifact.Pack(qe, c, perLayer[embedName]) : null;
        bool embedFromHead = config.TieWordEmbeddings && options.HeadBits is not null && packedEmbedding is null;
        var embedding = embedFromHead || packedEmbedding is not null ? null : Table("model.embed_tokens", null);
        PackedLinear head;
        if (config.TieWordEmbeddings && packedEmbedding is not null) head = new PackedLinear("lm_head", packedEmbedding);
        else if (config.TieWordEmbeddings)
        {
            head = options.HeadBits is int b ? new PackedLinear("lm_head", artifact.QuantizeRows("model.embed_tokens.weight", b, options.HeadGroup))
                : embedding!.Stored is { } stored ? new PackedLinear("lm_head", stored)
                : new PackedLinear("lm_head", embedding.Dense!, config.VocabSize, config.HiddenSize);
        }
        else if (artifact.TryGetQuantized("lm_head.weight", out _)) head = Linear("lm_head");
        else head = options.HeadBits is int b ? new PackedLinear("lm_head", artifact.QuantizeRows("lm_head.weight", b, options.HeadGroup))
            : Table("lm_head", FOpt("lm_head.bias"));
        return new PackedLlamaModel(config, artifact.Path, md, r, layers, Norm("model.norm.weight"), head, embedding?.Dense, embedding?.Stored, packedEmbedding);
    }

    /// <summary>What Build reads: an artifact held in memory, or one memory-mapped and read a tensor at a time.</summary>
    private abstract class Source
    {
        public abstract string Path { get; }
        public abstract MatqMetadata Metadata { get; }
        public abstract LlamaConfig ModelConfig();
        public abstract bool TryGetQuantized(string name, out MatqQuantizedEntry entry);
        public abstract bool HasFloat(string name);
        public abstract (int Rows, int Cols) FloatShape(string name);
        public abstract float[] Float(string name);
        public abstract (float[]? Dense, StoredRows? Stored) Table(string name);
        public abstract PackedMatrix Pack(MatqQuantizedEntry e, int masterBits, int bits);
        /// <summary>A float table [rows, cols] RTN-quantized at load to <paramref name="bits"/> (PackedMatrix.FromFloat's codes).</summary>
        public abstract PackedMatrix QuantizeRows(string name, int bits, int group);

        /// <summary>The packed group width (−1 per-channel); side tensors and widths the kernels cannot hold are refused with the fix.</summary>
        protected int PackedGroup(MatqQuantizedEntry e, IReadOnlyList<MatqSideTensor> sides)
        {
            if (sides.Count > 0)
                throw new MatqException($"{Path}: '{e.Name}' carries side tensors ({string.Join(", ", sides.Select(s => s.Suffix))}) the packed runtime does not read; use --engine torch");
            int g = e.GroupWidth >= e.InFeatures ? -1 : e.GroupWidth;
            if (g != -1 && g % 32 != 0)
                throw new MatqException($"{Path}: '{e.Name}' uses groups of {g} columns; the packed kernels need a multiple of 32 or per-channel (quantize again with --group 32, 64, 128 or 0; `matq generate --engine torch` can still run this one)");
            return g;
        }

        protected (int, int) Matrix(long[] shape, string name) => shape.Length == 2 ? ((int)shape[0], (int)shape[1])
            : throw new MatqException($"{Path}: '{name}' has shape [{string.Join(", ", shape)}]; a linear weight is 2-D");
    }

    private sealed class LoadedSource(MatqArtifact a) : Source
    {
        public override string Path => a.Path;
        public override MatqMetadata Metadata => a.Metadata;
        public override LlamaConfig ModelConfig() => ArtifactSource.ModelConfig(a);
        public override bool TryGetQuantized(string name, out MatqQuantizedEntry entry)
        {
            bool found = a.TryGetQuantized(name, out var q);
            entry = found ? q.Entry : null!;
            return found;
        }
        public override bool HasFloat(string name) => a.TryGetFloat(name, out _);
        public override (int Rows, int Cols) FloatShape(string name) => Matrix(a.GetFloat(name).Shape, name);
        public override float[] Float(string name) => a.GetFloat(name).Values;
        public override (float[]? Dense, StoredRows? Stored) Table(string name) => (a.GetFloat(name).Values, null);
        public override PackedMatrix QuantizeRows(string name, int bits, int group)
        {
            var (rows, cols) = FloatShape(name);
            return PackedMatrix.FromFloat(a.GetFloat(name).Values, rows, cols, bits, group);
        }
        public override PackedMatrix Pack(MatqQuantizedEntry e, int masterBits, int bits)
        {
            var q = a.GetQuantized(e.Name);
            int g = PackedGroup(e, q.SideTensors);
            return PackedMatrix.FromMaster(q.Codes, q.OutFeatures, q.InFeatures, g, q.Scales, q.Zeros, masterBits, bits, q.Perm);
        }
    }

    private sealed class MappedSource(MappedMatqArtifact a) : Source
    {
        public override string Path => a.Path;
        public override MatqMetadata Metadata => a.Metadata;
        public override LlamaConfig ModelConfig() => ArtifactSource.ModelConfig(a);
        public override bool TryGetQuantized(string name, out MatqQuantizedEntry entry) => a.TryGetQuantized(name, out entry);
        public override bool HasFloat(string name) => a.TryGetFloat(name, out _);
        public override (int Rows, int Cols) FloatShape(string name) => Matrix(a.GetFloatInfo(name).Shape, name);
        public override float[] Float(string name) => a.ReadFloat32(name);
        public override (float[]? Dense, StoredRows? Stored) Table(string name)
        {
            var info = a.GetFloatInfo(name);
            if (info.Dtype == Matq.Formats.Safetensors.SafetensorsDtype.F32) return (a.ReadFloat32(name), null);
            var (rows, cols) = Matrix(info.Shape, name);
            var raw = a.ReadStored(name, out var dtype);
            return (null, new StoredRows(dtype, rows, cols, raw));
        }
        // a block of rows at a time from the file (FromFloatRows = FromFloat, bit for bit): the table is never held whole
        public override PackedMatrix QuantizeRows(string name, int bits, int group)
        {
            var (rows, cols) = FloatShape(name);
            return PackedMatrix.FromFloatRows(rows, cols, bits, group, (first, n, dst) => a.ReadRows(name, first, n, dst));
        }
        public override PackedMatrix Pack(MatqQuantizedEntry e, int masterBits, int bits)
        {
            var parts = a.ReadParts(e);
            int g = PackedGroup(e, parts.SideTensors);
            using var codes = a.MapCodes(e);   // unmapped once packed: one tensor's master codes at a time
            return PackedMatrix.FromMaster(codes.Span, e.OutFeatures, e.InFeatures, g, parts.Scales, parts.Zeros, masterBits, bits, parts.Perm);
        }
    }

    /// <summary>The token's embedding row into <paramref name="dst"/> [hidden], times <see cref="EmbeddingScale"/>.</summary>
    public void Embed(int id, Span<float> dst)
    {
        if ((uint)id >= (uint)Config.VocabSize)
            throw new MatqException($"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1}); the tokenizer does not match the model");
        int h = Config.HiddenSize;
        if (Embedding is not null) Embedding.AsSpan((int)((long)id * h), h).CopyTo(dst);
        else if (StoredEmbedding is not null) StoredEmbedding.RowsTo(id, 1, dst[..h]);
        else (PackedEmbedding ?? Head.Packed!).DequantizeRow(id, dst[..h]);
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
