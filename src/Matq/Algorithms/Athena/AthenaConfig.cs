// Contract: the validated, immutable options of the second-order per-layer solver (GPTQ-exact and Athena modes);
// an invalid value throws MatqException naming the field and its allowed range.
using Matq.Kernels.Quantization;

namespace Matq.Algorithms.Athena;

/// <summary>Which second-order procedure quantizes a layer.</summary>
public enum AthenaMode
{
    /// <summary>The published GPTQ procedure (Frantar et al. 2022): one error-feedback pass over the columns.</summary>
    GptqExact,

    /// <summary>GPTQ's pass, then Hessian-weighted refinement sweeps of the group parameters (see AthenaSolver).</summary>
    Athena,
}

/// <summary>Which values of a group's columns its min-max grid is fitted on when the pass reaches the group's first
/// column (groups fitted during the pass: natural column order, per-channel or grouped). They differ only where groups
/// are smaller than the block, or straddle blocks.</summary>
public enum GroupGrid
{
    /// <summary>The columns as they were when the current block of B columns started, before this block's error updates:
    /// upstream GPTQ (IST-DASLab gptq.py, fasterquant: find_params reads the outer W, updated once per block).</summary>
    BlockStart,

    /// <summary>The columns with all error feedback so far, this block's included (matq's earlier rule).</summary>
    Updated,
}

/// <summary>Options of <see cref="AthenaSolver"/>.</summary>
public sealed record AthenaConfig
{
    /// <summary>Bits (2..8), scheme and granularity (per-tensor, per-channel or groups of g input columns).</summary>
    public QuantSpec Spec { get; }

    public AthenaMode Mode { get; }

    /// <summary>λ = PercDamp · mean(diag H) is added to diag H before the Cholesky factorisation; 0..1, default 0.01.</summary>
    public double PercDamp { get; }

    /// <summary>Columns per lazy-batch block B (the "column grouping" of the error propagation); 1..65536, default 128.</summary>
    public int BlockSize { get; }

    /// <summary>Process columns by descending diag H; group parameters stay in the original column layout
    /// ("static groups": computed up front from the unpermuted weights), so no permutation is stored.</summary>
    public bool ActOrder { get; }

    /// <summary>Athena refinement sweeps after the GPTQ pass; 0..16, default 2 (ignored in GPTQ-exact mode).</summary>
    public int Sweeps { get; }

    /// <summary>How many times the dampening is multiplied by 10 when the damped Hessian is not positive definite; 0..6, default 3.</summary>
    public int MaxDampRetries { get; }

    /// <summary>Rows of W solved together ("row grouping"; rows are independent under tr(ΔW H ΔWᵀ), so this bounds
    /// memory without changing the result); 0 = all rows at once, else 1..2^30.</summary>
    public int RowBlockSize { get; }

    /// <summary>What a group's grid is fitted on during the pass; default <see cref="GroupGrid.BlockStart"/> (upstream GPTQ).</summary>
    public GroupGrid GroupGrid { get; }

    public AthenaConfig(QuantSpec spec, AthenaMode mode = AthenaMode.Athena, double percDamp = 0.01, int blockSize = 128,
        bool actOrder = false, int sweeps = 2, int maxDampRetries = 3, int rowBlockSize = 0, GroupGrid groupGrid = GroupGrid.BlockStart)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Bits < 2)
            throw new MatqException($"bits = {spec.Bits} is out of range for Athena/GPTQ: allowed 2..8.");
        if (!Enum.IsDefined(mode))
            throw new MatqException($"mode = {(int)mode} is not an Athena mode: use GptqExact or Athena.");
        if (!(percDamp >= 0 && percDamp <= 1))
            throw new MatqException($"percDamp = {percDamp} is out of range: allowed 0..1 (a fraction of mean(diag H); 0.01 is usual).");
        if (blockSize < 1 || blockSize > 65536)
            throw new MatqException($"blockSize = {blockSize} is out of range: allowed 1..65536 columns (128 is usual).");
        if (sweeps < 0 || sweeps > 16)
            throw new MatqException($"sweeps = {sweeps} is out of range: allowed 0..16 (2-3 is usual).");
        if (maxDampRetries < 0 || maxDampRetries > 6)
            throw new MatqException($"maxDampRetries = {maxDampRetries} is out of range: allowed 0..6.");
        if (rowBlockSize < 0 || rowBlockSize > (1 << 30))
            throw new MatqException($"rowBlockSize = {rowBlockSize} is out of range: allowed 0 (all rows) or 1..{1 << 30}.");
        if (!Enum.IsDefined(groupGrid))
            throw new MatqException($"groupGrid = {(int)groupGrid} is not a group-grid rule: use BlockStart or Updated.");
        Spec = spec;
        Mode = mode;
        PercDamp = percDamp;
        BlockSize = blockSize;
        ActOrder = actOrder;
        Sweeps = sweeps;
        MaxDampRetries = maxDampRetries;
        RowBlockSize = rowBlockSize;
        GroupGrid = groupGrid;
    }

    /// <summary>The same options in GPTQ-exact mode (the baseline Athena refines).</summary>
    public AthenaConfig AsGptqExact() => new(Spec, AthenaMode.GptqExact, PercDamp, BlockSize, ActOrder, Sweeps, MaxDampRetries, RowBlockSize, GroupGrid);
}
