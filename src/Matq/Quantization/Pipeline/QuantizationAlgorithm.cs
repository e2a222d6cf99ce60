// Contract: the one interface every quantization algorithm implements — Prepare (hooks / module swaps) then Convert
// (solve, freeze, emit one QuantizedLinearResult per selected linear) — plus the registration a registry row holds.
using System.Text.Json.Nodes;
using Matq.Models;

namespace Matq.Quantization.Pipeline;

/// <summary>
/// Base of every algorithm (RTN, GPTQ/Athena, MatQuant, ...). The runner calls <see cref="Prepare"/> once, then
/// <see cref="Convert"/> once. Convert must leave the model's module tree as it found it (remove hooks, swap originals
/// back); it may update weights of linears it quantized (e.g. GPTQ's in-place error feedback), never any other tensor,
/// because the artifact export reads every non-quantized tensor from the model.
/// </summary>
public abstract class QuantizationAlgorithm
{
    protected QuantizationAlgorithm(QuantizationConfig config) => Config = config ?? throw new ArgumentNullException(nameof(config));

    /// <summary>The registry name written to the artifact's "algorithm" field.</summary>
    public abstract string Name { get; }

    public QuantizationConfig Config { get; }

    /// <summary>Bit-widths the codes were optimized for (the artifact's trained_bits); one-bit-width methods: [Bits].</summary>
    public virtual IReadOnlyList<int> TrainedBits => [Config.Bits];

    /// <summary>Whether Convert walks the model block by block through <see cref="QuantizationContext.Checkpoint"/>:
    /// commits each finished block and, given finished blocks, restores them and continues after the last.</summary>
    public virtual bool SupportsResume => false;

    /// <summary>Whether Convert reads the model one block at a time through <see cref="QuantizationContext.Hold"/>, so it
    /// runs on a block-streamed model (<see cref="QuantizationContext.Blocks"/>); false = it needs the whole model resident.</summary>
    public virtual bool Streams => false;

    /// <summary>Whether Convert quantizes through <see cref="SequentialQuantization"/>, whose linears of a block are
    /// independent once the block's Hessians are captured: `--gpus N` spreads them over the ranks (layer-parallel).</summary>
    public virtual bool LayerParallel => false;

    /// <summary>Attach hooks, swap modules, capture what Convert needs. Default: nothing.</summary>
    public virtual void Prepare(QuantizationContext context) { }

    /// <summary>Quantizes the run's selected linears (<see cref="QuantizationContext.Selected"/>, bound by the runner from
    /// <see cref="LinearSelection.Select"/>) and returns them in model order.</summary>
    public abstract IReadOnlyList<QuantizedLinearResult> Convert(QuantizationContext context);

    /// <summary>The algorithm's own settings (the artifact's algorithm_config also gets the common fields).</summary>
    public abstract JsonObject DescribeSettings();
}

/// <summary>A method-specific option: key as typed after --option (or a dedicated CLI flag), help text, default value.</summary>
public sealed record AlgorithmOption(string Key, string Description, string Default);

/// <summary>
/// One row of <see cref="AlgorithmRegistry"/>: the name users type, a one-line description, whether it needs
/// calibration text and its declared options. <see cref="Create"/> reads the options into the method's typed config
/// (one <see cref="OptionReader"/>; bad values throw one MatqException line) and builds the algorithm from it.
/// </summary>
public abstract record AlgorithmRegistration(
    string Name,
    string Description,
    bool NeedsCalibration,
    IReadOnlyList<AlgorithmOption> Options)
{
    /// <summary>Parses <paramref name="config"/>'s options into the typed config and builds the algorithm.</summary>
    public abstract QuantizationAlgorithm Create(QuantizationConfig config);
}

/// <summary>A registry row whose method takes the typed config <typeparamref name="TConfig"/>: <see cref="Parse"/> reads it
/// from the string options, <see cref="Build"/> makes the algorithm from the common config and the typed one (code that
/// holds a typed config calls <see cref="QuantizationRunner.Run{TConfig}"/> and never goes through strings).</summary>
public sealed record AlgorithmRegistration<TConfig>(
    string Name,
    string Description,
    bool NeedsCalibration,
    IReadOnlyList<AlgorithmOption> Options,
    Func<OptionReader, TConfig> Parse,
    Func<QuantizationConfig, TConfig, QuantizationAlgorithm> Build) : AlgorithmRegistration(Name, Description, NeedsCalibration, Options)
    where TConfig : notnull
{
    public override QuantizationAlgorithm Create(QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!string.Equals(config.Method, Name, StringComparison.Ordinal))
            throw new ArgumentException($"config is for method '{config.Method}', this row is '{Name}'", nameof(config));
        return Build(config, Parse(new OptionReader(config)));
    }
}

