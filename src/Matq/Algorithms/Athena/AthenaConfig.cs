// Contract: the validated, immutable options of the second-order per-layer solver (GPTQ-exact and Athena modes);
// an invalid value throws MatqException naming the field and its allowed range.
using Matq.Kernels.Quantization;
using Matq.Quantization.Pipeline;

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

/// <summary>How GPTQ's column pass is executed; both give the same codes (up to the last bit of a rounding tie).</summary>
public enum ColumnPassEngine
{
    /// <summary>One kernel call per block of B columns where the rule allows (the affine rule with fixed or block-start
    /// grids): vectorized C# on the CPU, an NVRTC-compiled kernel on CUDA. Other rules run eagerly.</summary>
    Block,

    /// <summary>About 20 TorchSharp operations per column (the reference; launch-bound on a GPU).</summary>
    Eager,
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
    /// memory without changing the result); 0 = automatic (blocks of at most 2^28 values: every linear of an 8B decoder
    /// block whole, a 128256-row head in two), else 1..2^30.</summary>
    public int RowBlockSize { get; }

    /// <summary>Calibration windows per forward batch of the sequential calibration (pipeline runs); 1..4096, default 8.</summary>
    public int CalibrationBatch { get; }

    /// <summary>What a group's grid is fitted on during the pass; default <see cref="GroupGrid.BlockStart"/> (upstream GPTQ).</summary>
    public GroupGrid GroupGrid { get; }

    /// <summary>How the column pass runs (<see cref="ColumnPassEngine.Block"/> by default).</summary>
    public ColumnPassEngine ColumnPass { get; init; } = ColumnPassEngine.Block;

    public AthenaConfig(QuantSpec spec, AthenaMode mode = AthenaMode.Athena, double percDamp = 0.01, int blockSize = 128,
        bool actOrder = false, int sweeps = 2, int maxDampRetries = 3, int rowBlockSize = 0, int calibrationBatch = 8,
        GroupGrid groupGrid = GroupGrid.BlockStart)
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
            throw new MatqException($"rowBlockSize = {rowBlockSize} is out of range: allowed 0 (automatic) or 1..{1 << 30}.");
        if (calibrationBatch < 1 || calibrationBatch > 4096)
            throw new MatqException($"{CalibBatchKey} = {calibrationBatch} is out of range: allowed 1..4096 windows per batch");
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
        CalibrationBatch = calibrationBatch;
        GroupGrid = groupGrid;
    }

    /// <summary>The same options in GPTQ-exact mode (the baseline Athena refines).</summary>
    public AthenaConfig AsGptqExact() => new(Spec, AthenaMode.GptqExact, PercDamp, BlockSize, ActOrder, Sweeps, MaxDampRetries, RowBlockSize, CalibrationBatch, GroupGrid)
        { ColumnPass = ColumnPass };

    /// <summary>Option keys as typed after --option (gptq, athena, and the bases/starts that run Athena: matquant, efqat).</summary>
    public const string PercDampKey = "percdamp", BlockKey = "block", ActOrderKey = "act-order", SweepsKey = "sweeps",
        DampRetriesKey = "damp-retries", RowBlockKey = "row-block", CalibBatchKey = "calib-batch", GroupGridKey = "group-grid",
        ColumnPassKey = "column-pass";

    /// <summary>The values of <see cref="GroupGridKey"/>.</summary>
    public const string BlockStartGrid = "block-start", UpdatedGrid = "updated";

    /// <summary>The values of <see cref="ColumnPassKey"/>.</summary>
    public const string BlockPass = "block", EagerPass = "eager";

    /// <summary>The declared options (with sweeps only where the mode refines).</summary>
    public static IReadOnlyList<AlgorithmOption> Options(bool sweeps) =>
    [
        new(PercDampKey, "dampening λ = percdamp·mean(diag H) added to diag H, 0..1", "0.01"),
        new(BlockKey, "columns per lazy-batch block B", "128"),
        new(ActOrderKey, "true: columns by descending diag H (static groups, no stored perm)", "false"),
        new(GroupGridKey, "group grids fitted on the block's weights as it started (block-start, upstream GPTQ) or error-updated so far (updated)", BlockStartGrid),
        .. (sweeps ? new[] { new AlgorithmOption(SweepsKey, "Hessian-weighted refit + re-quantize sweeps after the GPTQ pass, 0..16", "2") } : []),
        new(DampRetriesKey, "ten-fold dampening retries when H is not positive definite, 0..6", "3"),
        new(RowBlockKey, "rows of W solved together (0 = automatic: at most 2^28 values a block on the GPU, 2^26 on the CPU; bounds memory, same result)", "0"),
        new(CalibBatchKey, "calibration windows per forward batch", "8"),
        new(ColumnPassKey, "GPTQ column pass: block (one kernel call per block of B columns; CPU or an NVRTC-compiled CUDA kernel) or eager (TorchSharp ops per column)", BlockPass),
    ];

    /// <summary>Reads the keys above (GPTQ-exact: no sweeps) at the run's bits and groups.</summary>
    public static AthenaConfig Parse(OptionReader options, AthenaMode mode)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new AthenaConfig(options.Config.Spec, mode,
            percDamp: options.Double(PercDampKey),
            blockSize: options.Int(BlockKey),
            actOrder: options.Flag(ActOrderKey),
            sweeps: mode == AthenaMode.Athena ? options.Int(SweepsKey) : 0,
            maxDampRetries: options.Int(DampRetriesKey),
            rowBlockSize: options.Int(RowBlockKey),
            calibrationBatch: options.Int(CalibBatchKey),
            groupGrid: options.Choice(GroupGridKey, (BlockStartGrid, GroupGrid.BlockStart), (UpdatedGrid, GroupGrid.Updated)))
        {
            ColumnPass = options.Choice(ColumnPassKey, (BlockPass, ColumnPassEngine.Block), (EagerPass, ColumnPassEngine.Eager)),
        };
    }
}
