// Gated feed-forward: x [B, T, hidden] -> down(act(gate(x)) * up(x)) [B, T, hidden] with act = SiLU (SwiGLU) or tanh
// GELU (GeGLU, Gemma); gate/up/down are swappable [out, in] linears registered under their HF names.
using Matq.Runtime.Models;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Matq.Models;

public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] private nn.Module<Tensor, Tensor> gate_proj;
    [ComponentName(Name = "up_proj")] private nn.Module<Tensor, Tensor> up_proj;
    [ComponentName(Name = "down_proj")] private nn.Module<Tensor, Tensor> down_proj;

    public static readonly string[] LinearNames = { "gate_proj", "up_proj", "down_proj" };

    private readonly Activation _activation;

    public LlamaMlp(LlamaConfig c, string prefix, WeightSource? source, Device? device, ScalarType dtype) : base("LlamaMlp")
    {
        _activation = c.Activation;
        gate_proj = ModelInit.Linear(source, prefix + ".gate_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias, device, dtype);
        up_proj = ModelInit.Linear(source, prefix + ".up_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias, device, dtype);
        down_proj = ModelInit.Linear(source, prefix + ".down_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias, device, dtype);
        RegisterComponents();
    }

    public nn.Module<Tensor, Tensor> Get(string name) => name switch
    {
        "gate_proj" => gate_proj, "up_proj" => up_proj, "down_proj" => down_proj,
        _ => throw new ArgumentException($"no linear '{name}' in mlp (have {string.Join(", ", LinearNames)})"),
    };

    public void Replace(string name, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        _ = Get(name);
        switch (name)
        {
            case "gate_proj": gate_proj = module; break;
            case "up_proj": up_proj = module; break;
            default: down_proj = module; break;
        }
        register_module(name, null!);
        register_module(name, module);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var gate = gate_proj.call(x);
        var act = _activation == Activation.GeluTanh ? F.gelu(gate, TorchSharp.Modules.GELU.Approximate.tanh) : F.silu(gate);
        var h = act * up_proj.call(x);
        return down_proj.call(h).MoveToOuterDisposeScope();
    }
}