/// <summary>A linear chosen for quantization: HF module name, module, decoder block index (lm_head: NumLayers).</summary>
public sealed record SelectedLinear(string Name, TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> Module, int Block)
{
    /// <summary>The linear's weight [out, in] (a Parameter of the module).</summary>
    public TorchSharp.torch.Tensor Weight => LinearSelection.WeightOf(Name, Module);
}

/// <summary>Which linears a config quantizes, in model (execution) order.</summary>
public static class LinearSelection
{
    /// <summary>
    /// Every decoder linear (q/k/v/o, gate/up/down of each layer), plus lm_head when the config includes it (or its
    /// --layers names it) and the head is untied; <see cref="QuantizationConfig.Layers"/> keeps the linears its items
    /// match (lm_head requested by --include-head is kept whatever the family items say), OnlyLayers narrows further;
    /// every item and every OnlyLayers name must match a linear of the model.
    /// </summary>
    public static IReadOnlyList<SelectedLinear> Select(LlamaForCausalLM model, QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        if (config.IncludeLmHead && model.LmHead is null && config.OnlyLayers?.Contains("lm_head") == true)
            throw new MatqException("onlyLayers names lm_head but this model ties it to the embedding; quantize the tied table with --embedding-bits");
        if (config.Layers.NamesHead && model.LmHead is null)
            throw new MatqException("--layers names lm_head but this model ties it to the embedding; quantize the tied table with --embedding-bits");
        var all = model.Linears(config.IncludeLmHead || config.Layers.NamesHead || config.OnlyLayers?.Contains("lm_head") == true)
            .Select(l => new SelectedLinear(l.Name, l.Module, l.Name == "lm_head" ? model.Config.NumLayers : BlockOf(l.Name)))
            .ToList();
        if (!config.Layers.IsAll)
        {
            config.Layers.CheckAgainst(all.Select(l => l.Name).ToList());
            all = all.Where(l => config.Layers.Matches(l.Name) || (l.Name == "lm_head" && config.IncludeLmHead)).ToList();
        }
        if (config.OnlyLayers is null) return all;
        var known = all.Select(l => l.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var name in config.OnlyLayers)
        {
            var module = name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^7] : name;
            if (!known.Contains(module))
                throw new MatqException($"onlyLayers names '{name}', which is not a linear of this model{(config.Layers.IsAll ? "" : $" selected by --layers {config.Layers.Text}")} (e.g. {(all.Count > 0 ? all[0].Name : "lm_head")}, lm_head)");
        }
        var wanted = config.OnlyLayers.Select(n => n.EndsWith(".weight", StringComparison.Ordinal) ? n[..^7] : n).ToHashSet(StringComparer.Ordinal);
        return all.Where(l => wanted.Contains(l.Name)).ToList();
    }

    /// <summary>The blocks a run over <paramref name="selected"/> walks: every decoder layer, plus one for a selected lm_head.</summary>
    public static int BlockCount(LlamaForCausalLM model, IReadOnlyList<SelectedLinear> selected) =>
        model.Config.NumLayers + (selected.Any(s => s.Name == "lm_head") ? 1 : 0);

    /// <summary>"model.layers.7.mlp.up_proj" → 7.</summary>
    public static int BlockOf(string name)
    {
        const string prefix = "model.layers.";
        int dot = name.IndexOf('.', prefix.Length);
        return name.StartsWith(prefix, StringComparison.Ordinal) && dot > 0 && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), out var i)
            ? i : throw new ArgumentException($"'{name}' is not a decoder-layer module name");
    }

    /// <summary>The "weight" parameter [out, in] of a linear module.</summary>
    public static TorchSharp.torch.Tensor WeightOf(string name, TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> module) =>
        module is TorchSharp.Modules.Linear linear ? linear.weight!
            : module.get_parameter("weight") ?? throw new MatqException($"module '{name}' has no weight parameter; is it a linear?");
}
