// HugePageArrays: zeroed arrays of the asked length whatever memory the GC hands back, MADV_HUGEPAGE on the aligned
// interior of large arrays exactly when Linux allows it (THP always/madvise, MATQ_HUGE_PAGES not 0), nothing advised otherwise.
using Matq.Kernels.Packed;
using Xunit;

namespace Matq.Kernels.Tests.Packed;

public class HugePageArraysTests
{
    [Theory]
    [InlineData(0L)]
    [InlineData(1000L)]
    [InlineData((HugePageArrays.MinBytes >> 2) - 1)]
    [InlineData(HugePageArrays.MinBytes + 12345)]
    [InlineData(3 * HugePageArrays.MinBytes)]
    public void Allocates_zeroed_arrays_of_the_asked_length_also_over_recycled_memory(long bytes)
    {
        for (int round = 0; round < 3; round++)
        {
            var a = HugePageArrays.Allocate<byte>(bytes);
            Assert.Equal(bytes, a.LongLength);
            Assert.Equal(-1, a.AsSpan().IndexOfAnyExcept((byte)0));
            a.AsSpan().Fill(0xA5);   // dirty the memory a later round may get back
            a = null;
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        }
        var h = HugePageArrays.Allocate<Half>(bytes / 2);
        Assert.Equal(bytes / 2, h.LongLength);
        Assert.All(h.Take(4096), v => Assert.Equal(0, BitConverter.HalfToUInt16Bits(v)));
    }

    [Fact]
    public void Advises_the_aligned_interior_of_large_arrays_only_when_enabled()
    {
        long before = HugePageArrays.AdvisedBytes;
        _ = HugePageArrays.Allocate<float>(1000);   // below MinBytes: never advised
        long small = HugePageArrays.AdvisedBytes - before;
        var big = HugePageArrays.Allocate<float>(4 * HugePageArrays.MinBytes / sizeof(float));
        long grown = HugePageArrays.AdvisedBytes - before - small;
        GC.KeepAlive(big);
        // other tests allocate packed matrices concurrently, so only lower bounds hold when enabled
        if (HugePageArrays.Enabled)
        {
            Assert.True(grown >= 4 * HugePageArrays.MinBytes - (4L << 20), $"advised {grown} bytes of a {4 * HugePageArrays.MinBytes}-byte array");
            Assert.Contains("MADV_HUGEPAGE", HugePageArrays.Describe());
        }
        else
        {
            Assert.Equal(0, HugePageArrays.AdvisedBytes);
            Assert.Contains("off", HugePageArrays.Describe());
        }
    }

    [Fact]
    public unsafe void Rented_segments_are_zeroed_disjoint_and_aligned_where_enabled()
    {
        long[] lengths = [0, 1, 100, 4096, 1 << 20, 3 << 20, HugePageArrays.SlabBytes / 4 - 1, HugePageArrays.SlabBytes / 4, (long)HugePageArrays.SlabBytes + 5];
        var segments = lengths.Concat(Enumerable.Repeat(5L << 20, 30)).Select(HugePageArrays.RentBytes).ToList();
        for (int i = 0; i < segments.Count; i++)
        {
            var seg = segments[i];
            Assert.Equal(i < lengths.Length ? lengths[i] : 5L << 20, seg.Count);
            Assert.Equal(-1, seg.AsSpan().IndexOfAnyExcept((byte)0));
            seg.AsSpan().Fill((byte)(i + 1));   // a segment that overlapped another would show its fill
            if (seg.Count == 0) continue;
            fixed (byte* p = seg.AsSpan())
            {
                long a = (long)p;
                if (HugePageArrays.Enabled)
                    Assert.Equal(0, a % (seg.Count >= HugePageArrays.SlabBytes / 4 ? 2L << 20 : 64));
            }
        }
        for (int i = 0; i < segments.Count; i++)
            Assert.Equal(-1, segments[i].AsSpan().IndexOfAnyExcept((byte)(i + 1)));
        if (!HugePageArrays.Enabled) Assert.All(segments, s => Assert.Equal(0, s.Offset));
    }

    [Fact]
    public void Is_enabled_exactly_where_linux_allows_madvised_huge_pages()
    {
        bool expected = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("MATQ_HUGE_PAGES") != "0"
                        && HugePageArrays.ThpMode() is "always" or "madvise";
        Assert.Equal(expected, HugePageArrays.Enabled);
    }
}
