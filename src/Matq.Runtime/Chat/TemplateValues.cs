// Contract: the value model of the chat-template engine, with Python/Jinja semantics where HF templates can observe them:
// null is None, Undefined is Jinja's default undefined (prints "", false, iterates empty), long/double/bool/string,
// List<object?> for lists and tuples, TemplateDict (insertion-ordered, string keys) for mappings. Str is Python's str()
// (None, True, 1.0, ['a'] and {'k': 1} print as Python prints them), ToJson is transformers' tojson
// (json.dumps with ensure_ascii=False), FromJson turns request JSON into values.
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Matq.Runtime.Chat;

/// <summary>Jinja's undefined value; Name is what was looked up (for error messages).</summary>
public sealed class Undefined(string name)
{
    public string Name { get; } = name;
    public override string ToString() => "";
}

/// <summary>An insertion-ordered mapping with string keys (JSON objects, dict literals, namespace()).</summary>
public sealed class TemplateDict : OrderedDictionary<string, object?>
{
    public TemplateDict() : base(StringComparer.Ordinal) { }
}

/// <summary>namespace(...): the one mutable object a template can assign attributes on from inside a loop.</summary>
internal sealed class TemplateNamespace
{
    public TemplateDict Attributes { get; } = new();
}

/// <summary>A callable value: a macro, a global function or a bound method.</summary>
internal sealed class TemplateCallable(string name, Func<List<object?>, TemplateDict, object?> invoke)
{
    public string Name { get; } = name;
    public object? Invoke(List<object?> args, TemplateDict kwargs) => invoke(args, kwargs);
}

public static class TemplateValues
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        TemplateDict d => d.Count > 0,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        TemplateDict => "dict",
        _ => v.GetType().Name,
    };

    /// <summary>Python's str().</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's repr() for the values a template can hold.</summary>
    public static string Repr(object? v)
    {
        switch (v)
        {
            case null: return "None";
            case Undefined: return "";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return PyFloat(d);
            case string s: return PyStringRepr(s);
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case TemplateDict d: return "{" + string.Join(", ", d.Select(kv => PyStringRepr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case TemplateNamespace: return "<Namespace>";
            case TemplateCallable c: return $"<function {c.Name}>";
            default: return v.ToString() ?? "";
        }
    }

    /// <summary>Python's repr(float): shortest round-trip digits, ".0" on integral values, exponents as 1e+16 / 1e-05.</summary>
    public static string PyFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // shortest round-trip digits and the decimal exponent of the first one: |d| = D.DDD x 10^exp
        string r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int ePos = r.IndexOf('E');
        string mant = ePos >= 0 ? r[..ePos] : r;
        int e10 = ePos >= 0 ? int.Parse(r[(ePos + 1)..], CultureInfo.InvariantCulture) : 0;
        int dot = mant.IndexOf('.');
        string intPart = dot >= 0 ? mant[..dot] : mant, all = intPart + (dot >= 0 ? mant[(dot + 1)..] : "");
        int lead = all.Length - all.TrimStart('0').Length;
        int exp = e10 + intPart.Length - 1 - lead;
        string digits = all.TrimStart('0').TrimEnd('0');
        string sign = d < 0 ? "-" : "";
        if (exp >= 16 || exp < -4)   // Python's repr switches to exponent form outside 1e-4 <= |d| < 1e16
            return sign + digits[0] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
        if (exp < 0) return sign + "0." + new string('0', -exp - 1) + digits;
        string whole = digits.Length > exp + 1 ? digits[..(exp + 1)] : digits.PadRight(exp + 1, '0');
        string frac = digits.Length > exp + 1 ? digits[(exp + 1)..] : "0";
        return sign + whole + "." + frac;
    }

    private static string PyStringRepr(string s)
    {
        char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(q);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7F) sb.Append($"\\x{(int)c:x2}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(q).ToString();
    }

    /// <summary>json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson filter calls it.</summary>
    public static string ToJson(object? v, int? indent = null, bool ensureAscii = false, (string Item, string Key)? separators = null, bool sortKeys = false)
    {
        var (item, key) = separators ?? (indent is null ? (", ", ": ") : (",", ": "));
        var sb = new StringBuilder();
        Write(v, 0);
        return sb.ToString();

        void Write(object? x, int depth)
        {
            switch (x)
            {
                case null: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d:
                    sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : PyFloat(d));
                    break;
                case string s: JsonString(sb, s, ensureAscii); break;
                case List<object?> list:
                    if (list.Count == 0) { sb.Append("[]"); break; }
                    sb.Append('[');
                    for (int i = 0; i < list.Count; i++)
                    {
                        if (i > 0) sb.Append(item);
                        NewLine(depth + 1);
                        Write(list[i], depth + 1);
                    }
                    NewLine(depth);
                    sb.Append(']');
                    break;
                case TemplateDict dict:
                    if (dict.Count == 0) { sb.Append("{}"); break; }
                    sb.Append('{');
                    var entries = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList() : dict.ToList();
                    for (int i = 0; i < entries.Count; i++)
                    {
                        if (i > 0) sb.Append(item);
                        NewLine(depth + 1);
                        JsonString(sb, entries[i].Key, ensureAscii);
                        sb.Append(key);
                        Write(entries[i].Value, depth + 1);
                    }
                    NewLine(depth);
                    sb.Append('}');
                    break;
                case TemplateNamespace ns: Write(ns.Attributes, depth); break;
                case Undefined u: throw new InvalidOperationException($"'{u.Name}' is undefined and cannot be written as JSON");
                default: throw new InvalidOperationException($"a {TypeName(x)} cannot be written as JSON");
            }
        }

        void NewLine(int depth)
        {
            if (indent is int n) sb.Append('\n').Append(' ', n * depth);
        }
    }

    private static void JsonString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7E)) sb.Append($"\\u{(int)c:x4}");
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>A JSON value as a template value (integers stay integers, as Python's json.loads keeps them).</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => IsIntegerLiteral(e.GetRawText()) && e.TryGetInt64(out long l) ? (object)l : e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => ObjectFromJson(e),
        _ => throw new ArgumentException($"unexpected JSON {e.ValueKind}"),
    };

    private static bool IsIntegerLiteral(string raw) => raw.All(c => c == '-' || char.IsAsciiDigit(c));

    private static TemplateDict ObjectFromJson(JsonElement e)
    {
        var d = new TemplateDict();
        foreach (var p in e.EnumerateObject()) d[p.Name] = FromJson(p.Value);
        return d;
    }

    /// <summary>Python ==: numbers by value (bool as 0/1), strings ordinally, lists and dicts element by element.</summary>
    public static bool PyEquals(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        return (a, b) switch
        {
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => PyEquals(p.First, p.Second)),
            (TemplateDict x, TemplateDict y) => x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var o) && PyEquals(kv.Value, o)),
            _ => ReferenceEquals(a, b),
        };
    }

    internal static bool IsNumber(object? v) => v is long or double or bool;
    internal static double ToDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw new InvalidCastException() };
    internal static long ToLong(object? v) => v switch { long l => l, bool b => b ? 1 : 0, double d => (long)d, _ => throw new InvalidCastException() };
}
