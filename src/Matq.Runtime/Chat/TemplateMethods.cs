// Contract: the Python methods a chat template may call on values, with Python's semantics: str (strip/lstrip/rstrip
// with optional characters, split with optional separator and maxsplit, startswith/endswith with a string or tuple,
// upper/lower/title/capitalize, replace, find, count, join, format is refused), dict (get, items, keys, values) and
// list (index, count). Mutating methods are absent, as in transformers' immutable sandbox.
using System.Text;

namespace Matq.Runtime.Chat;

internal static class TemplateMethods
{
    private static TemplateCallable M(string name, Func<List<object?>, TemplateDict, object?> f) => new(name, f);

    private static object? Arg(List<object?> a, TemplateDict kw, int i, string key, object? dflt = null) =>
        i < a.Count ? a[i] : kw.TryGetValue(key, out var v) ? v : dflt;

    public static TemplateCallable? Str(string s, string name) => name switch
    {
        "strip" => M(name, (a, kw) => PyStrip(s, Arg(a, kw, 0, "chars") as string, true, true)),
        "lstrip" => M(name, (a, kw) => PyStrip(s, Arg(a, kw, 0, "chars") as string, true, false)),
        "rstrip" => M(name, (a, kw) => PyStrip(s, Arg(a, kw, 0, "chars") as string, false, true)),
        "split" => M(name, (a, kw) => Split(s, Arg(a, kw, 0, "sep") as string, Arg(a, kw, 1, "maxsplit", -1L) is long m ? m : -1)),
        "rsplit" => M(name, (a, kw) => RSplit(s, Arg(a, kw, 0, "sep") as string, Arg(a, kw, 1, "maxsplit", -1L) is long m ? m : -1)),
        "startswith" => M(name, (a, kw) => Prefixes(Arg(a, kw, 0, "prefix")).Any(p => s.StartsWith(p, StringComparison.Ordinal))),
        "endswith" => M(name, (a, kw) => Prefixes(Arg(a, kw, 0, "suffix")).Any(p => s.EndsWith(p, StringComparison.Ordinal))),
        "upper" => M(name, (_, _) => s.ToUpperInvariant()),
        "lower" => M(name, (_, _) => s.ToLowerInvariant()),
        "title" => M(name, (_, _) => Title(s)),
        "capitalize" => M(name, (_, _) => s.Length == 0 ? s : s[..1].ToUpperInvariant() + s[1..].ToLowerInvariant()),
        "replace" => M(name, (a, kw) => Replace(s, TemplateValues.Str(Arg(a, kw, 0, "old")), TemplateValues.Str(Arg(a, kw, 1, "new")),
            Arg(a, kw, 2, "count", -1L) is long c ? c : -1)),
        "find" => M(name, (a, kw) => (long)s.IndexOf(TemplateValues.Str(Arg(a, kw, 0, "sub")), StringComparison.Ordinal)),
        "count" => M(name, (a, kw) => (long)CountOf(s, TemplateValues.Str(Arg(a, kw, 0, "sub")))),
        "join" => M(name, (a, kw) => string.Join(s, (Arg(a, kw, 0, "iterable") as List<object?> ?? []).Select(TemplateValues.Str))),
        "isdigit" => M(name, (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isspace" => M(name, (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        _ => null,
    };

    public static TemplateCallable? Dict(TemplateDict d, string name) => name switch
    {
        "get" => M(name, (a, kw) => Arg(a, kw, 0, "key") is string k && d.TryGetValue(k, out var v) ? v : Arg(a, kw, 1, "default")),
        "items" => M(name, (_, _) => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()),
        "keys" => M(name, (_, _) => d.Keys.Select(k => (object?)k).ToList()),
        "values" => M(name, (_, _) => d.Values.ToList()),
        _ => null,
    };

    public static TemplateCallable? List(List<object?> l, string name) => name switch
    {
        "index" => M(name, (a, kw) =>
        {
            var x = Arg(a, kw, 0, "value");
            int i = l.FindIndex(y => TemplateValues.PyEquals(x, y));
            return i >= 0 ? (long)i : throw new InvalidOperationException($"{TemplateValues.Repr(x)} is not in the list");
        }),
        "count" => M(name, (a, kw) => (long)l.Count(y => TemplateValues.PyEquals(Arg(a, kw, 0, "value"), y))),
        _ => null,
    };

    private static IEnumerable<string> Prefixes(object? p) => p switch
    {
        string s => [s],
        List<object?> l => l.Select(TemplateValues.Str),
        _ => throw new InvalidOperationException($"startswith/endswith need a string or a tuple of strings, got a '{TemplateValues.TypeName(p)}'"),
    };

    /// <summary>str.strip/lstrip/rstrip: no chars = Python whitespace.</summary>
    public static string PyStrip(string s, string? chars, bool left, bool right)
    {
        Func<char, bool> strip = chars is null ? char.IsWhiteSpace : chars.Contains;
        int a = 0, b = s.Length;
        if (left) while (a < b && strip(s[a])) a++;
        if (right) while (b > a && strip(s[b - 1])) b--;
        return s[a..b];
    }

    public static List<object?> Split(string s, string? sep, long maxsplit)
    {
        var result = new List<object?>();
        if (sep is null)
        {
            int i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxsplit >= 0 && result.Count == maxsplit) { result.Add(s[i..].TrimEnd()); break; }
                int j = i;
                while (j < s.Length && !char.IsWhiteSpace(s[j])) j++;
                result.Add(s[i..j]);
                i = j;
            }
            return result;
        }
        if (sep.Length == 0) throw new InvalidOperationException("split() separator is empty");
        int start = 0;
        while (maxsplit < 0 || result.Count < maxsplit)
        {
            int k = s.IndexOf(sep, start, StringComparison.Ordinal);
            if (k < 0) break;
            result.Add(s[start..k]);
            start = k + sep.Length;
        }
        result.Add(s[start..]);
        return result;
    }

    private static List<object?> RSplit(string s, string? sep, long maxsplit)
    {
        if (sep is null || maxsplit < 0) return Split(s, sep, maxsplit);
        if (sep.Length == 0) throw new InvalidOperationException("rsplit() separator is empty");
        var result = new List<object?>();
        int end = s.Length;
        while (result.Count < maxsplit)
        {
            int k = end - sep.Length < 0 ? -1 : s.LastIndexOf(sep, end - 1, end, StringComparison.Ordinal);
            if (k < 0) break;
            result.Insert(0, s[(k + sep.Length)..end]);
            end = k;
        }
        result.Insert(0, s[..end]);
        return result;
    }

    public static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, @new) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int start = 0;
        for (long n = 0; n < count && old.Length > 0; n++)
        {
            int k = s.IndexOf(old, start, StringComparison.Ordinal);
            if (k < 0) break;
            sb.Append(s, start, k - start).Append(@new);
            start = k + old.Length;
        }
        return sb.Append(s, start, s.Length - start).ToString();
    }

    private static string InsertEverywhere(string s, string ins)
    {
        var sb = new StringBuilder(ins);
        foreach (char c in s) sb.Append(c).Append(ins);
        return sb.ToString();
    }

    private static int CountOf(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        int n = 0;
        for (int k = s.IndexOf(sub, StringComparison.Ordinal); k >= 0; k = s.IndexOf(sub, k + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevLetter = false;
        foreach (char c in s)
        {
            sb.Append(prevLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            prevLetter = char.IsLetter(c);
        }
        return sb.ToString();
    }
}
