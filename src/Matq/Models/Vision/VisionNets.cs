// Contract: the Fashion-MNIST classifiers: a small ResNet (stem conv + stages of conv-norm-act residual blocks + global
// average pool + linear) and an MLP (linear[-norm]-act layers), both built from QConv2d/QLinear so every weight layer
// can be fake-quantized. The norm is BatchNorm or Layer-Batch Norm (config "norm"), the activation ReLU unless a
// quantizer replaces it (MaQD). FoldNorms moves every eval-mode norm into the layer before it.
// Input x [N, 1, 28, 28] in [0, 1]; output logits [N, 10].
using System.Text.Json;
using System.Text.Json.Serialization;
using Matq.Runtime.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models.Vision;

/// <summary>Architecture: Arch "resnet" (Widths = per-stage channels, Blocks = residual blocks per stage) or
/// "mlp" (Widths = hidden sizes, Blocks unused). Norm: "bn" | "lbn" (resnet; default bn) or "none" | "bn" | "lbn"
/// (mlp; default none). StandardizeWeights: every conv/linear uses WS(W)/sqrt(fan_in) (per-output-channel weight
/// standardization, as MaQD's weights; default on with lbn, whose per-sample statistics mix channels and train poorly
/// without it, off otherwise). config.json files written before these fields existed load with the defaults.</summary>
public sealed record VisionNetConfig
{
    public VisionNetConfig(string arch, int[] widths, int blocks = 1, int classes = 10, int side = 28, string? norm = null,
        bool? standardizeWeights = null)
    {
        if (arch is not ("resnet" or "mlp")) throw new MatqException($"arch = '{arch}' is not supported: allowed resnet, mlp");
        if (widths is null || widths.Length == 0 || widths.Any(w => w < 1 || w > 4096))
            throw new MatqException("widths must be 1 or more sizes in 1..4096");
        if (arch == "resnet" && (blocks < 1 || blocks > 8)) throw new MatqException($"blocks = {blocks} is out of range: allowed 1..8");
        if (classes < 2) throw new MatqException($"classes = {classes} is out of range: allowed ≥ 2");
        norm ??= arch == "resnet" ? "bn" : "none";
        string[] norms = arch == "resnet" ? ["bn", "lbn"] : ["none", "bn", "lbn"];
        if (!norms.Contains(norm)) throw new MatqException($"norm '{norm}' is not supported for {arch}: allowed {string.Join(", ", norms)}");
        Arch = arch; Widths = widths; Blocks = blocks; Classes = classes; Side = side; Norm = norm;
        StandardizeWeights = standardizeWeights ?? norm == "lbn";
    }

    public string Arch { get; }
    public int[] Widths { get; }
    public int Blocks { get; }
    public int Classes { get; }
    public int Side { get; }
    /// <summary>"bn", "lbn" or "none" (no normalization layers; mlp only).</summary>
    public string Norm { get; }
    /// <summary>Weights standardized per output channel (and scaled by 1/sqrt(fan_in)) before use.</summary>
    public bool StandardizeWeights { get; }

    /// <summary>The same architecture with another normalization (and weight standardization: null = that norm's default).</summary>
    public VisionNetConfig WithNorm(string norm, bool? standardizeWeights = null) => new(Arch, Widths, Blocks, Classes, Side, norm, standardizeWeights);

    /// <summary>~175K parameters: widths 16/32/64, two blocks per stage.</summary>
    public static VisionNetConfig ResNetSmall { get; } = new("resnet", [16, 32, 64], 2);
    /// <summary>~235K parameters: 784 → 256 → 128 → 10.</summary>
    public static VisionNetConfig MlpSmall { get; } = new("mlp", [256, 128]);

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
    public static VisionNetConfig FromJson(string json)
    {
        ConfigJson? j;
        try { j = JsonSerializer.Deserialize<ConfigJson>(json, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }); }
        catch (JsonException e) { throw new MatqException($"vision config JSON is invalid: {e.Message.Split('\n')[0]}", e); }
        if (j is null) throw new MatqException("config JSON is empty");
        return new(j.Arch ?? throw new MatqException("config JSON lacks arch"), j.Widths ?? throw new MatqException("config JSON lacks widths"),
            j.Blocks ?? 1, j.Classes ?? 10, j.Side ?? 28, j.Norm, j.StandardizeWeights);
    }

    // The file form: every field optional except arch and widths, so older files (no norm / standardize_weights) load.
    private sealed record ConfigJson(string? Arch, int[]? Widths, int? Blocks, int? Classes, int? Side, string? Norm, bool? StandardizeWeights);
}

