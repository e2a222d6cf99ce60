// Contract: parses lexer segments into a tree of statements (text, output, if/elif/else, for with unpacking, an inline
// filter and else, set of a name or namespace attribute, set blocks, macros, break/continue, generation blocks) and
// expressions with Jinja's precedence: ternary < or < and < not < comparisons/in/is < ~ < + - < * / // % < ** < unary
// < postfix (.attr, [index], [a:b:c], call) < filters and tests. Anything else is refused with the line and column.
namespace Matq.Runtime.Chat;

internal abstract record Node(int Pos);
internal sealed record TextNode(int Pos, string Text) : Node(Pos);
internal sealed record OutputNode(int Pos, Expr Value) : Node(Pos);
internal sealed record IfNode(int Pos, List<(Expr Cond, List<Node> Body)> Branches, List<Node>? Else) : Node(Pos);
internal sealed record ForNode(int Pos, string[] Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else) : Node(Pos);
internal sealed record SetNode(int Pos, string[] Names, Expr? Object, string? Attribute, Expr? Value, List<Node>? Body) : Node(Pos);
internal sealed record MacroNode(int Pos, string Name, (string Name, Expr? Default)[] Params, List<Node> Body) : Node(Pos);
internal sealed record LoopControlNode(int Pos, bool Break) : Node(Pos);

internal abstract record Expr(int Pos);
internal sealed record LiteralExpr(int Pos, object? Value) : Expr(Pos);
internal sealed record NameExpr(int Pos, string Name) : Expr(Pos);
internal sealed record ListExpr(int Pos, List<Expr> Items) : Expr(Pos);
internal sealed record DictExpr(int Pos, List<(Expr Key, Expr Value)> Items) : Expr(Pos);
internal sealed record AttrExpr(int Pos, Expr Object, string Name) : Expr(Pos);
internal sealed record IndexExpr(int Pos, Expr Object, Expr Index) : Expr(Pos);
internal sealed record SliceExpr(int Pos, Expr Object, Expr? Start, Expr? Stop, Expr? Step) : Expr(Pos);
internal sealed record CallExpr(int Pos, Expr Function, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Pos);
internal sealed record FilterExpr(int Pos, Expr Value, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Pos);
internal sealed record TestExpr(int Pos, Expr Value, string Name, List<Expr> Args, bool Negated) : Expr(Pos);
internal sealed record UnaryExpr(int Pos, string Op, Expr Operand) : Expr(Pos);
internal sealed record BinaryExpr(int Pos, string Op, Expr Left, Expr Right) : Expr(Pos);
internal sealed record TernaryExpr(int Pos, Expr Condition, Expr Then, Expr? Else) : Expr(Pos);

internal sealed class TemplateParser
{
    private readonly TemplateSource _source;
    private readonly List<Segment> _segments;
    private int _seg;
    private List<Token> _tokens = [];
    private int _tok;

    private TemplateParser(TemplateSource source, List<Segment> segments)
    {
        _source = source;
        _segments = segments;
    }

    public static List<Node> Parse(TemplateSource source)
    {
        var parser = new TemplateParser(source, TemplateLexer.Tokenize(source));
        var body = parser.ParseBlock([], out var end);
        if (end is not null) throw source.Error(end.Value.Pos, $"'{end.Value.Text}' has no block to close");
        return body;
    }

    // Parses nodes until a statement whose first name is in `enders` (returned, its tokens current) or the end.
    private List<Node> ParseBlock(string[] enders, out Token? ender)
    {
        var nodes = new List<Node>();
        while (_seg < _segments.Count)
        {
            var s = _segments[_seg++];
            switch (s.Kind)
            {
                case SegmentKind.Text:
                    nodes.Add(new TextNode(s.Pos, s.Text));
                    break;
                case SegmentKind.Output:
                    Begin(s);
                    nodes.Add(new OutputNode(s.Pos, ParseExpression()));
                    ExpectEnd();
                    break;
                default:
                    Begin(s);
                    var head = Next();
                    if (head.Kind != TokenKind.Name) throw Error(head, "a statement must start with a keyword such as if, for, set or macro");
                    if (enders.Contains(head.Text))
                    {
                        ender = head;
                        return nodes;
                    }
                    nodes.Add(ParseStatement(head));
                    break;
            }
        }
        ender = null;
        if (enders.Length > 0) throw _source.Error(_source.Text.Length, $"the template ends inside a block: expected {string.Join(" or ", enders.Select(e => "{% " + e + " %}"))}");
        return nodes;
    }

