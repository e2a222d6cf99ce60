// Contract: the Fashion-MNIST classifiers: a small ResNet (stem conv + stages of conv-BN-ReLU residual blocks + global
// average pool + linear) and an MLP, both built from QConv2d/QLinear so every weight layer can be fake-quantized.
// Input x [N, 1, 28, 28] in [0, 1]; output logits [N, 10].
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Matq.Models.Vision;

/// <summary>Architecture: Arch "resnet" (Widths = per-stage channels, Blocks = residual blocks per stage) or
/// "mlp" (Widths = hidden sizes, Blocks unused).</summary>
public sealed record VisionNetConfig
{
    [JsonConstructor]
    public VisionNetConfig(string arch, int[] widths, int blocks = 1, int classes = 10, int side = 28)
    {
        if (arch is not ("resnet" or "mlp")) throw new MatqException($"arch = '{arch}' is not supported: allowed resnet, mlp");
        if (widths is null || widths.Length == 0 || widths.Any(w => w < 1 || w > 4096))
            throw new MatqException("widths must be 1 or more sizes in 1..4096");
        if (arch == "resnet" && (blocks < 1 || blocks > 8)) throw new MatqException($"blocks = {blocks} is out of range: allowed 1..8");
        if (classes < 2) throw new MatqException($"classes = {classes} is out of range: allowed ≥ 2");
        Arch = arch; Widths = widths; Blocks = blocks; Classes = classes; Side = side;
    }

    public string Arch { get; }
    public int[] Widths { get; }
    public int Blocks { get; }
    public int Classes { get; }
    public int Side { get; }

    /// <summary>~175K parameters: widths 16/32/64, two blocks per stage.</summary>
    public static VisionNetConfig ResNetSmall { get; } = new("resnet", [16, 32, 64], 2);
    /// <summary>~235K parameters: 784 → 256 → 128 → 10.</summary>
    public static VisionNetConfig MlpSmall { get; } = new("mlp", [256, 128]);

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
    public static VisionNetConfig FromJson(string json) =>
        JsonSerializer.Deserialize<VisionNetConfig>(json, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })
        ?? throw new MatqException("config JSON is empty");
}

/// <summary>A classifier whose weight layers are exposed in forward order (for quantization and EfQAT).</summary>
public abstract class VisionNet : nn.Module<Tensor, Tensor>
{
    protected VisionNet(string name, VisionNetConfig config) : base(name) => Config = config;

    public VisionNetConfig Config { get; }

    /// <summary>Every conv/linear layer with its state-dict prefix, in forward order.</summary>
    public IReadOnlyList<(string Name, QuantLayer Layer)> QuantLayers() =>
        named_modules().Where(m => m.module is QuantLayer).Select(m => (m.name, (QuantLayer)m.module)).ToList();

    public long ParameterCount() => parameters().Sum(p => p.numel());

    public static VisionNet Create(VisionNetConfig config) =>
        config.Arch == "resnet" ? new ResNetCnn(config) : new MlpNet(config);
}

/// <summary>conv3×3-BN-ReLU-conv3×3-BN + shortcut (identity, or 1×1 conv-BN when the shape changes), then ReLU.</summary>
public sealed class ResidualBlock : nn.Module<Tensor, Tensor>
{
    private readonly QConv2d conv1, conv2;
    private readonly BatchNorm2d bn1, bn2;
    private readonly QConv2d? down;
    private readonly BatchNorm2d? down_bn;

    public ResidualBlock(string name, long cin, long cout, long stride) : base(name)
    {
        conv1 = new QConv2d("conv1", cin, cout, 3, stride, 1);
        bn1 = nn.BatchNorm2d(cout);
        conv2 = new QConv2d("conv2", cout, cout, 3, 1, 1);
        bn2 = nn.BatchNorm2d(cout);
        if (stride != 1 || cin != cout)
        {
            down = new QConv2d("down", cin, cout, 1, stride, 0);
            down_bn = nn.BatchNorm2d(cout);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        Tensor h = nn.functional.relu(bn1.forward(conv1.forward(x)));
        h = bn2.forward(conv2.forward(h));
        Tensor s = down is null ? x : down_bn!.forward(down.forward(x));
        return nn.functional.relu(h.add(s));
    }
}

/// <summary>stem conv3×3(1→w0)-BN-ReLU; stage i: Blocks residual blocks at width w_i (stride 2 entering stages ≥ 1); pool; fc.</summary>
public sealed class ResNetCnn : VisionNet
{
    private readonly QConv2d stem;
    private readonly BatchNorm2d stem_bn;
    private readonly ModuleList<ResidualBlock> blocks = new();
    private readonly QLinear fc;

    public ResNetCnn(VisionNetConfig config) : base("resnet", config)
    {
        stem = new QConv2d("stem", 1, config.Widths[0], 3, 1, 1);
        stem_bn = nn.BatchNorm2d(config.Widths[0]);
        long cin = config.Widths[0];
        for (int s = 0; s < config.Widths.Length; s++)
            for (int b = 0; b < config.Blocks; b++)
            {
                blocks.Add(new ResidualBlock($"block{s}_{b}", cin, config.Widths[s], s > 0 && b == 0 ? 2 : 1));
                cin = config.Widths[s];
            }
        fc = new QLinear("fc", cin, config.Classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        Tensor h = nn.functional.relu(stem_bn.forward(stem.forward(x)));   // [N, w0, 28, 28]
        foreach (var b in blocks) h = b.forward(h);                        // [N, wL, 7, 7]
        h = h.mean(new long[] { 2, 3 });                                   // [N, wL]
        return fc.forward(h);                                              // [N, classes]
    }
}

/// <summary>Flatten → (linear-ReLU)* → linear.</summary>
public sealed class MlpNet : VisionNet
{
    private readonly ModuleList<QLinear> layers = new();

    public MlpNet(VisionNetConfig config) : base("mlp", config)
    {
        long cin = (long)config.Side * config.Side;
        for (int i = 0; i < config.Widths.Length; i++)
        {
            layers.Add(new QLinear($"fc{i}", cin, config.Widths[i]));
            cin = config.Widths[i];
        }
        layers.Add(new QLinear("out", cin, config.Classes));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        Tensor h = x.reshape(x.shape[0], -1);                              // [N, 784]
        for (int i = 0; i < layers.Count; i++)
        {
            h = layers[i].forward(h);
            if (i < layers.Count - 1) h = nn.functional.relu(h);
        }
        return h;
    }
}
