// `matq export`: writes a .matq artifact as GGUF (llama.cpp) with --type f32|f16|q8_0|q4_0|q4_1; says which weights
// mapped losslessly and which were re-quantized. Other formats/sources are refused with one line naming what is supported.
using System.CommandLine;
using Matq.Cli.Common;
using Matq.Export;
using Spectre.Console;

namespace Matq.Cli.Verbs;

public sealed class ExportVerb(IAnsiConsole console) : Verb(console)
{
    private readonly Option<string> _format = new("--format") { Description = "Output format: gguf (onnx is not implemented yet)", Required = true, HelpName = "gguf" };
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string> _out = CommonOptions.Out();
    private readonly Option<string> _type = new("--type") { Description = "GGUF tensor type: f32, f16, q8_0, q4_0, q4_1", DefaultValueFactory = _ => "q4_1", HelpName = "TYPE" };

    public override string Name => "export";
    public override string Description => "Export a .matq artifact to GGUF (llama.cpp), lossless where the block type expresses our codes";
    public override IReadOnlyList<string> Examples =>
    [
        "matq export --format gguf --model small.matq --type q4_1 --out small-q4_1.gguf",
        "matq export --format gguf --model tiny.matq --type q8_0 --out tiny.gguf",
    ];

    protected override void Configure(Command command)
    {
        foreach (Option o in new Option[] { _format, _model, _out, _type }) command.Options.Add(o);
    }

    protected override int Execute(ParseResult result)
    {
        var format = result.GetValue(_format)!.ToLowerInvariant();
        var model = result.GetValue(_model)!;
        if (format != "gguf")
            throw new MatqException($"--format {format} is not supported: supported is --format gguf with --type {string.Join("|", GgufExporter.Types)} from a .matq artifact");
        if (!File.Exists(model) || Formats.Gguf.GgufFile.HasMagic(model) || !model.EndsWith(".matq", StringComparison.OrdinalIgnoreCase) && Directory.Exists(model))
            throw new MatqException($"{model}: GGUF export reads a .matq artifact; quantize an HF model first with `matq quantize`");
        var type = GgufExporter.ParseType(result.GetValue(_type)!);
        var report = GgufExporter.Export(model, type, result.GetValue(_out)!);
        Console.MarkupLine(Markup.Escape($"wrote {result.GetValue(_out)} ({type}): {report.Lossless} weights lossless (codes copied, scales rounded to fp16), " +
                                         $"{report.Requantized} re-quantized, {report.Float} float tensors"));
        foreach (var n in report.Notes) Console.MarkupLine(Markup.Escape("note: " + n));
        return 0;
    }
}
