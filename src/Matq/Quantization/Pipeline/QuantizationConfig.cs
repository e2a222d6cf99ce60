// Contract: the common, immutable part of every quantization run — method (a registry name), master bits 1..8,
// group size, scheme, which linears — validated in the constructor with one MatqException naming the field.
using Matq.Kernels.Quantization;

namespace Matq.Quantization.Pipeline;

/// <summary>
/// What to quantize and how coarsely. Algorithm-specific settings travel as string <see cref="Options"/> (the keys the
/// method's <see cref="AlgorithmRegistration"/> declares); the registry row reads them with one <see cref="OptionReader"/> into the algorithm's typed config record.
/// </summary>
public sealed record QuantizationConfig
{
    /// <summary>Registry name of the algorithm ("rtn", ...); see <see cref="AlgorithmRegistry"/>.</summary>
    public string Method { get; }

    /// <summary>Master bit width c of the stored codes, 1..8 (2..8 when symmetric).</summary>
    public int Bits { get; }

    /// <summary>Input columns per group, or -1 = one group per output channel (0 and -1 both mean per-channel on input).</summary>
    public int GroupSize { get; }

    public bool Symmetric { get; }

    /// <summary>Also quantize lm_head (an untied head only; a tied head is the embedding, see <see cref="EmbeddingBits"/>).</summary>
    public bool IncludeLmHead { get; }

    /// <summary>Store model.embed_tokens.weight [vocab, hidden] as master codes like a linear (RTN min-max grid from the
    /// weights, groups of <see cref="GroupSize"/> along hidden) at these bits, which must be <see cref="Bits"/>; null keeps it
    /// float in the checkpoint dtype. A tied head then reads the same quantized table.</summary>
    public int? EmbeddingBits { get; }

    /// <summary>When set, only these HF module names (e.g. "model.layers.0.mlp.down_proj") are quantized.</summary>
    public IReadOnlyList<string>? OnlyLayers { get; }

    /// <summary>Which linears by family or pattern (--layers ffn|attn|all|suffixes|globs); unselected linears stay float.
    /// Applied together with <see cref="OnlyLayers"/> (a name must pass both).</summary>
    public LayerFilter Layers { get; }

    /// <summary>Method-specific settings by key (e.g. rtn: clip=mse); keys are checked against the method's declared options.</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    public QuantizationConfig(string method, int bits, int groupSize = 128, bool symmetric = false, bool includeLmHead = false,
        IReadOnlyDictionary<string, string>? options = null, IReadOnlyList<string>? onlyLayers = null, LayerFilter? layers = null,
        int? embeddingBits = null)
    {
        var registration = AlgorithmRegistry.Get(method);   // unknown → one line listing the known methods
        if (bits < QuantSpec.MinBits || bits > QuantSpec.MaxBits)
            throw new MatqException($"bits = {bits} is out of range: allowed {QuantSpec.MinBits}..{QuantSpec.MaxBits} (the master bit width of the codes)");
        if (symmetric && bits < 2)
            throw new MatqException($"bits = {bits} is out of range for symmetric quantization: allowed 2..8; use 2 or more bits or the asymmetric scheme");
        if (groupSize < -1)
            throw new MatqException($"groupSize = {groupSize} is invalid: use 0 or -1 for per-channel, or a positive number of input columns (e.g. 32, 64, 128)");
        var opts = new Dictionary<string, string>(options ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        OptionReader.CheckKeys(registration.Name, registration.Options, opts.Keys);
        if (onlyLayers is { Count: 0 })
            throw new MatqException("onlyLayers is empty: leave it unset to quantize every decoder linear, or name at least one layer");
        if (embeddingBits is int eb && eb != bits)
            throw new MatqException($"--embedding-bits {eb}: the embedding is stored as master codes beside the linears' and sliced like them, so it takes the artifact's master bits ({bits}); give --embedding-bits {bits}, or leave it out to keep the embedding float");
        Method = registration.Name;
        Bits = bits;
        EmbeddingBits = embeddingBits;
        GroupSize = groupSize == 0 ? -1 : groupSize;
        Symmetric = symmetric;
        IncludeLmHead = includeLmHead;
        Options = opts;
        OnlyLayers = onlyLayers?.ToArray();
        Layers = layers ?? LayerFilter.All;
    }

    public bool PerChannel => GroupSize == -1;

    /// <summary>The quantizer of one weight: per-channel or grouped, asymmetric or symmetric, at the master bits.</summary>
    public QuantSpec Spec => PerChannel
        ? QuantSpec.PerChannel(Bits, Symmetric ? QuantScheme.Symmetric : QuantScheme.Asymmetric)
        : QuantSpec.Grouped(Bits, GroupSize, Symmetric ? QuantScheme.Symmetric : QuantScheme.Asymmetric);

    /// <summary>The stored group width for a weight of <paramref name="inFeatures"/> columns: -1 per-channel, else min(g, in).</summary>
    public int StoredGroupSize(int inFeatures) => PerChannel ? -1 : Math.Min(GroupSize, inFeatures);

    /// <summary>The fields as a JSON-ready dictionary (recorded in the artifact's algorithm_config).</summary>
    public IReadOnlyDictionary<string, object?> Describe() => new Dictionary<string, object?>
    {
        ["method"] = Method,
        ["bits"] = Bits,
        ["group_size"] = GroupSize,
        ["symmetric"] = Symmetric,
        ["include_lm_head"] = IncludeLmHead,
        ["embedding_bits"] = EmbeddingBits,
        ["only_layers"] = OnlyLayers,
        ["layers"] = Layers.Text,
    };
}
