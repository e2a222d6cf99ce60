// Contract: the one reader of a run's method-specific string options (--option KEY=VALUE) into typed values. Every
// key must be one the method declares (else one line listing the declared keys); an absent key reads its declared
// default; a value that does not parse is one MatqException line "METHOD KEY = 'VALUE' is not ...: give ...".
// Range checks belong to the typed config records the values are passed to (their constructors name field and range).
using System.Globalization;

namespace Matq.Quantization.Pipeline;

public sealed class OptionReader
{
    private readonly IReadOnlyList<AlgorithmOption> _declared;
    private readonly IReadOnlyDictionary<string, string> _given;

    /// <summary>A reader of <paramref name="config"/>'s options against its method's declared options.</summary>
    public OptionReader(QuantizationConfig config)
        : this(config ?? throw new ArgumentNullException(nameof(config)), AlgorithmRegistry.Get(config.Method).Options) { }

    private OptionReader(QuantizationConfig config, IReadOnlyList<AlgorithmOption> declared)
    {
        Config = config;
        Method = config.Method;
        _declared = declared;
        _given = config.Options;
        CheckKeys(Method, declared, _given.Keys);
    }

    /// <summary>The run's common settings (bits, group size, scheme, layers) the typed config may depend on.</summary>
    public QuantizationConfig Config { get; }

    /// <summary>The method name that prefixes every error line.</summary>
    public string Method { get; }

    /// <summary>Throws one line for the first key of <paramref name="keys"/> that <paramref name="declared"/> lacks.</summary>
    public static void CheckKeys(string method, IReadOnlyList<AlgorithmOption> declared, IEnumerable<string> keys)
    {
        ArgumentNullException.ThrowIfNull(declared);
        ArgumentNullException.ThrowIfNull(keys);
        foreach (var key in keys)
        {
            if (declared.Any(o => o.Key == key)) continue;
            throw new MatqException(declared.Count == 0
                ? $"options: method '{method}' takes no options, got '{SafeText.Escape(key)}'"
                : $"options: method '{method}' has no option '{SafeText.Escape(key)}' (it has: {string.Join(", ", declared.Select(o => o.Key))})");
        }
    }

    /// <summary>Whether the run gave <paramref name="key"/> (rather than leaving it at its default).</summary>
    public bool IsGiven(string key)
    {
        Declared(key);
        return _given.ContainsKey(key);
    }

    /// <summary>The raw text of <paramref name="key"/>: as given, else the declared default.</summary>
    public string Text(string key) => _given.TryGetValue(key, out var v) ? v : Declared(key).Default;

    public int Int(string key) => ParseInt(key, Text(key));

    public double Double(string key) => ParseDouble(key, Text(key));

    /// <summary>true|1|yes|on or false|0|no|off (case-insensitive; empty = false).</summary>
    public bool Flag(string key) => Text(key).Trim().ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" or "" => false,
        _ => throw Bad(key, Text(key), "is not true or false", $"give {key}=true or {key}=false"),
    };

    /// <summary>A comma-separated list of integers (empty items skipped), e.g. bits=8,4,2.</summary>
    public int[] Ints(string key) => Items(key).Select(p => ParseInt(key, p)).ToArray();

    /// <summary>A comma-separated list of numbers (empty items skipped), e.g. lambda=1,1,0.5.</summary>
    public double[] Doubles(string key) => Items(key).Select(p => ParseDouble(key, p)).ToArray();

    /// <summary>A number, or null where the value is <paramref name="keyword"/> (e.g. lwc-max=auto).</summary>
    public double? DoubleOr(string key, string keyword) =>
        Text(key).Trim().Equals(keyword, StringComparison.OrdinalIgnoreCase) ? null : Double(key);

    /// <summary>One of <paramref name="choices"/>: each is "name|alias|..." and its value; the error lists the first names.</summary>
    public T Choice<T>(string key, params (string Names, T Value)[] choices)
    {
        var text = Text(key).Trim();
        foreach (var (names, value) in choices)
            if (names.Split('|').Any(n => n.Equals(text, StringComparison.OrdinalIgnoreCase))) return value;
        var first = choices.Select(c => c.Names.Split('|')[0]).ToArray();
        throw Bad(key, text, "is not known", "use " + (first.Length == 1 ? first[0] : string.Join(", ", first[..^1]) + " or " + first[^1]));
    }

    /// <summary>A value parsed by <paramref name="parse"/>, which throws its own MatqException for a bad text.</summary>
    public T Parse<T>(string key, Func<string, T> parse) => parse(Text(key));

    private IEnumerable<string> Items(string key) =>
        Text(key).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private int ParseInt(string key, string text) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw Bad(key, text, "is not an integer", $"give a whole number, e.g. {key}={Example(key)}");

    private double ParseDouble(string key, string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
            : throw Bad(key, text, "is not a number", $"give e.g. {key}={Example(key)}");

    private string Example(string key) => Declared(key).Default is { Length: > 0 } d && d != "auto" ? d : "1";

    private MatqException Bad(string key, string text, string what, string fix) =>
        new($"{Method} {key} = '{SafeText.Escape(text)}' {what}: {fix}");

    private AlgorithmOption Declared(string key) =>
        _declared.FirstOrDefault(o => o.Key == key)
        ?? throw new ArgumentException($"method '{Method}' declares no option '{key}'", nameof(key));
}
