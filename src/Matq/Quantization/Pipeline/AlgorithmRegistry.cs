// Contract: the explicit table of quantization algorithms by name (no reflection, so trimming/AOT keep them).
// Adding an algorithm = adding one row here; the entry point (QuantizationRunner) and the CLI read this table.
using Matq.Algorithms.Athena;
using Matq.Algorithms.EfQat;
using Matq.Algorithms.MatQuant;
using Matq.Algorithms.OmniQuant;
using Matq.Algorithms.Rtn;

namespace Matq.Quantization.Pipeline;

public static class AlgorithmRegistry
{
    // One row per algorithm, in the order `matq quantize --help` lists them.
    private static readonly AlgorithmRegistration[] Table =
    [
        RtnAlgorithm.Registration,
        AthenaAlgorithm.GptqRegistration,
        AthenaAlgorithm.AthenaRegistration,
        OmniQuantAlgorithm.Registration,
        MatQuantAlgorithm.Registration,
        EfQatLmAlgorithm.Registration,
    ];

    public static IReadOnlyList<AlgorithmRegistration> All => Table;

    public static IReadOnlyList<string> Names => Table.Select(r => r.Name).ToArray();

    public static bool Contains(string name) => Table.Any(r => string.Equals(r.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The row named <paramref name="name"/> (case-insensitive); unknown → one line listing the known methods.</summary>
    public static AlgorithmRegistration Get(string name)
    {
        if (string.IsNullOrWhiteSpace(name))
            throw new MatqException($"method is empty: choose one of {string.Join(", ", Names)}");
        return Table.FirstOrDefault(r => string.Equals(r.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new MatqException($"method '{name}' is not known: choose one of {string.Join(", ", Names)}");
    }

    /// <summary>Builds the algorithm for <paramref name="config"/> (its factory validates the method-specific options).</summary>
    public static QuantizationAlgorithm Create(QuantizationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Get(config.Method).Create(config);
    }
}
