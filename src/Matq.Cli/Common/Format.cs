// Small formatting helpers shared by verbs' tables.
namespace Matq.Cli.Common;

public static class Format
{
    public static string Bytes(long n) => n switch
    {
        < 1024 => $"{n} B",
        < 1024 * 1024 => $"{n / 1024.0:F1} KiB",
        < 1024L * 1024 * 1024 => $"{n / (1024.0 * 1024):F1} MiB",
        _ => $"{n / (1024.0 * 1024 * 1024):F2} GiB",
    };
}