    private Node ParseStatement(Token head)
    {
        switch (head.Text)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                var cond = ParseExpression();
                ExpectEnd();
                List<Node>? elseBody = null;
                while (true)
                {
                    var body = ParseBlock(["elif", "else", "endif"], out var end);
                    branches.Add((cond, body));
                    if (end!.Value.Text == "elif")
                    {
                        cond = ParseExpression();
                        ExpectEnd();
                        continue;
                    }
                    ExpectEnd();
                    if (end.Value.Text == "else")
                    {
                        elseBody = ParseBlock(["endif"], out _);
                        ExpectEnd();
                    }
                    return new IfNode(head.Pos, branches, elseBody);
                }
            }
            case "for":
            {
                var targets = new List<string> { ExpectName().Text };
                while (Peek().Is(",")) { Next(); targets.Add(ExpectName().Text); }
                if (!Next().IsName("in")) throw Error(Prev(), "expected 'in' after the loop variable(s)");
                var iterable = ParseTernary(allowIf: false);
                Expr? filter = null;
                if (Peek().IsName("if")) { Next(); filter = ParseTernary(allowIf: false); }
                if (Peek().IsName("recursive")) throw Error(Peek(), "recursive loops are not supported");
                ExpectEnd();
                var body = ParseBlock(["else", "endfor"], out var end);
                ExpectEnd();
                List<Node>? elseBody = null;
                if (end!.Value.Text == "else")
                {
                    elseBody = ParseBlock(["endfor"], out _);
                    ExpectEnd();
                }
                return new ForNode(head.Pos, targets.ToArray(), iterable, filter, body, elseBody);
            }
            case "set":
            {
                var first = ExpectName();
                if (Peek().Is("."))
                {
                    Next();
                    var attr = ExpectName().Text;
                    Expect("=");
                    var v = ParseExpression();
                    ExpectEnd();
                    return new SetNode(head.Pos, [], new NameExpr(first.Pos, first.Text), attr, v, null);
                }
                var names = new List<string> { first.Text };
                while (Peek().Is(",")) { Next(); names.Add(ExpectName().Text); }
                if (Peek().Kind == TokenKind.End)
                {
                    if (names.Count > 1) throw Error(Peek(), "a set block assigns one name");
                    ExpectEnd();
                    var body = ParseBlock(["endset"], out _);
                    ExpectEnd();
                    return new SetNode(head.Pos, names.ToArray(), null, null, null, body);
                }
                Expect("=");
                var value = ParseExpression();
                ExpectEnd();
                return new SetNode(head.Pos, names.ToArray(), null, null, value, null);
            }
            case "macro":
            {
                var name = ExpectName().Text;
                Expect("(");
                var ps = new List<(string, Expr?)>();
                while (!Peek().Is(")"))
                {
                    var pn = ExpectName().Text;
                    Expr? def = null;
                    if (Peek().Is("=")) { Next(); def = ParseExpression(); }
                    ps.Add((pn, def));
                    if (!Peek().Is(")")) Expect(",");
                }
                Next();
                ExpectEnd();
                var body = ParseBlock(["endmacro"], out _);
                ExpectEnd();
                return new MacroNode(head.Pos, name, ps.ToArray(), body);
            }
            case "break" or "continue":
                ExpectEnd();
                return new LoopControlNode(head.Pos, head.Text == "break");
            case "generation":
            {
                // transformers' AssistantTracker marks assistant text; rendering is unchanged.
                ExpectEnd();
                var body = ParseBlock(["endgeneration"], out _);
                ExpectEnd();
                return new IfNode(head.Pos, [(new LiteralExpr(head.Pos, true), body)], null);
            }
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endgeneration":
                throw Error(head, $"'{{% {head.Text} %}}' has no open block it belongs to");
            default:
                throw Error(head, $"the statement '{head.Text}' is not supported by matq's chat-template engine (supported: if, for, set, macro, break, continue, generation)");
        }
    }

    // ---- expressions ----

    public Expr ParseExpression() => ParseTernary(allowIf: true);

    private Expr ParseTernary(bool allowIf)
    {
        var expr = ParseOr();
        while (allowIf && Peek().IsName("if"))
        {
            var t = Next();
            var cond = ParseOr();
            Expr? elseExpr = null;
            if (Peek().IsName("else")) { Next(); elseExpr = ParseTernary(allowIf: true); }
            expr = new TernaryExpr(t.Pos, cond, expr, elseExpr);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Peek().IsName("or")) { var t = Next(); left = new BinaryExpr(t.Pos, "or", left, ParseAnd()); }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Peek().IsName("and")) { var t = Next(); left = new BinaryExpr(t.Pos, "and", left, ParseNot()); }
        return left;
    }

    private Expr ParseNot()
    {
        if (Peek().IsName("not")) { var t = Next(); return new UnaryExpr(t.Pos, "not", ParseNot()); }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var left = ParseConcat();
        while (true)
        {
            var t = Peek();
            if (t.Kind == TokenKind.Op && t.Text is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                Next();
                left = new BinaryExpr(t.Pos, t.Text, left, ParseConcat());
            }
            else if (t.IsName("in")) { Next(); left = new BinaryExpr(t.Pos, "in", left, ParseConcat()); }
            else if (t.IsName("not") && PeekAt(1).IsName("in")) { Next(); Next(); left = new BinaryExpr(t.Pos, "not in", left, ParseConcat()); }
            else return left;
        }
    }

    private Expr ParseConcat()
    {
        var left = ParseAdd();
        while (Peek().Is("~")) { var t = Next(); left = new BinaryExpr(t.Pos, "~", left, ParseAdd()); }
        return left;
    }

    private Expr ParseAdd()
    {
        var left = ParseMul();
        while (Peek().Is("+") || Peek().Is("-")) { var t = Next(); left = new BinaryExpr(t.Pos, t.Text, left, ParseMul()); }
        return left;
    }

    private Expr ParseMul()
    {
        var left = ParsePow();
        while (Peek().Is("*") || Peek().Is("/") || Peek().Is("//") || Peek().Is("%")) { var t = Next(); left = new BinaryExpr(t.Pos, t.Text, left, ParsePow()); }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary();
        while (Peek().Is("**")) { var t = Next(); left = new BinaryExpr(t.Pos, "**", left, ParseUnary()); }
        return left;
    }

    private Expr ParseUnary()
    {
        if (Peek().Is("-") || Peek().Is("+"))
        {
            var t = Next();
            return ParseFilters(new UnaryExpr(t.Pos, t.Text, ParseUnary()));
        }
        return ParseFilters(ParsePostfix(ParsePrimary()));
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                // adjacent literals concatenate, as in Python
                string s = (string)t.Value!;
                while (Peek().Kind == TokenKind.String) s += (string)Next().Value!;
                return new LiteralExpr(t.Pos, s);
            }
            case TokenKind.Int:
            case TokenKind.Float:
                return new LiteralExpr(t.Pos, t.Value);
            case TokenKind.Name:
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(t.Pos, true),
                    "false" or "False" => new LiteralExpr(t.Pos, false),
                    "none" or "None" => new LiteralExpr(t.Pos, null),
                    _ => new NameExpr(t.Pos, t.Text),
                };
            case TokenKind.Op when t.Text == "(":
            {
                if (Peek().Is(")")) { Next(); return new ListExpr(t.Pos, []); }
                var first = ParseExpression();
                if (Peek().Is(")")) { Next(); return first; }
                var items = new List<Expr> { first };
                while (Peek().Is(","))
                {
                    Next();
                    if (Peek().Is(")")) break;
                    items.Add(ParseExpression());
                }
                Expect(")");
                return new ListExpr(t.Pos, items);
            }
            case TokenKind.Op when t.Text == "[":
            {
                var items = new List<Expr>();
                while (!Peek().Is("]"))
                {
                    items.Add(ParseExpression());
                    if (!Peek().Is("]")) Expect(",");
                }
                Next();
                return new ListExpr(t.Pos, items);
            }
            case TokenKind.Op when t.Text == "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!Peek().Is("}"))
                {
                    var k = ParseExpression();
                    Expect(":");
                    items.Add((k, ParseExpression()));
                    if (!Peek().Is("}")) Expect(",");
                }
                Next();
                return new DictExpr(t.Pos, items);
            }
            case TokenKind.End:
                throw Error(t, "the expression ends too early");
            default:
                throw Error(t, $"unexpected {SafeText.Quote(t.Text)} in an expression");
        }
    }

    private Expr ParsePostfix(Expr expr)
    {
        while (true)
        {
            var t = Peek();
            if (t.Is("."))
            {
                Next();
                var name = Next();
                if (name.Kind == TokenKind.Name) expr = new AttrExpr(name.Pos, expr, name.Text);
                else if (name.Kind == TokenKind.Int) expr = new IndexExpr(name.Pos, expr, new LiteralExpr(name.Pos, name.Value));
                else throw Error(name, "expected an attribute name after '.'");
            }
            else if (t.Is("["))
            {
                Next();
                Expr? start = null, stop = null, step = null;
                bool slice = false;
                if (!Peek().Is(":")) start = ParseExpression();
                if (Peek().Is(":"))
                {
                    slice = true;
                    Next();
                    if (!Peek().Is(":") && !Peek().Is("]")) stop = ParseExpression();
                    if (Peek().Is(":"))
                    {
                        Next();
                        if (!Peek().Is("]")) step = ParseExpression();
                    }
                }
                Expect("]");
                expr = slice ? new SliceExpr(t.Pos, expr, start, stop, step) : new IndexExpr(t.Pos, expr, start!);
            }
            else if (t.Is("("))
            {
                Next();
                var (args, kwargs) = ParseArgs();
                expr = new CallExpr(t.Pos, expr, args, kwargs);
            }
            else return expr;
        }
    }

    private (List<Expr>, List<(string, Expr)>) ParseArgs()
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Peek().Is(")"))
        {
            if (Peek().Kind == TokenKind.Name && PeekAt(1).Is("="))
            {
                var n = Next().Text;
                Next();
                kwargs.Add((n, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0) throw Error(Peek(), "a positional argument follows a keyword argument");
                args.Add(ParseExpression());
            }
            if (!Peek().Is(")")) Expect(",");
        }
        Next();
        return (args, kwargs);
    }

    private Expr ParseFilters(Expr expr)
    {
        while (true)
        {
            var t = Peek();
            if (t.Is("|"))
            {
                Next();
                var name = ExpectName();
                List<Expr> args = [];
                List<(string, Expr)> kwargs = [];
                if (Peek().Is("(")) { Next(); (args, kwargs) = ParseArgs(); }
                expr = new FilterExpr(name.Pos, expr, name.Text, args, kwargs);
            }
            else if (t.IsName("is"))
            {
                Next();
                bool negated = false;
                if (Peek().IsName("not")) { Next(); negated = true; }
                var name = Next();
                if (name.Kind != TokenKind.Name && !(name.Kind == TokenKind.Op && name.Text is "==" or "!=" or "<" or ">" or "<=" or ">="))
                    throw Error(name, "expected a test name after 'is'");
                var args = new List<Expr>();
                if (Peek().Is("(")) { Next(); args = ParseArgs().Item1; }
                else if (Peek().Kind is TokenKind.String or TokenKind.Int or TokenKind.Float
                         || (Peek().Kind == TokenKind.Name && !Peek().IsName("and") && !Peek().IsName("or") && !Peek().IsName("if")
                             && !Peek().IsName("else") && !Peek().IsName("is") && !Peek().IsName("in") && !Peek().IsName("not")))
                    args.Add(ParsePostfix(ParsePrimary()));
                expr = new TestExpr(name.Pos, expr, name.Text, args, negated);
            }
            else return expr;
        }
    }

    // ---- token helpers ----

    private void Begin(Segment s)
    {
        _tokens = s.Tokens;
        _tok = 0;
    }

    private Token Peek() => _tokens[Math.Min(_tok, _tokens.Count - 1)];
    private Token PeekAt(int k) => _tokens[Math.Min(_tok + k, _tokens.Count - 1)];
    private Token Prev() => _tokens[Math.Max(0, _tok - 1)];

    private Token Next()
    {
        var t = Peek();
        if (_tok < _tokens.Count - 1) _tok++;
        return t;
    }

    private Token ExpectName()
    {
        var t = Next();
        return t.Kind == TokenKind.Name ? t : throw Error(t, $"expected a name, found {Describe(t)}");
    }

    private void Expect(string op)
    {
        var t = Next();
        if (!t.Is(op)) throw Error(t, $"expected '{op}', found {Describe(t)}");
    }

    private void ExpectEnd()
    {
        var t = Peek();
        if (t.Kind != TokenKind.End) throw Error(t, $"unexpected {Describe(t)}: expected the end of the tag");
    }

    private static string Describe(Token t) => t.Kind == TokenKind.End ? "the end of the tag" : SafeText.Quote(t.Text);

    private TemplateException Error(Token t, string message) => _source.Error(t.Pos, message);
}
