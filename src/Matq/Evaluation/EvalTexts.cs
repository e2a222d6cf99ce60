// Resolves `--data` for evaluation: the SOTU splits and Moby-Dick from the dataset cache (fetched on first use), or a
// UTF-8 text file. Names are checked before anything is fetched so a typo fails fast with the list of valid names.
using System.Text;
using Matq.Data;

namespace Matq.Evaluation;

public static class EvalTexts
{
    public static IReadOnlyList<string> Names { get; } = ["sotu-train", "sotu-validation", "sotu-test", "moby-dick"];

    /// <summary>(label, text) for a dataset name or a file path.</summary>
    public static (string Label, string Text) Resolve(string nameOrFile, Func<DataStore> store)
    {
        switch (nameOrFile)
        {
            case "sotu-train": return ("SOTU train (before 2000)", store().Sotu().Text(DataSplit.Train));
            case "sotu-validation": return ("SOTU validation (2000–2009)", store().Sotu().Text(DataSplit.Validation));
            case "sotu-test": return ("SOTU test (2010 on)", store().Sotu().Text(DataSplit.Test));
            case "moby-dick": return ("Moby-Dick", store().MobyDick());
        }
        if (File.Exists(nameOrFile))
        {
            var text = File.ReadAllText(nameOrFile, new UTF8Encoding(false, throwOnInvalidBytes: false));
            if (text.Length == 0) throw new MatqException($"--data {nameOrFile} is empty");
            return (Path.GetFileName(nameOrFile), text);
        }
        throw new MatqException($"--data '{nameOrFile}' is neither a dataset ({string.Join(", ", Names)}) nor an existing text file");
    }
}
