// `matq bench quantize-layer`: seconds and memory peaks to quantize single synthetic layers (default 4096×4096 and
// 4096×11008, [out]×[in]) with RTN, GPTQ-exact and Athena on one device, as a table with ratios vs RTN. gptq-eager and
// athena-eager run the same solvers with the per-column TorchSharp pass instead of the block kernel, for the ratio.
//
// Inputs (seeded): W ~ N(0, 0.02²) [out, in]. Activations X = Z·A [tokens, in], Z ~ N(0, 1), A = D(I + UVᵀ) with
// D = diag(s), s log-uniform over two decades and 1% outlier channels ×10 (LLM activations have a few huge channels),
// U, V [in, 64] ~ N(0, 1/in) (shared directions → correlated inputs). The Hessian is either
//   --tokens N > 0: streamed from N rows of X in chunks of 8192 through HessianAccumulator (2XᵀX/N, N = 128×2048 =
//                   262144 is one usual calibration set's worth), or
//   --tokens 0:     its expectation 2AᵀA = 2(D² + D²UVᵀ + VUᵀD² + V(UᵀD²U)Vᵀ), built in O(in²·64) (cheap on a CPU).
// Default (-1): streamed 262144 tokens on CUDA, the expectation on the CPU. Hessian time is reported separately.
// Given layer (--weight W.safetensors --inputs X.safetensors, one tensor each: W [out, in], X [..., in] calibration
// inputs): H = 2XᵀX/N over its N rows, and each algorithm's Hessian-weighted error tr(ΔW H ΔWᵀ) and the normalisation-free
// ‖ΔW Xᵀ‖² = N/2 · tr(ΔW H ΔWᵀ) are printed in full, so another implementation can be compared on the same layer.
using Matq.Runtime;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Matq.Algorithms.Athena;
using Matq.Formats.Safetensors;
using Matq.Calibration;
using Matq.Kernels.Quantization;
using Matq.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class BenchQuantizeLayerVerb(IAnsiConsole console) : Verb<BenchQuantizeLayerSettings>(console, "quantize-layer",
    "Time RTN, GPTQ-exact and Athena on single synthetic layers (seconds, memory peaks, ratio vs RTN)",
    "matq bench quantize-layer --device cpu --shapes 1024x1024",
    "matq bench quantize-layer --device cpu --weight W.safetensors --inputs X.safetensors --bits 2 --group 64 --algorithms gptq",
    "MATQ_TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib matq bench quantize-layer --device cuda")
{
    private readonly Option<string> _device = CommonOptions.Device();
    private readonly Option<string> _shapes = new("--shapes") { Description = "Layers as OUTxIN, comma-separated", DefaultValueFactory = _ => "4096x4096,4096x11008", HelpName = "OxI[,OxI...]" };
    private readonly Option<int> _bits = new("--bits") { Description = "Bit-width, 2..8", DefaultValueFactory = _ => 4, HelpName = "B" };
    private readonly Option<int> _group = CommonOptions.Group(128);
    private readonly Option<int> _tokens = new("--tokens") { Description = "Calibration rows streamed into the Hessian; 0 = its closed-form expectation; -1 = 262144 on CUDA, 0 on CPU", DefaultValueFactory = _ => -1, HelpName = "N" };
    private readonly Option<int> _sweeps = new("--sweeps") { Description = "Athena refinement sweeps", DefaultValueFactory = _ => 2, HelpName = "N" };
    private readonly Option<int> _block = new("--block") { Description = "GPTQ column block size B", DefaultValueFactory = _ => 128, HelpName = "B" };
    private readonly Option<bool> _actOrder = new("--act-order") { Description = "Process columns by descending diag H (static groups)" };
    private readonly Option<string> _algorithms = new("--algorithms") { Description = "Which to run: rtn, gptq, athena, and gptq-eager / athena-eager (the per-column TorchSharp pass instead of the block kernel) (comma-separated)", DefaultValueFactory = _ => "rtn,gptq,athena", HelpName = "A[,A...]" };
    private readonly Option<string?> _groupGrid = new("--group-grid") { Description = "GPTQ/Athena group grids: block-start (upstream GPTQ) or updated (error-updated weights)", DefaultValueFactory = _ => AthenaConfig.BlockStartGrid, HelpName = "RULE" };
    private readonly Option<string?> _weight = new("--weight") { Description = "Quantize this layer instead of synthetic ones: a safetensors file holding one 2-D float tensor W [out, in] (needs --inputs)", HelpName = "W.safetensors" };
    private readonly Option<string?> _inputs = new("--inputs") { Description = "Calibration inputs of --weight's layer: a safetensors file holding one float tensor X [..., in]; H = 2XᵀX/N", HelpName = "X.safetensors" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options =>
    [
        _device, _shapes, _bits, _group, _tokens, _sweeps, _block, _actOrder, _algorithms, _groupGrid, _weight, _inputs, _seed,
    ];

    protected override BenchQuantizeLayerSettings Read(ParseResult r) => new(r.GetValue(_device)!, r.GetValue(_shapes)!, r.GetValue(_bits), r.GetValue(_group),
        r.GetValue(_tokens), r.GetValue(_sweeps), r.GetValue(_block), r.GetValue(_actOrder), r.GetValue(_algorithms)!, r.GetValue(_groupGrid)!,
        r.GetValue(_weight), r.GetValue(_inputs), r.GetValue(_seed));

    protected override int Run(BenchQuantizeLayerSettings s)
    {
        var device = TorchRuntime.Configure(s.Device).Device;
        bool cuda = device.type == DeviceType.CUDA;
        int group = s.Group, tokens = s.Tokens;
        if (tokens < 0) tokens = cuda ? 128 * 2048 : 0;
        var (spec, algorithms, gridText, athena) = (s.Spec, s.AlgorithmList, s.GridText, s.Athena);
        string? weightPath = s.Weight, inputsPath = s.Inputs;
        var shapes = s.ShapeList;
        int seed = s.Seed;
        using var meter = new MemoryMeter(cuda);

        Console.MarkupLine(Markup.Escape($"device {device}, {spec.Bits} bits, group {(group == 0 ? "per-channel" : group.ToString())}, " +
            $"block {athena.BlockSize}, act-order {athena.ActOrder}, group grid {gridText}, Athena sweeps {athena.Sweeps}, torch threads {torch.get_num_threads()}, " +
            $"Hessian: {(weightPath is not null ? "2XᵀX/N of the given inputs" : tokens > 0 ? $"streamed from {tokens} tokens" : "closed-form expectation 2AᵀA")}"));
        // the given layer is read before any timing, so a bad file stops the run at once
        using var given = weightPath is null ? null : GivenLayer.Read(weightPath, inputsPath!, device);
        Warmup(device, spec, athena);
        Console.MarkupLine(Markup.Escape(AffineBlockPass.Describe(device)));
        var table = new Table().AddColumns("layer", "algorithm", "seconds", "× RTN time", "H-error / RTN's", "GC heap peak", "RSS peak", cuda ? "CUDA peak (in use)" : "CUDA");
        var errors = new List<(string Layer, string Algorithm, double Error)>();
        var layers = given is null ? shapes.Select(s => ($"{s.Rows}x{s.Cols}", s.Rows, s.Cols)).ToList()
            : [(Path.GetFileName(weightPath!), given.W.shape[0], given.W.shape[1])];
        foreach (var (label, rows, cols) in layers)
        {
            using var scope = NewDisposeScope();
            manual_seed(seed);
            var sw = Stopwatch.StartNew();
            Tensor w = given?.W ?? randn(rows, cols, device: device) * 0.02;
            Tensor h = given?.H ?? Hessian(cols, tokens, device);
            Sync(cuda);
            Console.MarkupLine(Markup.Escape($"{(given is null ? label : $"{label} ({rows}x{cols})")}: weights + Hessian in {sw.Elapsed.TotalSeconds:F2}s"));
            double rtnSeconds = double.NaN, rtnError = double.NaN;
            foreach (var algorithm in algorithms)
            {
                using var inner = NewDisposeScope();
                meter.Start();
                sw.Restart();
                double error;
                if (algorithm == "rtn")
                {
                    using var q = TensorAffineQuantizer.Quantize(w, spec);
                    Tensor wHat = q.Dequantize();
                    Sync(cuda);
                    error = AthenaSolver.HessianError(w - wHat, h);
                }
                else
                {
                    var config = algorithm.StartsWith("gptq", StringComparison.Ordinal) ? athena.AsGptqExact() : athena;
                    if (algorithm.EndsWith("-eager", StringComparison.Ordinal)) config = config with { ColumnPass = ColumnPassEngine.Eager };
                    using var solved = AthenaSolver.Quantize($"bench.{label}", w, h, config);
                    Sync(cuda);
                    error = solved.Report.FinalError;
                }
                double seconds = sw.Elapsed.TotalSeconds;   // RTN's time excludes its error evaluation; the solvers' include their reports
                var peaks = meter.Stop();
                if (algorithm == "rtn") (rtnSeconds, rtnError) = (seconds, error);
                Console.MarkupLine(Markup.Escape($"  {algorithm}: {seconds:F3}s"));
                errors.Add((label, algorithm, error));
                table.AddRow(label, algorithm, $"{seconds:F3}", double.IsNaN(rtnSeconds) ? "-" : $"{seconds / rtnSeconds:F1}",
                    double.IsNaN(rtnError) ? $"{error:G4}" : $"{error / rtnError:F3}",
                    Format.Bytes(peaks.Gc), Format.Bytes(peaks.Rss), cuda ? Format.Bytes(peaks.Cuda) : "-");
            }
        }
        Console.Write(table);
        Console.MarkupLine(Markup.Escape("Peaks are maxima sampled every 2 ms while the algorithm ran, above the level before it (RSS: the process's " +
            "resident memory, holding CPU tensors; CUDA: device memory in use incl. the caching allocator's reserve, above the start of the bench)."));
        if (given is not null)
        {
            Console.MarkupLine(Markup.Escape($"Hessian-weighted error tr(ΔW H ΔWᵀ), H = 2XᵀX/N with N = {given.Rows} input rows (undamped), and ‖ΔW Xᵀ‖² = N/2 · that:"));
            foreach (var (label, algorithm, error) in errors)
                Console.MarkupLine(Markup.Escape($"  {label} {algorithm}: H-error {error:R}, ‖ΔW Xᵀ‖² {error * given.Rows / 2:R}"));
        }
        return 0;
    }

    /// <summary>A layer given as files: W [out, in] fp32 and H = 2XᵀX/N of its inputs, both on the bench's device.</summary>
    private sealed class GivenLayer(Tensor w, Tensor h, long rows) : IDisposable
    {
        public Tensor W { get; } = w;
        public Tensor H { get; } = h;
        public long Rows { get; } = rows;

        public static GivenLayer Read(string weightPath, string inputsPath, Device device)
        {
            var (wShape, wData) = ReadSingle(weightPath, "--weight");
            if (wShape.Length != 2)
                throw new MatqException($"--weight {SafeText.Quote(weightPath)}: its tensor has shape [{string.Join(", ", wShape)}]; a layer's weight is 2-D [out, in]");
            var (xShape, xData) = ReadSingle(inputsPath, "--inputs");
            if (xShape.Length < 1 || xShape[^1] != wShape[1])
                throw new MatqException($"--inputs {SafeText.Quote(inputsPath)}: its tensor has shape [{string.Join(", ", xShape)}]; the layer has {wShape[1]} inputs, so it must be [..., {wShape[1]}]");
            long rows = xData.LongLength / wShape[1];
            if (rows == 0) throw new MatqException($"--inputs {SafeText.Quote(inputsPath)}: the tensor holds no input rows");
            using var scope = NewDisposeScope();
            Tensor w = tensor(wData, wShape, device: device);
            if (!w.isfinite().all().item<bool>()) throw new MatqException($"--weight {SafeText.Quote(weightPath)}: the weights contain NaN or Inf");
            using var acc = new HessianAccumulator(Path.GetFileName(inputsPath), wShape[1], device);
            acc.Add(tensor(xData, [rows, wShape[1]], device: device));
            return new GivenLayer(w.MoveToOuterDisposeScope(), acc.Hessian.clone().MoveToOuterDisposeScope(), rows);
        }

        /// <summary>The one float tensor of a safetensors file, widened to fp32.</summary>
        private static (long[] Shape, float[] Data) ReadSingle(string path, string option)
        {
            if (!File.Exists(path)) throw new MatqException($"{option} {SafeText.Quote(path)} does not exist: give a safetensors file");
            using var file = SafetensorsFile.Open(path);
            if (file.Tensors.Count != 1)
                throw new MatqException($"{option} {SafeText.Quote(path)} holds {file.Tensors.Count} tensors; give a file with exactly one");
            var t = file.Tensors[0];
            return (t.Shape, file.ReadFloat32(t.Name));
        }

        public void Dispose()
        {
            W.Dispose();
            H.Dispose();
        }
    }

    /// <summary>2XᵀX/N streamed from N rows of X = Z·D(I + UVᵀ), or (N = 0) its expectation 2AᵀA. [n, n] fp32.</summary>
    private static Tensor Hessian(long n, int tokens, Device device)
    {
        using var scope = NewDisposeScope();
        const int rank = 64;
        Tensor s = pow(10.0, rand(n, device: device) * 2 - 1);                      // [n] two decades
        s = where(rand(n, device: device).lt(0.01), s * 10, s);                     // ~1% outlier channels
        Tensor u = randn(n, rank, device: device) / Math.Sqrt(n), v = randn(n, rank, device: device) / Math.Sqrt(n);
        if (tokens == 0)
        {
            Tensor d2 = s.Squared();                                                  // D² [n]
            Tensor d2u = u * d2.unsqueeze(1);                                        // D²U [n, r]
            Tensor cross = d2u.matmul(v.t());                                        // D²UVᵀ
            Tensor core = v.matmul(u.t().matmul(d2u)).matmul(v.t());                 // V(UᵀD²U)Vᵀ
            return ((diag(d2) + cross + cross.t() + core) * 2).MoveToOuterDisposeScope();
        }
        using var acc = new HessianAccumulator("bench", n, device);
        for (int done = 0; done < tokens; done += 8192)
        {
            using var chunkScope = NewDisposeScope();
            int m = Math.Min(8192, tokens - done);
            Tensor zd = randn(m, n, device: device) * s;                             // Z·D [m, n]
            acc.Add(zd + zd.matmul(u).matmul(v.t()));                                // X = ZD + (ZDU)Vᵀ
        }
        return acc.Hessian.clone().MoveToOuterDisposeScope();
    }

    /// <summary>First-call costs (kernel loading, allocator growth, cuSOLVER handles) kept out of the timings.</summary>
    private static void Warmup(Device device, QuantSpec spec, AthenaConfig athena)
    {
        using var scope = NewDisposeScope();
        Tensor w = randn(64, 256, device: device);
        Tensor h = Hessian(256, 0, device);
        using var _ = AthenaSolver.Quantize("warmup", w, h, athena);
        TensorAffineQuantizer.Quantize(w, spec).Dispose();
        Sync(device.type == DeviceType.CUDA);
    }

    private static void Sync(bool cuda)
    {
        if (cuda) torch.cuda.synchronize();
    }

    /// <summary>Samples GC heap, resident set and CUDA memory in use (cudaMemGetInfo) on a background thread.</summary>
    private sealed class MemoryMeter : IDisposable
    {
        private delegate int MemGetInfo(out nuint free, out nuint total);
        private readonly MemGetInfo? _memGetInfo;
        private readonly long _cudaBase;
        private Thread? _thread;
        private volatile bool _running;
        private long _gcBase, _rssBase, _gcPeak, _rssPeak, _cudaPeak;

        public MemoryMeter(bool cuda)
        {
            if (!cuda) return;
            foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
                if (NativeLibrary.TryLoad(name, out var lib) && NativeLibrary.TryGetExport(lib, "cudaMemGetInfo", out var fn))
                {
                    _memGetInfo = Marshal.GetDelegateForFunctionPointer<MemGetInfo>(fn);
                    break;
                }
            _cudaBase = CudaInUse();
        }

        private long CudaInUse() => _memGetInfo is not null && _memGetInfo(out var free, out var total) == 0 ? (long)(total - free) : 0;

        private static long Rss()
        {
            using var p = Process.GetCurrentProcess();
            return p.WorkingSet64;
        }

        private void Sample()
        {
            _gcPeak = Math.Max(_gcPeak, GC.GetTotalMemory(false));
            _rssPeak = Math.Max(_rssPeak, Rss());
            _cudaPeak = Math.Max(_cudaPeak, CudaInUse());
        }

        public void Start()
        {
            GC.Collect();
            _gcBase = GC.GetTotalMemory(true);
            _rssBase = Rss();
            _gcPeak = _gcBase;
            _rssPeak = _rssBase;
            _cudaPeak = _cudaBase;
            _running = true;
            _thread = new Thread(() => { while (_running) { Sample(); Thread.Sleep(2); } }) { IsBackground = true };
            _thread.Start();
        }

        public (long Gc, long Rss, long Cuda) Stop()
        {
            _running = false;
            _thread?.Join();
            Sample();
            return (_gcPeak - _gcBase, _rssPeak - _rssBase, _memGetInfo is null ? 0 : _cudaPeak - _cudaBase);
        }

        public void Dispose()
        {
            _running = false;
            _thread?.Join();
        }
    }
}

/// <summary>What `bench quantize-layer` was asked: the option values as typed; <see cref="Validate"/> checks --device, the bits and
/// group, --algorithms, --group-grid, the GPTQ/Athena settings, --weight/--inputs and --shapes (one line per mistake) before torch loads.</summary>
public sealed record BenchQuantizeLayerSettings(string Device, string Shapes, int Bits, int Group, int Tokens, int Sweeps, int Block, bool ActOrder,
    string Algorithms, string GroupGrid, string? Weight, string? Inputs, int Seed) : IVerbSettings
{
    public QuantSpec Spec => Group == 0 ? QuantSpec.PerChannel(Bits) : QuantSpec.Grouped(Bits, Group);

    public string[] AlgorithmList
    {
        get
        {
            var algorithms = Algorithms.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(a => a.ToLowerInvariant()).ToArray();
            foreach (var a in algorithms)
                if (a is not ("rtn" or "gptq" or "athena" or "gptq-eager" or "athena-eager"))
                    throw new MatqException($"--algorithms '{a}' is not one of rtn, gptq, athena, gptq-eager, athena-eager");
            return algorithms;
        }
    }

    public string GridText => GroupGrid.Trim().ToLowerInvariant();

    public AthenaConfig Athena
    {
        get
        {
            var grid = GridText switch
            {
                AthenaConfig.BlockStartGrid => Matq.Algorithms.Athena.GroupGrid.BlockStart,
                AthenaConfig.UpdatedGrid => Matq.Algorithms.Athena.GroupGrid.Updated,
                _ => throw new MatqException($"--group-grid {SafeText.Quote(GridText)} is not a group-grid rule: use {AthenaConfig.BlockStartGrid} or {AthenaConfig.UpdatedGrid}"),
            };
            return new AthenaConfig(Spec, AthenaMode.Athena, blockSize: Block, actOrder: ActOrder, sweeps: Sweeps, groupGrid: grid);
        }
    }

    /// <summary>The synthetic layers' shapes; none when --weight gives the layer.</summary>
    public List<(long Rows, long Cols)> ShapeList => Weight is null ? ParseShapes(Shapes) : [];

    public void Validate()
    {
        TorchRuntime.Check(Device);
        _ = Spec;
        _ = AlgorithmList;
        _ = Athena;
        if ((Weight is null) != (Inputs is null))
            throw new MatqException(Weight is null ? "--inputs needs --weight: give the layer's weight W.safetensors too" : "--weight needs --inputs: give the layer's calibration inputs X.safetensors too");
        _ = ShapeList;
    }

    private static List<(long Rows, long Cols)> ParseShapes(string text)
    {
        var list = new List<(long, long)>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dims = part.ToLowerInvariant().Split('x');
            if (dims.Length != 2 || !long.TryParse(dims[0], out long r) || !long.TryParse(dims[1], out long c) || r < 1 || c < 1 || r > 65536 || c > 65536)
                throw new MatqException($"--shapes '{part}' is not OUTxIN with sizes 1..65536 (e.g. 4096x11008)");
            list.Add((r, c));
        }
        if (list.Count == 0) throw new MatqException("--shapes is empty: give e.g. 4096x4096");
        return list;
    }
}
