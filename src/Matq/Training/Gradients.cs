// Contract: ClearGradients drops the gradient of every parameter an optimizer holds (PyTorch's
// zero_grad(set_to_none=True)). TorchSharp's Optimizer.zero_grad() zeroes them in place instead, which makes the next
// backward add each weight-sized gradient into a tensor of zeros (a read-read-write pass over every gradient per
// step); with none there, autograd stores the incoming gradient as is. A parameter no backward reaches then keeps no
// gradient, and optimizers skip it (no weight decay or momentum step on a phantom zero gradient).
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Training;

public static class Gradients
{
    /// <summary>Sets the gradient of every parameter of <paramref name="optimizer"/> to none.</summary>
    public static void ClearGradients(this optim.Optimizer optimizer)
    {
        foreach (var p in optimizer.parameters()) p.grad = null;
    }
}
