// Contract: splits a Jinja template (the subset HF chat templates use) into text, output ({{ }}), statement ({% %}) and
// comment ({# #}) segments, applying whitespace control as transformers configures Jinja: "-" on a tag side strips all
// whitespace there, trim_blocks drops the first newline after a statement or comment tag, lstrip_blocks drops spaces and
// tabs between a line start and a statement or comment tag, and one trailing newline of the source is dropped
// (keep_trailing_newline off). Tag interiors become expression tokens; every token keeps its source offset so errors
// name the line and column.
using System.Globalization;
using System.Text;

namespace Matq.Runtime.Chat;

/// <summary>A template that cannot be parsed or rendered; the message names the template, line and column.</summary>
public class TemplateException(string message) : MatqException(message);

/// <summary>raise_exception("...") called by the template: the message is the template's own text.</summary>
public sealed class TemplateRaisedException(string message, string templateMessage) : TemplateException(message)
{
    public string TemplateMessage { get; } = templateMessage;
}

internal enum TokenKind { Name, String, Int, Float, Op, End }

internal readonly record struct Token(TokenKind Kind, string Text, int Pos, object? Value = null)
{
    public bool Is(string op) => Kind == TokenKind.Op && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
}

internal enum SegmentKind { Text, Output, Statement }

internal sealed record Segment(SegmentKind Kind, int Pos, string Text, List<Token> Tokens);

internal sealed class TemplateSource(string name, string text)
{
    public string Name { get; } = name;
    public string Text { get; } = text;

    public TemplateException Error(int pos, string message)
    {
        int line = 1, col = 1;
        for (int i = 0; i < Math.Min(pos, Text.Length); i++)
        {
            if (Text[i] == '\n') { line++; col = 1; }
            else col++;
        }
        return new TemplateException($"chat template {Name}: line {line} column {col}: {SafeText.Escape(message, 400)}");
    }
}

