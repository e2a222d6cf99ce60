// Token embedding table: ids [B, T] int64 -> weight[ids] [B, T, hidden]. A managed Parameter "weight" [vocab, hidden]
// (TorchSharp's native Embedding hides its weight from named_parameters when built from a pretrained tensor).
using TorchSharp.Utils;

namespace Matq.Models;

public sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private Parameter weight;

    public Parameter Weight => weight;

    /// <param name="table">[vocab, hidden]; taken over, not copied.</param>
    public TokenEmbedding(Tensor table) : base("TokenEmbedding")
    {
        if (table.ndim != 2) throw new ArgumentException($"embedding table must be [vocab, hidden], got [{string.Join(", ", table.shape)}]");
        weight = ModelInit.Param(table);
        RegisterComponents();
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        // gather rows of the flattened ids, then restore [..., hidden]
        var shape = ids.shape.Append(weight.shape[1]).ToArray();
        return weight.index_select(0, ids.reshape(-1)).view(shape).MoveToOuterDisposeScope();
    }
}
