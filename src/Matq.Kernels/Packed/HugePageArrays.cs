// Contract: arrays for weights that are streamed once per token (packed codes, their group parameters), backed by 2 MiB
// transparent huge pages where Linux allows it. A decode step reads every page of the weights once; with 4 KiB pages
// each page costs a TLB walk and restarts the hardware prefetcher's stream, and one core's read stream measured 8–15%
// higher over huge pages on the 2-core machine (1 GiB, `madvise(MADV_HUGEPAGE)` before first touch). Linux's default
// THP mode is often `madvise`, under which the GC's large arrays never get huge pages, so an array of at least MinBytes
// is allocated uninitialized on the pinned-object heap (never moved, so its pages stay as advised), its 2 MiB-aligned
// interior is advised MADV_HUGEPAGE, and it is then cleared: that first touch faults the pages in as huge pages, and
// the array reads as zeros like `new T[n]`. Anywhere else (other OSes, THP `never`, a failed madvise, MATQ_HUGE_PAGES=0)
// it is a plain `new T[n]`: the hint only changes speed, never contents.
// Packed codes come as segments (RentBytes) that start on a 2 MiB boundary: a large matrix gets its own array, offset
// to the first boundary inside it, so only its last partial page is small; matrices under SlabBytes/4 share 64 MiB slabs
// (each slab's usable part aligned the same way, segments on 64-byte lines), so the many small attention matrices of a
// model sit on huge pages too. A slab lives as long as any of its segments.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Matq.Kernels.Packed;

public static unsafe partial class HugePageArrays
{
    /// <summary>Arrays smaller than this are allocated plainly (a huge page would mostly hold other objects).</summary>
    public const long MinBytes = 4L << 20;
    private const long HugePage = 2L << 20;
    private const int MadvHugepage = 14;

    private static long _advisedBytes;

    /// <summary>Whether huge pages are asked for: Linux, THP mode `always` or `madvise`, and MATQ_HUGE_PAGES not 0.</summary>
    public static bool Enabled { get; } = Probe();

    /// <summary>Bytes advised MADV_HUGEPAGE so far (the 2 MiB-aligned interiors of the arrays allocated here).</summary>
    public static long AdvisedBytes => Interlocked.Read(ref _advisedBytes);

    /// <summary>One line for bench logs: whether huge pages were asked for, and why not.</summary>
    public static string Describe() => Enabled
        ? $"huge pages: madvise(MADV_HUGEPAGE) on weight arrays ≥ {MinBytes >> 20} MiB ({AdvisedBytes / (double)(1 << 30):F2} GiB advised so far; THP mode {ThpMode()})"
        : $"huge pages: off ({(Environment.GetEnvironmentVariable("MATQ_HUGE_PAGES") == "0" ? "MATQ_HUGE_PAGES=0" : $"THP mode {ThpMode()}")})";

    /// <summary>A zeroed array of <paramref name="length"/> elements, huge-page backed where possible.</summary>
    public static T[] Allocate<T>(long length) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        long bytes = length * sizeof(T);
        if (!Enabled || bytes < MinBytes) return new T[length];
        var array = GC.AllocateUninitializedArray<T>(checked((int)length), pinned: true);
        fixed (T* p = array) AdviseInterior((byte*)p, bytes);
        Array.Clear(array);
        return array;
    }

    /// <summary>Size of the shared slabs that hold the segments of smaller matrices.</summary>
    public const int SlabBytes = 64 << 20;
    private static readonly Lock SlabLock = new();
    private static byte[]? _slab;
    private static int _slabBase, _slabNext, _slabEnd;   // offsets in _slab; _slabBase is its 2 MiB-aligned start

    /// <summary>A zeroed byte segment of <paramref name="length"/> bytes: on huge pages, starting on a 2 MiB boundary
    /// (large) or inside a shared slab (small), when enabled; a plain array at offset 0 otherwise.</summary>
    public static ArraySegment<byte> RentBytes(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (!Enabled || length == 0) return new ArraySegment<byte>(new byte[length]);
        if (length >= SlabBytes / 4) return Aligned(length);
        int n = checked((int)length);
        lock (SlabLock)
        {
            if (_slab is null || _slabNext + n > _slabEnd)
            {
                var slab = Aligned(SlabBytes);
                (_slab, _slabBase, _slabNext, _slabEnd) = (slab.Array, slab.Offset, slab.Offset, slab.Offset + slab.Count);
            }
            var seg = new ArraySegment<byte>(_slab!, _slabNext, n);
            _slabNext = Math.Min(_slabEnd, _slabBase + ((_slabNext - _slabBase + n + 63) & ~63));
            return seg;
        }
    }

    // An uninitialized pinned array with room to start `length` bytes at a 2 MiB boundary; the pages from there on are
    // advised before the segment's first touch (its clear); the bytes before the boundary are never touched.
    private static ArraySegment<byte> Aligned(long length)
    {
        var array = GC.AllocateUninitializedArray<byte>(checked((int)(length + HugePage)), pinned: true);
        fixed (byte* p = array)
        {
            long start = AdviseInterior(p, array.LongLength);
            var seg = new ArraySegment<byte>(array, (int)(start - (long)p), (int)length);
            seg.AsSpan().Clear();
            return seg;
        }
    }

    // MADV_HUGEPAGE on the whole 2 MiB pages inside [p, p + bytes) (counted in AdvisedBytes); returns the first boundary
    private static long AdviseInterior(byte* p, long bytes)
    {
        long start = ((long)p + HugePage - 1) & ~(HugePage - 1), end = ((long)p + bytes) & ~(HugePage - 1);
        if (end > start && madvise((void*)start, (nuint)(end - start), MadvHugepage) == 0)
            Interlocked.Add(ref _advisedBytes, end - start);
        return start;
    }

    private static bool Probe()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("MATQ_HUGE_PAGES") == "0") return false;
        string mode = ThpMode();
        return mode is "always" or "madvise";
    }

    /// <summary>The bracketed word of /sys/kernel/mm/transparent_hugepage/enabled, or "unknown".</summary>
    public static string ThpMode()
    {
        try
        {
            var text = File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled");
            int a = text.IndexOf('['), b = text.IndexOf(']');
            return a >= 0 && b > a ? text[(a + 1)..b] : "unknown";
        }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);
}
