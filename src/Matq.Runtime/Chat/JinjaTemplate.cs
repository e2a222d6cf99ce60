// Contract: a parsed Jinja template (the subset HF chat templates use; see TemplateLexer, TemplateParser,
// TemplateRenderer). Parse refuses unsupported syntax with a TemplateException naming the line and column; Render
// evaluates it against variables (template values: see TemplateValues) and throws TemplateException for runtime errors
// (TemplateRaisedException when the template calls raise_exception).
namespace Matq.Runtime.Chat;

public sealed class JinjaTemplate
{
    private readonly TemplateSource _source;
    private readonly List<Node> _nodes;

    private JinjaTemplate(TemplateSource source, List<Node> nodes)
    {
        _source = source;
        _nodes = nodes;
    }

    public string Name => _source.Name;
    public string Text => _source.Text;

    /// <summary>Parses <paramref name="text"/>; <paramref name="name"/> names it in errors (a file, "tokenizer_config.json").</summary>
    public static JinjaTemplate Parse(string text, string name)
    {
        ArgumentNullException.ThrowIfNull(text);
        var source = new TemplateSource(SafeText.Escape(name), text);
        return new JinjaTemplate(source, TemplateParser.Parse(source));
    }

    /// <summary>Renders with <paramref name="variables"/>; <paramref name="now"/> is what strftime_now sees (default the local clock).</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? now = null) =>
        new TemplateRenderer(_source, now).Render(_nodes, variables);
}
