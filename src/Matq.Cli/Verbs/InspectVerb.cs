// `matq inspect PATH`: what a safetensors file, an HF checkpoint folder or a .matq artifact holds
// (format, metadata, size by dtype, tensors) without reading tensor data.
using Matq.Formats.Inspection;

namespace Matq.Cli.Verbs;

public sealed class InspectVerb(IAnsiConsole console) : Verb<InspectSettings>(console, "inspect",
    "Show a model file's format, metadata, tensors and size by dtype (reads headers only)",
    "matq inspect models/tiny",
    "matq inspect out/tiny-rtn4.matq --tensors -1",
    "matq inspect model.safetensors --tensors 0")
{
    private readonly Argument<string> _path = new("path") { Description = "A .safetensors file, a .matq artifact or an HF checkpoint folder" };
    private readonly Option<int> _limit = new("--tensors")
    {
        Description = "How many tensors to list (0 = none, -1 = all)",
        DefaultValueFactory = _ => 40,
    };

    protected override IEnumerable<Option> Options => [_limit];

    protected override void Configure(Command command)
    {
        command.Arguments.Add(_path);
        base.Configure(command);
    }

    protected override InspectSettings Read(ParseResult r) => new InspectSettings(r.GetValue(_path)!, r.GetValue(_limit));

    protected override int Run(InspectSettings s)
    {
        var info = ModelInspector.Inspect(s.Path);
        int limit = s.Tensors;

        var summary = new Table().Title($"[bold]{Markup.Escape(info.Path)}[/]").AddColumns("property", "value");
        summary.AddRow("format", info.Kind.ToString());
        summary.AddRow("files", Markup.Escape(string.Join(", ", info.Files.Select(f => $"{Path.GetFileName(f.Path)} ({Format.Bytes(f.Bytes)})"))));
        summary.AddRow("total size", Format.Bytes(info.TotalBytes));
        summary.AddRow("tensors", $"{info.Tensors.Count} ({info.TotalElements:N0} elements)");
        foreach (var (k, v) in info.Metadata)
            summary.AddRow(Markup.Escape(SafeText.Escape(k)), Markup.Escape(SafeText.Escape(v, 120)));
        Console.Write(summary);

        var dtypes = new Table().Title("size by dtype").AddColumns("dtype", "tensors", "elements", "bytes", "share");
        foreach (var d in info.Dtypes)
            dtypes.AddRow(Markup.Escape(SafeText.Escape(d.Dtype)), d.Count.ToString(), d.Elements.ToString("N0"), Format.Bytes(d.Bytes),
                info.TensorBytes == 0 ? "-" : $"{100.0 * d.Bytes / info.TensorBytes:F1}%");
        Console.Write(dtypes);

        if (limit != 0)
        {
            var shown = limit < 0 ? info.Tensors : info.Tensors.Take(limit).ToList();
            var tensors = new Table().Title($"tensors ({shown.Count} of {info.Tensors.Count})").AddColumns("name", "dtype", "shape", "bytes");
            foreach (var t in shown) tensors.AddRow(Markup.Escape(SafeText.Escape(t.Name)), Markup.Escape(SafeText.Escape(t.Dtype)), Markup.Escape(t.ShapeText), Format.Bytes(t.Bytes));
            Console.Write(tensors);
        }
        return 0;
    }
}

/// <summary>What `inspect` was asked: the path and --tensors; <see cref="Validate"/> checks both (one line per mistake) before a header is read.</summary>
public sealed record InspectSettings(string Path, int Tensors) : IVerbSettings
{
    public void Validate()
    {
        ModelInspector.RequireExists(Path);
        if (Tensors < -1) throw new MatqException($"--tensors {Tensors} is out of range: a count, 0 for none or -1 for all");
    }
}