/// <summary>The activation used between layers: ReLU, or a replacement (MaQD's quantized activation) shared by every block.</summary>
public sealed class Activation
{
    /// <summary>Replaces ReLU when set.</summary>
    public Func<Tensor, Tensor>? Override { get; set; }

    public Tensor Apply(Tensor x) => Override is null ? nn.functional.relu(x) : Override(x);
}

/// <summary>A classifier whose weight layers are exposed in forward order (for quantization and EfQAT).</summary>
public abstract class VisionNet : nn.Module<Tensor, Tensor>
{
    protected VisionNet(string name, VisionNetConfig config) : base(name) => Config = config;

    public VisionNetConfig Config { get; }

    /// <summary>The activation every block applies (ReLU unless overridden).</summary>
    public Activation Act { get; } = new();

    /// <summary>Each normalization with the conv/linear layer that feeds it, in forward order (empty for norm "none").</summary>
    public abstract IReadOnlyList<(QuantLayer Layer, ChannelNorm Norm)> NormPairs();

    /// <summary>Every normalization layer.</summary>
    public IReadOnlyList<ChannelNorm> Norms() => NormPairs().Select(p => p.Norm).ToList();

    /// <summary>Moves each norm's eval-mode affine map (scale_c, shift_c) into the layer before it (a per-channel output
    /// scale and a bias) and makes the norm an identity; the net's eval outputs are unchanged. Inference only.</summary>
    public void FoldNorms()
    {
        var pairs = NormPairs();
        if (pairs.Count == 0)
            throw new MatqException($"this {Config.Arch} has no normalization layers to fold (norm {Config.Norm}): folding needs a net trained with norm bn or lbn");
        if (pairs.Any(p => p.Norm.Folded)) throw new MatqException("the normalization layers are already folded");
        foreach (var (layer, norm) in pairs)
        {
            var (scale, shift) = norm.InferenceAffine();
            layer.FoldAffine(scale, shift);
            scale.Dispose(); shift.Dispose();
            norm.Folded = true;
        }
    }

    /// <summary>Every conv/linear layer with its state-dict prefix, in module registration order (ResNet: stem, fc, then
    /// the blocks' convs), which is not the forward order: use <see cref="EndLayers"/> for the first and last layer.</summary>
    public IReadOnlyList<(string Name, QuantLayer Layer)> QuantLayers() =>
        named_modules().Where(m => m.module is QuantLayer).Select(m => (m.name, (QuantLayer)m.module)).ToList();

    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>The first weight layer of the forward pass (it reads the pixels) and the last (the classifier).</summary>
    public abstract (QuantLayer First, QuantLayer Last) EndLayers();

    public static VisionNet Create(VisionNetConfig config)
    {
        VisionNet net = config.Arch == "resnet" ? new ResNetCnn(config) : new MlpNet(config);
        foreach (var (_, layer) in net.QuantLayers()) layer.Standardize = config.StandardizeWeights;
        return net;
    }
}

/// <summary>conv3×3-norm-act-conv3×3-norm + shortcut (identity, or 1×1 conv-norm when the shape changes), then act.</summary>
public sealed class ResidualBlock : nn.Module<Tensor, Tensor>
{
    private readonly QConv2d conv1, conv2;
    private readonly ChannelNorm bn1, bn2;
    private readonly QConv2d? down;
    private readonly ChannelNorm? down_bn;
    private readonly Activation _act;

    public ResidualBlock(string name, long cin, long cout, long stride, string norm, Activation act) : base(name)
    {
        _act = act;
        conv1 = new QConv2d("conv1", cin, cout, 3, stride, 1);
        bn1 = ChannelNorm.Create(norm, cout);
        conv2 = new QConv2d("conv2", cout, cout, 3, 1, 1);
        bn2 = ChannelNorm.Create(norm, cout);
        if (stride != 1 || cin != cout)
        {
            down = new QConv2d("down", cin, cout, 1, stride, 0);
            down_bn = ChannelNorm.Create(norm, cout);
        }
        RegisterComponents();
    }

