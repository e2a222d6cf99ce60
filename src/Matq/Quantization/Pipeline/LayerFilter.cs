// Contract: which decoder linears a run quantizes, by family or pattern (`matq quantize --layers`); the rest stay float
// in the artifact. Parsed and validated once (QuantizationConfig), applied by LinearSelection, recorded as its text.
//
// Text: "all" (default) | comma list of items, each one of
//   ffn | mlp          every feed-forward linear   (module names containing ".mlp.": gate_proj, up_proj, down_proj)
//   attn | attention   every attention linear      (".self_attn.": q_proj, k_proj, v_proj, o_proj)
//   lm_head            the (untied) head
//   a module suffix    e.g. mlp.down_proj or down_proj: names equal to it or ending in "." + it
//   a glob             * (any run, dots included) and ? (one character), e.g. model.layers.1?.mlp.*; matched against the
//                      whole name or any suffix after a dot (so *_proj and mlp.*_proj both work)
// A name is selected when any item matches. Every item must match at least one linear of the model (a typo is an error,
// never an empty or silently shorter selection). The paper's main MatQuant results quantize only the FFN: --layers ffn.
using System.Text.RegularExpressions;

namespace Matq.Quantization.Pipeline;

public sealed class LayerFilter : IEquatable<LayerFilter>
{
    private readonly (string Item, Func<string, bool> Match)[] _items;

    private LayerFilter(string text, (string, Func<string, bool>)[] items)
    {
        Text = text;
        _items = items;
    }

    /// <summary>Every decoder linear (plus lm_head when the run includes the head).</summary>
    public static LayerFilter All { get; } = new("all", []);

    /// <summary>The normalized text ("all", "ffn", "attn", "mlp.down_proj,mlp.up_proj", ...), as recorded in the artifact.</summary>
    public string Text { get; }

    public bool IsAll => _items.Length == 0;

    /// <summary>Whether the items name lm_head explicitly (then the head is a candidate even without --include-head).</summary>
    public bool NamesHead => _items.Any(i => i.Item == "lm_head");

    /// <summary>Parses <paramref name="text"/> (null or blank = all); a malformed item throws one MatqException.</summary>
    public static LayerFilter Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return All;
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Any(p => p.Length == 0))
            throw new MatqException($"--layers '{Matq.SafeText.Escape(text)}' has an empty item: give ffn, attn, all or comma-separated module suffixes/globs, e.g. mlp.down_proj,mlp.up_proj");
        var items = new List<(string, Func<string, bool>)>();
        foreach (var raw in parts)
        {
            var p = raw.ToLowerInvariant() switch { "mlp" => "ffn", "attention" => "attn", var x => x };
            if (p == "all")
            {
                if (parts.Length > 1) throw new MatqException($"--layers '{Matq.SafeText.Escape(text)}': 'all' cannot be combined with other items");
                return All;
            }
            if (p.Any(ch => !(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-' or '*' or '?')))
                throw new MatqException($"--layers item '{Matq.SafeText.Escape(raw)}' has characters a module name cannot hold: use letters, digits, '.', '_', '*' and '?'");
            if (items.Any(i => i.Item1 == p)) continue;
            items.Add((p, Matcher(p)));
        }
        return new LayerFilter(string.Join(",", items.Select(i => i.Item1)), items.ToArray());
    }

    /// <summary>Whether module <paramref name="name"/> (e.g. "model.layers.0.mlp.up_proj", no ".weight") is selected.</summary>
    public bool Matches(string name) => IsAll || _items.Any(i => i.Match(name));

    /// <summary>Throws when an item matches none of <paramref name="names"/> (a typo must not quantize less than asked).</summary>
    public void CheckAgainst(IReadOnlyList<string> names)
    {
        foreach (var (item, match) in _items)
            if (!names.Any(match))
                throw new MatqException($"--layers item '{Matq.SafeText.Escape(item)}' matches no linear of this model (they look like {(names.Count > 0 ? names[0] : "model.layers.0.mlp.up_proj")}; "
                    + "use ffn, attn, a module suffix such as mlp.down_proj, or a glob such as *.mlp.*)");
    }

    private static Func<string, bool> Matcher(string item)
    {
        if (item == "ffn") return n => n.Contains(".mlp.", StringComparison.Ordinal);
        if (item == "attn") return n => n.Contains(".self_attn.", StringComparison.Ordinal);
        if (item.Contains('*') || item.Contains('?'))
        {
            var regex = new Regex("^" + Regex.Escape(item).Replace(@"\*", ".*").Replace(@"\?", ".") + "$",
                RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);
            return n => Suffixes(n).Any(regex.IsMatch);
        }
        return n => n.Equals(item, StringComparison.OrdinalIgnoreCase) || n.EndsWith("." + item, StringComparison.OrdinalIgnoreCase);
    }

    // "a.b.c" → "a.b.c", "b.c", "c"
    private static IEnumerable<string> Suffixes(string name)
    {
        yield return name;
        for (int i = name.IndexOf('.'); i >= 0; i = name.IndexOf('.', i + 1)) yield return name[(i + 1)..];
    }

    public bool Equals(LayerFilter? other) => other is not null && other.Text == Text;
    public override bool Equals(object? obj) => Equals(obj as LayerFilter);
    public override int GetHashCode() => Text.GetHashCode(StringComparison.Ordinal);
    public override string ToString() => Text;
}
