// Contract: hands memory freed during a block back to the OS between blocks of a block-streamed run: a full, compacting
// GC (large managed buffers of a finished block, e.g. its checkpoint bytes, otherwise wait for the next gen-2 GC) and,
// on glibc, malloc_trim(0) (libtorch's freed tensors below glibc's mmap threshold stay in the heap without it).
// Values are untouched; it only moves the resident set down to what is live.
using System.Runtime;
using System.Runtime.InteropServices;

namespace Matq.Runtime;

public static partial class HostMemoryRelease
{
    private static bool _noTrim;

    /// <summary>Releases what the finished block left behind (called between blocks; costs a GC, negligible per block).</summary>
    public static void AfterBlock()
    {
        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        // tensors nobody disposed are freed by their finalizers: run them now, so their native (and CUDA) memory is free
        // before the next block is held, not whenever the managed heap next fills
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        if (_noTrim || !OperatingSystem.IsLinux()) return;
        try
        {
            MallocTrim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _noTrim = true;   // not glibc (musl): nothing to trim
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
