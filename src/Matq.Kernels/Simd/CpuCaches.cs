// Contract: the size of this machine's last-level cache (Linux sysfs of CPU 0; 0 when unknown), read once. The decode loop
// uses it to tell whether a model's weights stream from memory on every token (their sum exceeds it) — then every GEMV
// prefetches, however small its own weight (GemvInt8Simd.Gemv's streams) — and `bench kernels` prints it.
namespace Matq.Kernels.Simd;

public static class CpuCaches
{
    private static readonly Lazy<long> Llc = new(Read);

    /// <summary>Bytes of the largest cache level of CPU 0, or 0 when unknown.</summary>
    public static long LastLevelBytes => Llc.Value;

    private static long Read()
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