internal static class TemplateLexer
{
    private static readonly string[] Ops = ["**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "~", "+", "-", "*", "/", "%", "<", ">", "="];

    private sealed class RawTag(char kind, int start, int end, bool stripLeft, bool stripRight, bool plusLeft, List<Token> tokens)
    {
        public char Kind = kind;            // '{' output, '%' statement, '#' comment
        public int Start = start, End = end;  // [start, end) in the source
        public bool StripLeft = stripLeft, StripRight = stripRight, PlusLeft = plusLeft;
        public List<Token> Tokens = tokens;
    }

    public static List<Segment> Tokenize(TemplateSource source)
    {
        string src = source.Text;
        if (src.EndsWith('\n')) src = src[..^1];   // keep_trailing_newline = False
        var tags = new List<RawTag>();
        int i = 0;
        while (true)
        {
            int open = NextTagStart(src, i);
            if (open < 0) break;
            char kind = src[open + 1];
            int p = open + 2;
            bool stripLeft = p < src.Length && src[p] == '-', plusLeft = p < src.Length && src[p] == '+';
            if (stripLeft || plusLeft) p++;
            List<Token> tokens = [];
            int end;
            if (kind == '#')
            {
                int close = src.IndexOf("#}", p, StringComparison.Ordinal);
                if (close < 0) throw source.Error(open, "a comment {# is never closed with #}");
                end = close + 2;
                tags.Add(new RawTag(kind, open, end, stripLeft, close > p && src[close - 1] == '-', plusLeft, tokens));
                i = end;
                continue;
            }
            char closer = kind == '{' ? '}' : '%';
            (tokens, end, bool stripRight) = TagTokens(source, src, p, closer, open);
            tags.Add(new RawTag(kind, open, end, stripLeft, stripRight, plusLeft, tokens));
            i = end;
        }

        // Text between tags, with whitespace control applied.
        var segments = new List<Segment>();
        int textStart = 0;
        for (int t = 0; t <= tags.Count; t++)
        {
            int textEnd = t < tags.Count ? tags[t].Start : src.Length;
            string text = src[textStart..textEnd];
            var prev = t > 0 ? tags[t - 1] : null;
            var next = t < tags.Count ? tags[t] : null;
            if (prev is not null)
            {
                if (prev.StripRight) text = text.TrimStart();
                else if (prev.Kind != '{')   // trim_blocks
                {
                    if (text.StartsWith("\r\n", StringComparison.Ordinal)) text = text[2..];
                    else if (text.StartsWith('\n')) text = text[1..];
                }
            }
            if (next is not null)
            {
                if (next.StripLeft) text = text.TrimEnd();
                else if (next.Kind != '{' && !next.PlusLeft)   // lstrip_blocks
                {
                    int nl = text.LastIndexOf('\n');
                    bool lineStart = nl >= 0 || textStart == 0;
                    string tail = text[(nl + 1)..];
                    if (lineStart && tail.All(c => c is ' ' or '\t')) text = text[..(nl + 1)];
                }
            }
            if (text.Length > 0) segments.Add(new Segment(SegmentKind.Text, textStart, text, []));
            if (next is not null && next.Kind != '#')
                segments.Add(new Segment(next.Kind == '{' ? SegmentKind.Output : SegmentKind.Statement, next.Start, "", next.Tokens));
            if (next is not null) textStart = next.End;
        }
        return segments;
    }

    private static int NextTagStart(string src, int from)
    {
        for (int i = src.IndexOf('{', from); i >= 0 && i + 1 < src.Length; i = src.IndexOf('{', i + 1))
            if (src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    // Tokens of a tag interior up to its closer ("}}" or "%}"), skipping string literals so "}}" inside a string stays text.
    private static (List<Token> Tokens, int End, bool StripRight) TagTokens(TemplateSource source, string src, int p, char closer, int open)
    {
        var tokens = new List<Token>();
        int depth = 0;   // open brackets: "}}" closes the tag only outside a dict literal
        while (true)
        {
            while (p < src.Length && char.IsWhiteSpace(src[p])) p++;
            if (p >= src.Length) throw source.Error(open, closer == '}' ? "an output tag {{ is never closed with }}" : "a statement tag {% is never closed with %}");
            bool dash = src[p] == '-' && p + 2 < src.Length && src[p + 1] == closer && src[p + 2] == '}';
            if (dash && depth == 0) return (Finish(tokens, p), p + 3, true);
            if (src[p] == closer && p + 1 < src.Length && src[p + 1] == '}' && depth == 0) return (Finish(tokens, p), p + 2, false);
            char c = src[p];
            if (c is '\'' or '"')
            {
                var (value, end) = ReadString(source, src, p);
                tokens.Add(new Token(TokenKind.String, src[p..end], p, value));
                p = end;
            }
            else if (char.IsDigit(c))
            {
                int s = p;
                while (p < src.Length && (char.IsDigit(src[p]) || src[p] == '_')) p++;
                bool isFloat = false;
                if (p + 1 < src.Length && src[p] == '.' && char.IsDigit(src[p + 1]))
                {
                    isFloat = true;
                    p++;
                    while (p < src.Length && char.IsDigit(src[p])) p++;
                }
                if (p < src.Length && src[p] is 'e' or 'E')
                {
                    int q = p + 1;
                    if (q < src.Length && src[q] is '+' or '-') q++;
                    if (q < src.Length && char.IsDigit(src[q]))
                    {
                        isFloat = true;
                        p = q;
                        while (p < src.Length && char.IsDigit(src[p])) p++;
                    }
                }
                string num = src[s..p].Replace("_", "");
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, num, s, double.Parse(num, CultureInfo.InvariantCulture))
                    : new Token(TokenKind.Int, num, s, long.TryParse(num, NumberStyles.None, CultureInfo.InvariantCulture, out long l) ? l
                        : throw source.Error(s, $"the integer {num} is too large")));
            }
            else if (char.IsLetter(c) || c == '_')
            {
                int s = p;
                while (p < src.Length && (char.IsLetterOrDigit(src[p]) || src[p] == '_')) p++;
                tokens.Add(new Token(TokenKind.Name, src[s..p], s));
            }
            else
            {
                string? op = Ops.FirstOrDefault(o => string.CompareOrdinal(src, p, o, 0, o.Length) == 0);
                if (op is null) throw source.Error(p, $"unexpected character {SafeText.Quote(c.ToString())} in a tag");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                tokens.Add(new Token(TokenKind.Op, op, p));
                p += op.Length;
            }
        }
    }

    private static List<Token> Finish(List<Token> tokens, int pos)
    {
        tokens.Add(new Token(TokenKind.End, "", pos));
        return tokens;
    }

    // A Python string literal: \n \t \r \\ \' \" \xNN \uNNNN \UNNNNNNNN \0; other escapes keep their backslash, as in Python.
    private static (string Value, int End) ReadString(TemplateSource source, string src, int start)
    {
        char quote = src[start];
        var sb = new StringBuilder();
        int p = start + 1;
        while (true)
        {
            if (p >= src.Length) throw source.Error(start, "a string literal is never closed");
            char c = src[p];
            if (c == quote) return (sb.ToString(), p + 1);
            if (c != '\\') { sb.Append(c); p++; continue; }
            if (p + 1 >= src.Length) throw source.Error(start, "a string literal ends in a backslash");
            char e = src[p + 1];
            p += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'a': sb.Append('\a'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break;   // line continuation
                case 'x' or 'u' or 'U':
                    int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (p + n > src.Length || !int.TryParse(src.AsSpan(p, n), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int cp)
                        || cp > 0x10FFFF)
                        throw source.Error(p - 2, $"the escape \\{e} needs {n} hex digits");
                    sb.Append(cp is >= 0xD800 and <= 0xDFFF ? ((char)cp).ToString() : char.ConvertFromUtf32(cp));
                    p += n;
                    break;
                default: sb.Append('\\').Append(e); break;
            }
        }
    }
}
