// `matq bench kernels`: GB/s of weight bytes read by the packed GEMVs (every width of PackedWidths), our fp32 GEMV and TorchSharp's
// fp32 torch.mv on large weights (default 4096×4096, 4096×11008 and 16384×16384, [out]×[in]; a column says which exceed the
// last-level cache), and the integer kernels on int8 activations (per-row quantized, included in their time), beside the
// machine's memory bandwidth measured in the same run (copy and triad over arrays ≫ cache). Prints GB/s, % of the measured
// bandwidth and speedup vs our fp32 GEMV. Time per call = the median of calls over --seconds per kernel, after a warm-up.
using System.Diagnostics;
using Matq.Kernels.Packed;
using Matq.Kernels.Simd;
using TorchSharp;

namespace Matq.Cli.Verbs;

public sealed class BenchKernelsVerb(IAnsiConsole console) : Verb<BenchKernelsSettings>(console, "kernels",
    $"GEMV throughput (GB/s of weights) of the packed {string.Join("/", PackedWidths.Bits.Reverse().Select(b => $"int{b}"))} kernels vs fp32 and measured memory bandwidth",
    "matq bench kernels",
    "matq bench kernels --shapes 1024x1024 --bits 4 --group 32 --seconds 0.3")
{
    private readonly Option<string> _shapes = new("--shapes") { Description = "Weights as OUTxIN, comma-separated", DefaultValueFactory = _ => "4096x4096,4096x11008,16384x16384", HelpName = "OxI[,OxI...]" };
    private readonly Option<string> _bits = CommonOptions.Bits(string.Join(",", PackedWidths.Bits.Reverse()));   // widest first
    private readonly Option<int> _group = CommonOptions.Group(128);
    private readonly Option<double> _seconds = new("--seconds") { Description = "Measuring time per kernel", DefaultValueFactory = _ => 1.0, HelpName = "S" };
    private readonly Option<int> _threads = new("--threads") { Description = "Worker threads for our kernels; -1 = all cores", DefaultValueFactory = _ => -1, HelpName = "N" };
    private readonly Option<bool> _noTorch = new("--no-torch") { Description = "Skip the TorchSharp torch.mv baseline" };
    private readonly Option<bool> _noInt8 = new("--no-int8") { Description = "Skip the int8-activation (integer dot product) kernels" };
    private readonly Option<string> _paths = new("--paths") { Description = "Integer kernel paths to time: auto (the one each width runs), simd (every path this CPU has but the portable one), all, or a list of avx512, vnni, avx2, vector128", DefaultValueFactory = _ => "auto", HelpName = "auto|simd|all|P[,P...]" };
    private readonly Option<bool> _noFp32x = new("--no-fp32x") { Description = "Skip the packed kernels on fp32 activations" };
    private readonly Option<int> _seed = CommonOptions.Seed();

    protected override IEnumerable<Option> Options => [_shapes, _bits, _group, _seconds, _threads, _noTorch, _noInt8, _paths, _noFp32x, _seed];

    protected override BenchKernelsSettings Read(ParseResult r) => new(r.GetValue(_shapes)!, r.GetValue(_bits)!, r.GetValue(_group), r.GetValue(_seconds),
        r.GetValue(_threads), r.GetValue(_noTorch), r.GetValue(_noInt8), r.GetValue(_paths)!, r.GetValue(_noFp32x), r.GetValue(_seed));

    protected override int Run(BenchKernelsSettings s)
    {
        var bitsList = s.BitsList;
        int group = s.Group, threads = s.Threads;
        double seconds = s.Seconds;
        var shapes = s.ShapeList;
        var rng = new Random(s.Seed);
        bool noInt8 = s.NoInt8, noFp32x = s.NoFp32x;
        var paths = s.PathList;

        long l3 = LastLevelCache();
        Console.MarkupLine(Markup.Escape($"{Environment.ProcessorCount} logical cores, AVX2 path: {GemvPackedSimd.Avx2Path}, integer paths (auto): {string.Join(", ", bitsList.Select(b => $"int{b} {GemvInt8Simd.BestPath(b)}"))}, " +
                                         $"threads: {(threads < 0 ? "all" : threads)}, group {(group == 0 ? "per-channel" : group)}, " +
                                         $"last-level cache {(l3 > 0 ? Format.Bytes(l3) : "unknown")}, load average {BenchStats.LoadAverage()}"));
        var (copy, triad, read) = MemoryBandwidth(threads, seconds);
        double bw = Math.Max(read, Math.Max(copy, triad));
        Console.MarkupLine(Markup.Escape($"memory bandwidth: copy {copy:F1} GB/s, triad {triad:F1} GB/s (reads + writes over 3×128 MiB arrays), " +
                                         $"read {read:F1} GB/s (sum over 384 MiB); reference = the largest, {bw:F1} GB/s; {HugePageArrays.Describe()}"));

        var orderings = new List<string>();
        var pageRatios = new List<string>();
        var table = new Table().AddColumns("weight", "kernel", "weight bytes", "> LLC", "µs/call", "GB/s", "% of bandwidth", "× fp32 (ours)", "× torch.mv");
        foreach (var (rows, cols) in shapes)
        {
            var x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var y = new float[rows];
            var wf = new float[(long)rows * cols];
            int seed = rng.Next();
            Parallel.For(0, rows, o =>   // seeded per row, so the data does not depend on the thread count
            {
                var r = new Random(seed + o);
                var row = wf.AsSpan((int)((long)o * cols), cols);
                for (int i = 0; i < cols; i++) row[i] = (float)(r.NextDouble() - 0.5) * 0.04f;
            });
            long fpBytes = 4L * rows * cols;
            double fpSec = Time(() => GemvF32Simd.Gemv(wf, rows, cols, x, y, threads), seconds);
            var rowsOut = new List<(string Kernel, long Bytes, double Sec)> { ("fp32 (ours)", fpBytes, fpSec) };
            double torchSec = double.NaN;
            if (!s.NoTorch)
            {
                Matq.Runtime.TorchRuntime.Configure("cpu", threads > 0 ? threads : null);   // the same thread budget as our kernels
                using var scope = torch.NewDisposeScope();
                var tw = torch.tensor(wf, [rows, cols]);
                var tx = torch.tensor(x);
                torchSec = Time(() => { using var r = torch.mv(tw, tx); }, seconds);
                rowsOut.Add(($"fp32 torch.mv ({torch.get_num_threads()} threads)", fpBytes, torchSec));
            }
            wf = [];
            int g = group == 0 ? cols : group, groups = (cols + g - 1) / g;
            var master = new byte[(long)rows * cols];
            int seed2 = rng.Next();
            Parallel.For(0, rows, o => new Random(seed2 + o).NextBytes(master.AsSpan((int)((long)o * cols), cols)));
            var scales = Enumerable.Range(0, rows * groups).Select(_ => (float)(rng.NextDouble() * 1e-3 + 1e-4)).ToArray();
            var zeros = Enumerable.Range(0, rows * groups).Select(_ => 128f).ToArray();
            foreach (int bits in bitsList)
            {
                var pm = PackedMatrix.FromMaster(master, rows, cols, group == 0 ? -1 : group, scales, zeros, 8, bits);
                if (!noFp32x)
                {
                    double sec = Time(() => GemvPackedSimd.Gemv(pm, x, y, false, threads), seconds);
                    rowsOut.Add(($"int{bits} packed, fp32 x", pm.WeightBytes, sec));
                }
                if (noInt8) continue;
                foreach (var path in (paths ?? [GemvInt8Simd.BestPath(bits)]).Where(pm.Width.HasInt8))   // the paths this width's row has
                {
                    double isec = Time(() => GemvInt8Simd.Gemv(pm, x, y, path, threads), seconds);
                    rowsOut.Add(($"int{bits} packed, int8 x ({path})", pm.WeightBytes, isec));
                    if (HugePageArrays.Enabled && path == GemvInt8Simd.BestPath(bits))
                    {
                        // the same codes on 4 KiB pages, timed right after: the huge-page gain within this run
                        var small = pm.OnSmallPages();
                        double ssec = Time(() => GemvInt8Simd.Gemv(small, x, y, path, threads), seconds);
                        rowsOut.Add(($"int{bits} packed, int8 x ({path}), 4 KiB pages", small.WeightBytes, ssec));
                        pageRatios.Add($"{rows}x{cols} int{bits}: huge ÷ 4 KiB pages {ssec / isec:F2}×");
                    }
                }
            }
            var auto = bitsList.Select(b => (Bits: b, Row: rowsOut.FirstOrDefault(r => r.Kernel == $"int{b} packed, int8 x ({GemvInt8Simd.BestPath(b)})"))).Where(r => r.Row.Kernel is not null).OrderByDescending(r => r.Bits).ToList();
            if (auto.Count > 1)
            {
                bool falls = auto.Zip(auto.Skip(1)).All(p => p.Second.Row.Sec < p.First.Row.Sec);
                orderings.Add($"{rows}x{cols}: " + string.Join(", ", auto.Select(r => $"int{r.Bits} {r.Row.Sec * 1e6:F0} µs ({100 * r.Row.Bytes / r.Row.Sec / 1e9 / bw:F0}%)")) +
                              $" — time falls with bits: {(falls ? "yes" : "no")}");
            }
            foreach (var (kernel, bytes, sec) in rowsOut)
            {
                double gbs = bytes / sec / 1e9;
                table.AddRow($"{rows}x{cols}", kernel, Format.Bytes(bytes), l3 <= 0 ? "?" : bytes > l3 ? "yes" : "no", $"{sec * 1e6:F0}", $"{gbs:F1}", $"{100 * gbs / bw:F0}%", $"{fpSec / sec:F2}",
                    double.IsNaN(torchSec) ? "-" : $"{torchSec / sec:F2}");
            }
        }
        Console.Write(table);
        foreach (var line in orderings) Console.MarkupLine(Markup.Escape($"int8-activation GEMV (auto paths), µs/call and % of bandwidth: {line}"));
        if (pageRatios.Count > 0) Console.MarkupLine(Markup.Escape($"int8-activation GEMV speed on huge pages ÷ the same codes on 4 KiB pages: {string.Join("; ", pageRatios)}"));
        Console.MarkupLine(Markup.Escape($"load average after: {BenchStats.LoadAverage()}. GB/s counts the bytes a call must read from the weight " +
                                         "(packed codes + fp16 group scales, + an fp16 zero per group when the zeros differ); the activation vector is not counted (int8 x rows include quantizing it). " +
                                         "> LLC: the weight is larger than the last-level cache, so it streams from memory. Speedups are ratios within this run."));
        return 0;
    }

    /// <summary>Median seconds per call over about <paramref name="seconds"/>, after two warm-up calls.</summary>
    private static double Time(Action call, double seconds)
    {
        call(); call();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < seconds || times.Count < 5)
        {
            long t0 = Stopwatch.GetTimestamp();
            call();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    /// <summary>Copy a→b (2 streams) and triad a = b + s·c (3 streams) over 32 Mi floats each, split across threads; GB/s by
    /// bytes explicitly read + written (write-allocate traffic not counted, as in STREAM); and a pure read stream (the sum of
    /// all three arrays, what a GEMV does with its weight).</summary>
    internal static (double Copy, double Triad, double Read) MemoryBandwidth(int threads, double seconds)
    {
        const int n = 32 << 20;
        // allocated as the packed weights are (huge pages where Linux allows), so % of this stream compares like with like
        var a = HugePageArrays.Allocate<float>(n); var b = HugePageArrays.Allocate<float>(n); var c = HugePageArrays.Allocate<float>(n);
        Array.Fill(b, 1f); Array.Fill(c, 2f); Array.Fill(a, 0f);
        int parts = Math.Max(1, Environment.ProcessorCount) * 4, chunk = n / parts;
        var opt = new ParallelOptions { MaxDegreeOfParallelism = threads };
        double copy = Time(() => Parallel.For(0, parts, opt, p => b.AsSpan(p * chunk, chunk).CopyTo(a.AsSpan(p * chunk, chunk))), seconds);
        double triad = Time(() => Parallel.For(0, parts, opt, p =>
            System.Numerics.Tensors.TensorPrimitives.FusedMultiplyAdd(c.AsSpan(p * chunk, chunk), 3f, b.AsSpan(p * chunk, chunk), a.AsSpan(p * chunk, chunk))), seconds);
        var sums = new float[parts * 3];
        double read = Time(() => Parallel.For(0, parts * 3, opt, p =>
        {
            var arr = (p % 3) switch { 0 => a, 1 => b, _ => c };
            sums[p] = System.Numerics.Tensors.TensorPrimitives.Sum(arr.AsSpan(p / 3 * chunk, chunk));
        }), seconds);
        return (2.0 * 4 * n / copy / 1e9, 3.0 * 4 * n / triad / 1e9, 3.0 * 4 * n / read / 1e9);
    }

    /// <summary>Bytes of the largest cache level of CPU 0 (Linux sysfs), or 0 when unknown.</summary>
    private static long LastLevelCache()
    {
        long best = 0;
        try
        {
            foreach (var dir in Directory.EnumerateDirectories("/sys/devices/system/cpu/cpu0/cache", "index*"))
            {
                var text = File.ReadAllText(Path.Combine(dir, "size")).Trim();
                long mult = text.EndsWith('K') ? 1024 : text.EndsWith('M') ? 1 << 20 : 1;
                if (long.TryParse(text.TrimEnd('K', 'M'), out long v)) best = Math.Max(best, v * mult);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return best;
    }
}

/// <summary>What `bench kernels` was asked: the option values as typed; <see cref="Validate"/> checks --bits against the packed widths,
/// --group, --seconds, --shapes and --paths (one line per mistake) before any timing.</summary>
public sealed record BenchKernelsSettings(string Shapes, string Bits, int Group, double Seconds, int Threads, bool NoTorch, bool NoInt8, string Paths,
    bool NoFp32x, int Seed) : IVerbSettings
{
    public int[] BitsList
    {
        get
        {
            var bits = CommonOptions.ParseBits(Bits);
            foreach (int b in bits)
                if (!PackedWidths.IsSupported(b)) throw new MatqException($"--bits {b} has no packed kernel: supported widths are {PackedWidths.List()}");
            return bits;
        }
    }

    public List<(int Rows, int Cols)> ShapeList => ParseShapes(Shapes);

    /// <summary>null = auto (each width's own path); else the listed paths this CPU has.</summary>
    public Int8KernelPath[]? PathList => ParsePaths(Paths);

    public void Validate()
    {
        _ = BitsList;
        if (Group != 0 && (Group < 32 || Group % 32 != 0)) throw new MatqException($"--group {Group} is not supported by the packed kernels: use 0 (per-channel) or a multiple of 32");
        if (Seconds <= 0) throw new MatqException("--seconds must be positive");
        _ = ShapeList;
        _ = PathList;
    }

    private static Int8KernelPath[]? ParsePaths(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t == "auto") return null;
        if (t == "all") return GemvInt8Simd.Paths.Where(GemvInt8Simd.IsSupported).ToArray();
        if (t == "simd") return GemvInt8Simd.Paths.Where(p => p != Int8KernelPath.Vector128 && GemvInt8Simd.IsSupported(p)).ToArray();
        return t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p =>
        {
            var path = p switch
            {
                "avx512" => Int8KernelPath.Avx512,
                "vnni" or "avxvnni" => Int8KernelPath.Vnni,
                "avx2" => Int8KernelPath.Avx2,
                "vector128" or "v128" => Int8KernelPath.Vector128,
                _ => throw new MatqException($"--paths '{p}' is not a kernel path: use auto, simd, all, or avx512, vnni, avx2, vector128"),
            };
            if (!GemvInt8Simd.IsSupported(path)) throw new MatqException($"--paths {p}: this CPU lacks that path; use --paths all to time the ones it has");
            return path;
        }).ToArray();
    }

    private static List<(int Rows, int Cols)> ParseShapes(string text)
    {
        var list = new List<(int, int)>();
        foreach (var s in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var p = s.ToLowerInvariant().Split('x');
            if (p.Length != 2 || !int.TryParse(p[0], out int r) || !int.TryParse(p[1], out int c) || r < 1 || c < 1 || (long)r * c > 1L << 30)
                throw new MatqException($"--shapes '{s}' is not OUTxIN with positive sizes of at most 2^30 weights (e.g. 4096x11008)");
            list.Add((r, c));
        }
        return list;
    }
}
