// Contract: evaluates a parsed template against variables, as transformers' sandboxed Jinja environment does for the
// statements and expressions HF chat templates use: for loops own their scope (assignments inside do not leak out; use
// namespace()), `loop` carries index/index0/revindex/revindex0/first/last/length/previtem/nextitem, macros render to
// strings, attribute access on undefined is an error, and raise_exception(msg) stops with the template's message.
// Filters, tests and the str/dict/list methods a template may call are the tables below; anything else is refused,
// naming it and where it appears.
using System.Globalization;
using System.Text;

namespace Matq.Runtime.Chat;

internal sealed class TemplateRenderer
{
    private sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, object?> Vars = new(StringComparer.Ordinal);
        public readonly Scope? Parent = parent;

        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
    }

    private enum Flow { Normal, Break, Continue }

    private readonly TemplateSource _source;
    private readonly Func<DateTime> _now;
    private int _depth;

    public TemplateRenderer(TemplateSource source, Func<DateTime>? now = null)
    {
        _source = source;
        _now = now ?? (() => DateTime.Now);
    }

    public string Render(List<Node> nodes, IReadOnlyDictionary<string, object?> variables)
    {
        var globals = new Scope(null);
        globals.Vars["raise_exception"] = new TemplateCallable("raise_exception", (a, _) => throw new TemplateRaisedException(
            $"chat template {_source.Name} refused the conversation: {(a.Count > 0 ? SafeText.Escape(TemplateValues.Str(a[0]), 400) : "raise_exception() was called")}",
            a.Count > 0 ? TemplateValues.Str(a[0]) : ""));
        globals.Vars["namespace"] = new TemplateCallable("namespace", (a, kw) =>
        {
            var ns = new TemplateNamespace();
            foreach (var d in a.OfType<TemplateDict>()) foreach (var kv in d) ns.Attributes[kv.Key] = kv.Value;
            foreach (var kv in kw) ns.Attributes[kv.Key] = kv.Value;
            return ns;
        });
        globals.Vars["range"] = new TemplateCallable("range", (a, _) =>
        {
            long start = 0, stop, step = 1;
            if (a.Count == 1) stop = Int(a[0], "range");
            else if (a.Count is 2 or 3) { start = Int(a[0], "range"); stop = Int(a[1], "range"); if (a.Count == 3) step = Int(a[2], "range"); }
            else throw new InvalidOperationException("range() takes 1 to 3 arguments");
            if (step == 0) throw new InvalidOperationException("range() step must not be zero");
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step)
            {
                if (list.Count >= 100_000) throw new InvalidOperationException("range() is limited to 100000 items");
                list.Add(i);
            }
            return list;
        });
        globals.Vars["dict"] = new TemplateCallable("dict", (_, kw) => { var d = new TemplateDict(); foreach (var kv in kw) d[kv.Key] = kv.Value; return d; });
        globals.Vars["strftime_now"] = new TemplateCallable("strftime_now", (a, _) => Strftime(_now(), a.Count > 0 ? TemplateValues.Str(a[0]) : ""));
        var scope = new Scope(globals);
        foreach (var kv in variables) scope.Vars[kv.Key] = kv.Value;
        var sb = new StringBuilder();
        Exec(nodes, scope, sb);
        return sb.ToString();
    }

    // ---- statements ----

    private Flow Exec(List<Node> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            var flow = ExecOne(node, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Node node, Scope scope, StringBuilder output)
    {
        switch (node)
        {
            case TextNode t:
                output.Append(t.Text);
                return Flow.Normal;
            case OutputNode o:
                output.Append(TemplateValues.Str(Eval(o.Value, scope)));
                return Flow.Normal;
            case IfNode i:
                foreach (var (cond, body) in i.Branches)
                    if (TemplateValues.Truthy(Eval(cond, scope))) return Exec(body, scope, output);
                return i.Else is null ? Flow.Normal : Exec(i.Else, scope, output);
            case ForNode f:
                return ExecFor(f, scope, output);
            case SetNode s:
                ExecSet(s, scope);
                return Flow.Normal;
            case MacroNode m:
                scope.Vars[m.Name] = Macro(m, scope);
                return Flow.Normal;
            case LoopControlNode l:
                return l.Break ? Flow.Break : Flow.Continue;
            default:
                throw _source.Error(node.Pos, $"cannot run a {node.GetType().Name}");
        }
    }

    private Flow ExecFor(ForNode f, Scope scope, StringBuilder output)
    {
        var iterable = Eval(f.Iterable, scope);
        var items = Iterate(iterable, f.Iterable.Pos);
        var loopScope = new Scope(scope);
        if (f.Filter is not null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                Bind(f, loopScope, item);
                if (TemplateValues.Truthy(Eval(f.Filter, loopScope))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0) return f.Else is null ? Flow.Normal : Exec(f.Else, scope, output);
        for (int i = 0; i < items.Count; i++)
        {
            Bind(f, loopScope, items[i]);
            var loop = new TemplateDict
            {
                ["index"] = (long)(i + 1), ["index0"] = (long)i, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                ["first"] = i == 0, ["last"] = i == items.Count - 1, ["length"] = (long)items.Count, ["depth"] = 1L, ["depth0"] = 0L,
                ["previtem"] = i > 0 ? items[i - 1] : new Undefined("loop.previtem"),
                ["nextitem"] = i + 1 < items.Count ? items[i + 1] : new Undefined("loop.nextitem"),
            };
            int index = i;
            loop["cycle"] = new TemplateCallable("loop.cycle", (a, _) => a.Count == 0 ? throw new InvalidOperationException("loop.cycle() needs at least one value") : a[index % a.Count]);
            loopScope.Vars["loop"] = loop;
            if (Exec(f.Body, loopScope, output) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    private void Bind(ForNode f, Scope loopScope, object? item)
    {
        if (f.Targets.Length == 1)
        {
            loopScope.Vars[f.Targets[0]] = item;
            return;
        }
        var parts = item as List<object?> ?? (item is string s ? s.Select(c => (object?)c.ToString()).ToList() : null);
        if (parts is null || parts.Count != f.Targets.Length)
            throw _source.Error(f.Pos, $"cannot unpack a {TemplateValues.TypeName(item)} into {f.Targets.Length} loop variables ({string.Join(", ", f.Targets)})");
        for (int k = 0; k < parts.Count; k++) loopScope.Vars[f.Targets[k]] = parts[k];
    }

    private void ExecSet(SetNode s, Scope scope)
    {
        if (s.Object is not null)
        {
            var target = Eval(s.Object, scope);
            if (target is not TemplateNamespace ns)
                throw _source.Error(s.Pos, $"cannot set the attribute '{s.Attribute}' on a {TemplateValues.TypeName(target)}: only a namespace() takes attributes");
            ns.Attributes[s.Attribute!] = Eval(s.Value!, scope);
            return;
        }
        object? value;
        if (s.Body is not null)
        {
            var sb = new StringBuilder();
            Exec(s.Body, new Scope(scope), sb);
            value = sb.ToString();
        }
        else value = Eval(s.Value!, scope);
        if (s.Names.Length == 1)
        {
            scope.Vars[s.Names[0]] = value;
            return;
        }
        if (value is not List<object?> parts || parts.Count != s.Names.Length)
            throw _source.Error(s.Pos, $"cannot unpack a {TemplateValues.TypeName(value)} into {s.Names.Length} names");
        for (int k = 0; k < parts.Count; k++) scope.Vars[s.Names[k]] = parts[k];
    }

    private TemplateCallable Macro(MacroNode m, Scope defining) => new(m.Name, (args, kwargs) =>
    {
        if (args.Count > m.Params.Length) throw _source.Error(m.Pos, $"macro {m.Name} takes {m.Params.Length} arguments, got {args.Count}");
        var local = new Scope(defining);
        for (int k = 0; k < m.Params.Length; k++)
        {
            var (name, def) = m.Params[k];
            local.Vars[name] = k < args.Count ? args[k]
                : kwargs.TryGetValue(name, out var kv) ? kv
                : def is not null ? Eval(def, local) : new Undefined(name);
        }
        if (++_depth > 64) throw _source.Error(m.Pos, $"macro {m.Name} recursed more than 64 levels deep");
        try
        {
            var sb = new StringBuilder();
            Exec(m.Body, local, sb);
            return sb.ToString();
        }
        finally { _depth--; }
    });

    // ---- expressions ----

    private object? Eval(Expr e, Scope scope)
    {
        try
        {
            return EvalCore(e, scope);
        }
        catch (InvalidOperationException ex)   // a type error in the template's own logic: say where
        {
            throw _source.Error(e.Pos, ex.Message);
        }
        catch (InvalidCastException ex)
        {
            throw _source.Error(e.Pos, ex.Message);
        }
    }

    private object? EvalCore(Expr e, Scope scope)
    {
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : new Undefined(n.Name);
            case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
            case DictExpr d:
            {
                var dict = new TemplateDict();
                foreach (var (k, val) in d.Items)
                    dict[Eval(k, scope) as string ?? throw new InvalidOperationException("dict literal keys must be strings")] = Eval(val, scope);
                return dict;
            }
            case AttrExpr a: return GetAttr(Eval(a.Object, scope), a.Name, Describe(a.Object));
            case IndexExpr i: return GetItem(Eval(i.Object, scope), Eval(i.Index, scope), Describe(i.Object));
            case SliceExpr s:
                return Slice(Eval(s.Object, scope), s.Start is null ? null : Eval(s.Start, scope), s.Stop is null ? null : Eval(s.Stop, scope),
                    s.Step is null ? null : Eval(s.Step, scope));
            case CallExpr c:
            {
                var fn = Eval(c.Function, scope);
                var args = c.Args.Select(x => Eval(x, scope)).ToList();
                var kwargs = new TemplateDict();
                foreach (var (k, val) in c.Kwargs) kwargs[k] = Eval(val, scope);
                if (fn is TemplateCallable callable) return callable.Invoke(args, kwargs);
                if (fn is Undefined u) throw new InvalidOperationException($"'{u.Name}' is undefined and cannot be called");
                throw new InvalidOperationException($"a {TemplateValues.TypeName(fn)} is not callable");
            }
            case FilterExpr f:
            {
                var value = Eval(f.Value, scope);
                var args = f.Args.Select(x => Eval(x, scope)).ToList();
                var kwargs = new TemplateDict();
                foreach (var (k, val) in f.Kwargs) kwargs[k] = Eval(val, scope);
                return ApplyFilter(f.Name, value, args, kwargs, f.Pos);
            }
            case TestExpr t:
            {
                var value = Eval(t.Value, scope);
                bool r = ApplyTest(t.Name, value, t.Args.Select(x => Eval(x, scope)).ToList(), t.Pos);
                return t.Negated ? !r : r;
            }
            case UnaryExpr u:
            {
                var v2 = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !TemplateValues.Truthy(v2),
                    "-" => v2 switch { long l => (object)(-l), double d => -d, bool b => b ? -1L : 0L, _ => throw new InvalidOperationException($"cannot negate a {TemplateValues.TypeName(v2)}") },
                    _ => TemplateValues.IsNumber(v2) ? v2 : throw new InvalidOperationException($"unary + needs a number, got a {TemplateValues.TypeName(v2)}"),
                };
            }
            case BinaryExpr b:
            {
                if (b.Op == "and")
                {
                    var l = Eval(b.Left, scope);
                    return TemplateValues.Truthy(l) ? Eval(b.Right, scope) : l;
                }
                if (b.Op == "or")
                {
                    var l = Eval(b.Left, scope);
                    return TemplateValues.Truthy(l) ? l : Eval(b.Right, scope);
                }
                return Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope));
            }
            case TernaryExpr t:
                return TemplateValues.Truthy(Eval(t.Condition, scope)) ? Eval(t.Then, scope)
                    : t.Else is null ? new Undefined("(if without else)") : Eval(t.Else, scope);
            default:
                throw _source.Error(e.Pos, $"cannot evaluate a {e.GetType().Name}");
        }
    }

    private static string Describe(Expr e) => e switch
    {
        NameExpr n => n.Name,
        AttrExpr a => Describe(a.Object) + "." + a.Name,
        IndexExpr { Index: LiteralExpr l } i => Describe(i.Object) + "[" + TemplateValues.Repr(l.Value) + "]",
        IndexExpr i => Describe(i.Object) + "[...]",
        _ => "the value",
    };

    private static object? Binary(string op, object? l, object? r)
    {
        switch (op)
        {
            case "==": return TemplateValues.PyEquals(l, r);
            case "!=": return !TemplateValues.PyEquals(l, r);
            case "<" or ">" or "<=" or ">=":
            {
                int c = Compare(l, r);
                return op switch { "<" => c < 0, ">" => c > 0, "<=" => c <= 0, _ => c >= 0 };
            }
            case "in": return Contains(r, l);
            case "not in": return !Contains(r, l);
            case "~": return TemplateValues.Str(l) + TemplateValues.Str(r);
            case "+":
                return (l, r) switch
                {
                    (string a, string b) => a + b,
                    (List<object?> a, List<object?> b) => a.Concat(b).ToList(),
                    _ when TemplateValues.IsNumber(l) && TemplateValues.IsNumber(r) => Arith(op, l, r),
                    _ => throw TypeError("+", l, r),
                };
            case "*":
                if (l is string s && r is long n) return string.Concat(Enumerable.Repeat(s, (int)Math.Clamp(n, 0, 100_000)));
                if (l is List<object?> list && r is long m) return Enumerable.Repeat(list, (int)Math.Clamp(m, 0, 100_000)).SelectMany(x => x).ToList();
                return TemplateValues.IsNumber(l) && TemplateValues.IsNumber(r) ? Arith(op, l, r) : throw TypeError("*", l, r);
            case "%" when l is string:
                throw new InvalidOperationException("printf-style string formatting (str % value) is not supported; use ~ or +");
            default:
                return TemplateValues.IsNumber(l) && TemplateValues.IsNumber(r) ? Arith(op, l, r) : throw TypeError(op, l, r);
        }
    }

    private static InvalidOperationException TypeError(string op, object? l, object? r) =>
        new($"unsupported operand types for {op}: '{TemplateValues.TypeName(l)}' and '{TemplateValues.TypeName(r)}'");

    private static object Arith(string op, object? l, object? r)
    {
        if (op == "/") return TemplateValues.ToDouble(l) / NonZero(TemplateValues.ToDouble(r));
        if (l is double || r is double)
        {
            double a = TemplateValues.ToDouble(l), b = TemplateValues.ToDouble(r);
            return op switch
            {
                "+" => (object)(a + b), "-" => a - b, "*" => a * b, "**" => Math.Pow(a, b),
                "//" => Math.Floor(a / NonZero(b)), "%" => a - b * Math.Floor(a / NonZero(b)),
                _ => throw new InvalidOperationException($"unknown operator {op}"),
            };
        }
        long x = TemplateValues.ToLong(l), y = TemplateValues.ToLong(r);
        return op switch
        {
            "+" => (object)checked(x + y), "-" => checked(x - y), "*" => checked(x * y),
            "**" => y >= 0 ? (object)checked((long)Math.Pow(x, y)) : Math.Pow(x, y),
            "//" => FloorDiv(x, y), "%" => x - y * FloorDiv(x, y),
            _ => throw new InvalidOperationException($"unknown operator {op}"),
        };
    }

    private static double NonZero(double d) => d != 0 ? d : throw new InvalidOperationException("division by zero");

    private static long FloorDiv(long x, long y)
    {
        if (y == 0) throw new InvalidOperationException("integer division or modulo by zero");
        long q = x / y;
        return (x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q;
    }

    private static int Compare(object? l, object? r)
    {
        if (TemplateValues.IsNumber(l) && TemplateValues.IsNumber(r)) return TemplateValues.ToDouble(l).CompareTo(TemplateValues.ToDouble(r));
        if (l is string a && r is string b) return string.CompareOrdinal(a, b);
        throw new InvalidOperationException($"cannot order a '{TemplateValues.TypeName(l)}' and a '{TemplateValues.TypeName(r)}'");
    }

    private static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw new InvalidOperationException($"'in <string>' requires a string on the left, not a '{TemplateValues.TypeName(item)}'"),
        List<object?> list => list.Any(x => TemplateValues.PyEquals(x, item)),
        TemplateDict d => item is string k && d.ContainsKey(k),
        TemplateNamespace ns => item is string k && ns.Attributes.ContainsKey(k),
        Undefined => false,
        _ => throw new InvalidOperationException($"a '{TemplateValues.TypeName(container)}' is not a container for 'in'"),
    };

    private List<object?> Iterate(object? v, int pos) => v switch
    {
        List<object?> l => l,
        TemplateDict d => d.Keys.Select(k => (object?)k).ToList(),
        string s => StringItems(s),
        Undefined => [],
        _ => throw _source.Error(pos, $"a '{TemplateValues.TypeName(v)}' is not iterable"),
    };

    private static List<object?> StringItems(string s)
    {
        var list = new List<object?>();
        foreach (var r in s.EnumerateRunes()) list.Add(r.ToString());
        return list;
    }

    // ---- attribute and item access ----

    private object? GetAttr(object? obj, string name, string what)
    {
        switch (obj)
        {
            case Undefined u:
                throw new InvalidOperationException($"'{u.Name}' is undefined, so it has no attribute '{name}'");
            case null:
                throw new InvalidOperationException($"{what} is None, so it has no attribute '{name}'");
            case TemplateNamespace ns:
                return ns.Attributes.TryGetValue(name, out var nv) ? nv : new Undefined(what + "." + name);
            case TemplateDict d:
                if (TemplateMethods.Dict(d, name) is TemplateCallable m) return m;
                return d.TryGetValue(name, out var dv) ? dv : new Undefined(what + "." + name);
            case string s:
                return (object?)TemplateMethods.Str(s, name) ?? new Undefined(what + "." + name);
            case List<object?> l:
                return (object?)TemplateMethods.List(l, name) ?? new Undefined(what + "." + name);
            default:
                return new Undefined(what + "." + name);
        }
    }

    private static object? GetItem(object? obj, object? key, string what)
    {
        switch (obj)
        {
            case Undefined u:
                throw new InvalidOperationException($"'{u.Name}' is undefined, so it cannot be indexed");
            case null:
                throw new InvalidOperationException($"{what} is None, so it cannot be indexed");
            case TemplateDict d:
                return key is string k && d.TryGetValue(k, out var v) ? v : new Undefined($"{what}[{TemplateValues.Repr(key)}]");
            case TemplateNamespace ns:
                return key is string nk && ns.Attributes.TryGetValue(nk, out var nv) ? nv : new Undefined($"{what}[{TemplateValues.Repr(key)}]");
            case List<object?> l when key is long or bool:
            {
                long i = TemplateValues.ToLong(key);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : new Undefined($"{what}[{TemplateValues.Repr(key)}]");
            }
            case string s when key is long or bool:
            {
                var runes = StringItems(s);
                long i = TemplateValues.ToLong(key);
                if (i < 0) i += runes.Count;
                return i >= 0 && i < runes.Count ? runes[(int)i] : new Undefined($"{what}[{TemplateValues.Repr(key)}]");
            }
            default:
                return new Undefined($"{what}[{TemplateValues.Repr(key)}]");
        }
    }

    private static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        List<object?> items = obj switch
        {
            List<object?> l => l,
            string s => StringItems(s),
            _ => throw new InvalidOperationException($"a '{TemplateValues.TypeName(obj)}' cannot be sliced"),
        };
        long n = items.Count;
        long st = step is null ? 1 : Int(step, "slice step");
        if (st == 0) throw new InvalidOperationException("slice step cannot be zero");
        long Norm(object? v, long dflt)
        {
            if (v is null) return dflt;
            long x = Int(v, "slice index");
            if (x < 0) x += n;
            return st > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long a = Norm(start, st > 0 ? 0 : n - 1), b = Norm(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
        return obj is string ? string.Concat(result.Cast<string>()) : result;
    }

    private static long Int(object? v, string what) =>
        v is long or bool ? TemplateValues.ToLong(v) : throw new InvalidOperationException($"{what} must be an integer, got a '{TemplateValues.TypeName(v)}'");

    // ---- filters and tests ----

    private object? ApplyFilter(string name, object? value, List<object?> args, TemplateDict kwargs, int pos)
    {
        object? Arg(int i, string key, object? dflt) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var v) ? v : dflt;
        switch (name)
        {
            case "trim":
            {
                var chars = Arg(0, "chars", null) as string;
                var s = TemplateValues.Str(value);
                return TemplateMethods.PyStrip(s, chars, true, true);
            }
            case "length" or "count":
                return value switch
                {
                    string s => (long)StringItems(s).Count,
                    List<object?> l => (long)l.Count,
                    TemplateDict d => (long)d.Count,
                    Undefined => 0L,
                    _ => throw _source.Error(pos, $"a '{TemplateValues.TypeName(value)}' has no length"),
                };
            case "upper": return TemplateValues.Str(value).ToUpperInvariant();
            case "lower": return TemplateValues.Str(value).ToLowerInvariant();
            case "capitalize": { var s = TemplateValues.Str(value); return s.Length == 0 ? s : s[..1].ToUpperInvariant() + s[1..].ToLowerInvariant(); }
            case "title": return TemplateMethods.Title(TemplateValues.Str(value));
            case "replace":
                return TemplateMethods.Replace(TemplateValues.Str(value), TemplateValues.Str(Arg(0, "old", "")), TemplateValues.Str(Arg(1, "new", "")),
                    Arg(2, "count", null) is long c ? c : -1);
            case "join":
            {
                var attr = Arg(1, "attribute", null) as string;
                var items = Iterate(value, pos).Select(x => attr is null ? x : GetAttr(x, attr, "item"));
                return string.Join(TemplateValues.Str(Arg(0, "d", "")), items.Select(TemplateValues.Str));
            }
            case "first": { var l = Iterate(value, pos); return l.Count > 0 ? l[0] : new Undefined("first of an empty sequence"); }
            case "last": { var l = Iterate(value, pos); return l.Count > 0 ? l[^1] : new Undefined("last of an empty sequence"); }
            case "default" or "d":
            {
                bool boolean = TemplateValues.Truthy(Arg(1, "boolean", false));
                return value is Undefined || (boolean && !TemplateValues.Truthy(value)) ? Arg(0, "default_value", "") : value;
            }
            case "items":
                return value switch
                {
                    TemplateDict d => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
                    Undefined => new List<object?>(),
                    _ => throw _source.Error(pos, $"the items filter needs a mapping, got a '{TemplateValues.TypeName(value)}'"),
                };
            case "string": return TemplateValues.Str(value);
            case "int":
                return value switch
                {
                    long l => (object)l, bool b => b ? 1L : 0L, double d => (long)Math.Truncate(d),
                    string s when long.TryParse(s.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long p) => p,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double f) => (long)Math.Truncate(f),
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long or bool or double => TemplateValues.ToDouble(value),
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double f) => f,
                    _ => Arg(0, "default", 0.0),
                };
            case "list": return Iterate(value, pos).ToList();
            case "reverse":
                return value is string rs ? string.Concat(StringItems(rs).Cast<string>().Reverse()) : Iterate(value, pos).AsEnumerable().Reverse().ToList();
            case "unique":
            {
                var result = new List<object?>();
                foreach (var x in Iterate(value, pos)) if (!result.Any(y => TemplateValues.PyEquals(x, y))) result.Add(x);
                return result;
            }
            case "abs": return value switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw _source.Error(pos, "abs needs a number") };
            case "safe": return value;
            case "escape" or "e":
                return TemplateValues.Str(value).Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");
            case "tojson":
            {
                int? indent = Arg(0, "indent", null) is long n ? (int)n : null;
                (string, string)? seps = Arg(2, "separators", null) is List<object?> { Count: 2 } sp ? (TemplateValues.Str(sp[0]), TemplateValues.Str(sp[1])) : null;
                return TemplateValues.ToJson(value, indent, TemplateValues.Truthy(Arg(1, "ensure_ascii", false)), seps, TemplateValues.Truthy(Arg(3, "sort_keys", false)));
            }
            case "indent":
            {
                string pad = Arg(0, "width", 4L) is long w ? new string(' ', (int)w) : TemplateValues.Str(Arg(0, "width", ""));
                bool first = TemplateValues.Truthy(Arg(1, "first", false)), blank = TemplateValues.Truthy(Arg(2, "blank", false));
                var lines = TemplateValues.Str(value).Split('\n');
                for (int i = 0; i < lines.Length; i++)
                    if ((i > 0 || first) && (blank || lines[i].Length > 0)) lines[i] = pad + lines[i];
                return string.Join("\n", lines);
            }
            case "select" or "reject":
            {
                if (args.Count == 0) return Iterate(value, pos).Where(x => TemplateValues.Truthy(x) == (name == "select")).ToList();
                string test = TemplateValues.Str(args[0]);
                return Iterate(value, pos).Where(x => ApplyTest(test, x, args.Skip(1).ToList(), pos) == (name == "select")).ToList();
            }
            case "selectattr" or "rejectattr":
            {
                if (args.Count == 0) throw _source.Error(pos, $"{name} needs an attribute name");
                string attr = TemplateValues.Str(args[0]);
                bool keep = name == "selectattr";
                return Iterate(value, pos).Where(x =>
                {
                    var a = x is TemplateDict d ? (d.TryGetValue(attr, out var av) ? av : new Undefined(attr)) : GetAttr(x, attr, "item");
                    bool r = args.Count < 2 ? TemplateValues.Truthy(a) : ApplyTest(TemplateValues.Str(args[1]), a, args.Skip(2).ToList(), pos);
                    return r == keep;
                }).ToList();
            }
            case "map":
            {
                if (kwargs.TryGetValue("attribute", out var attrName))
                {
                    string attr = TemplateValues.Str(attrName);
                    return Iterate(value, pos).Select(x => x is TemplateDict d ? (d.TryGetValue(attr, out var av) ? av : kwargs.GetValueOrDefault("default", new Undefined(attr))) : GetAttr(x, attr, "item")).ToList();
                }
                if (args.Count == 0) throw _source.Error(pos, "map needs a filter name or attribute=");
                string filter = TemplateValues.Str(args[0]);
                return Iterate(value, pos).Select(x => ApplyFilter(filter, x, args.Skip(1).ToList(), new TemplateDict(), pos)).ToList();
            }
            case "sort":
            {
                bool reverse = TemplateValues.Truthy(Arg(0, "reverse", false));
                var attr = Arg(2, "attribute", null) as string;
                var list = Iterate(value, pos).ToList();
                object? Key(object? x) => attr is null ? x : GetAttr(x, attr, "item");
                list.Sort((a, b) => Compare(Key(a), Key(b)));
                if (reverse) list.Reverse();
                return list;
            }
            case "wordcount": return (long)TemplateValues.Str(value).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            default:
                throw _source.Error(pos, $"the filter '{name}' is not supported by matq's chat-template engine");
        }
    }

    private bool ApplyTest(string name, object? v, List<object?> args, int pos)
    {
        object? A() => args.Count > 0 ? args[0] : throw _source.Error(pos, $"the test '{name}' needs an argument");
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "string" => v is string,
            "number" => v is long or double,
            "integer" => v is long,
            "float" => v is double,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "mapping" => v is TemplateDict,
            "iterable" => v is string or List<object?> or TemplateDict or Undefined,
            "sequence" => v is string or List<object?> or TemplateDict,
            "callable" => v is TemplateCallable,
            "odd" => v is long l1 && Math.Abs(l1 % 2) == 1,
            "even" => v is long l2 && l2 % 2 == 0,
            "divisibleby" => v is long l3 && A() is long d && d != 0 && l3 % d == 0,
            "lower" => v is string s1 && s1 == s1.ToLowerInvariant(),
            "upper" => v is string s2 && s2 == s2.ToUpperInvariant(),
            "equalto" or "eq" or "==" or "sameas" => TemplateValues.PyEquals(v, A()) && (name != "sameas" || v?.GetType() == A()?.GetType()),
            "ne" or "!=" => !TemplateValues.PyEquals(v, A()),
            "lt" or "lessthan" or "<" => Compare(v, A()) < 0,
            "gt" or "greaterthan" or ">" => Compare(v, A()) > 0,
            "le" or "<=" => Compare(v, A()) <= 0,
            "ge" or ">=" => Compare(v, A()) >= 0,
            "in" => Contains(A(), v),
            _ => throw _source.Error(pos, $"the test '{name}' is not supported by matq's chat-template engine"),
        };
    }

    // Python's strftime for the directives chat templates use (English names, as the C locale prints them).
    internal static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            sb.Append(c switch
            {
                'd' => t.Day.ToString("00", CultureInfo.InvariantCulture),
                'm' => t.Month.ToString("00", CultureInfo.InvariantCulture),
                'Y' => t.Year.ToString("0000", CultureInfo.InvariantCulture),
                'y' => (t.Year % 100).ToString("00", CultureInfo.InvariantCulture),
                'H' => t.Hour.ToString("00", CultureInfo.InvariantCulture),
                'I' => ((t.Hour + 11) % 12 + 1).ToString("00", CultureInfo.InvariantCulture),
                'M' => t.Minute.ToString("00", CultureInfo.InvariantCulture),
                'S' => t.Second.ToString("00", CultureInfo.InvariantCulture),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' => CultureInfo.InvariantCulture.DateTimeFormat.GetAbbreviatedMonthName(t.Month),
                'B' => CultureInfo.InvariantCulture.DateTimeFormat.GetMonthName(t.Month),
                'a' => CultureInfo.InvariantCulture.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek),
                'A' => CultureInfo.InvariantCulture.DateTimeFormat.GetDayName(t.DayOfWeek),
                'j' => t.DayOfYear.ToString("000", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }
}