    public IEnumerable<(QuantLayer, ChannelNorm)> NormPairs()
    {
        yield return (conv1, bn1);
        yield return (conv2, bn2);
        if (down is not null) yield return (down, down_bn!);
    }

    public override Tensor forward(Tensor x)
    {
        Tensor h = _act.Apply(bn1.forward(conv1.forward(x)));
        h = bn2.forward(conv2.forward(h));
        Tensor s = down is null ? x : down_bn!.forward(down.forward(x));
        return _act.Apply(h.add(s));
    }
}

/// <summary>stem conv3×3(1→w0)-norm-act; stage i: Blocks residual blocks at width w_i (stride 2 entering stages ≥ 1); pool; fc.</summary>
public sealed class ResNetCnn : VisionNet
{
    private readonly QConv2d stem;
    private readonly ChannelNorm stem_bn;
    private readonly ModuleList<ResidualBlock> blocks = new();
    private readonly QLinear fc;

    public ResNetCnn(VisionNetConfig config) : base("resnet", config)
    {
        stem = new QConv2d("stem", 1, config.Widths[0], 3, 1, 1);
        stem_bn = ChannelNorm.Create(config.Norm, config.Widths[0]);
        long cin = config.Widths[0];
        for (int s = 0; s < config.Widths.Length; s++)
            for (int b = 0; b < config.Blocks; b++)
            {
                blocks.Add(new ResidualBlock($"block{s}_{b}", cin, config.Widths[s], s > 0 && b == 0 ? 2 : 1, config.Norm, Act));
                cin = config.Widths[s];
            }
        fc = new QLinear("fc", cin, config.Classes);
        RegisterComponents();
    }

    public override (QuantLayer First, QuantLayer Last) EndLayers() => (stem, fc);

    public override IReadOnlyList<(QuantLayer Layer, ChannelNorm Norm)> NormPairs() =>
        new[] { ((QuantLayer)stem, stem_bn) }.Concat(blocks.SelectMany(b => b.NormPairs())).ToList();

    public override Tensor forward(Tensor x)
    {
        Tensor h = Act.Apply(stem_bn.forward(stem.forward(x)));            // [N, w0, 28, 28]
        foreach (var b in blocks) h = b.forward(h);                        // [N, wL, 7, 7]
        h = h.mean(new long[] { 2, 3 });                                   // [N, wL]
        return fc.forward(h);                                              // [N, classes]
    }
}

/// <summary>Flatten → (linear[-norm]-act)* → linear.</summary>
public sealed class MlpNet : VisionNet
{
    private readonly ModuleList<QLinear> layers = new();
    private readonly ModuleList<ChannelNorm> norms = new();

    public MlpNet(VisionNetConfig config) : base("mlp", config)
    {
        long cin = (long)config.Side * config.Side;
        for (int i = 0; i < config.Widths.Length; i++)
        {
            layers.Add(new QLinear($"fc{i}", cin, config.Widths[i]));
            if (config.Norm != "none") norms.Add(ChannelNorm.Create(config.Norm, config.Widths[i]));
            cin = config.Widths[i];
        }
        layers.Add(new QLinear("out", cin, config.Classes));
        RegisterComponents();
    }

    public override (QuantLayer First, QuantLayer Last) EndLayers() => (layers[0], layers[layers.Count - 1]);

    public override IReadOnlyList<(QuantLayer Layer, ChannelNorm Norm)> NormPairs() =>
        norms.Select((n, i) => ((QuantLayer)layers[i], n)).ToList();

    public override Tensor forward(Tensor x)
    {
        Tensor h = x.reshape(x.shape[0], -1);                              // [N, 784]
        for (int i = 0; i < layers.Count; i++)
        {
            h = layers[i].forward(h);
            if (i < layers.Count - 1)
            {
                if (norms.Count > 0) h = norms[i].forward(h);
                h = Act.Apply(h);
            }
        }
        return h;
    }
}
