// The fuzz tier's engine, shared by Matq.Formats.Tests and Matq.Tests (linked source): seeded byte-level mutations
// (bit flips, truncation, random byte runs, inserted/deleted ranges, extreme integers), safetensors header surgery
// (the JSON header re-encoded with a fresh length), JSON edits with absurd values, and a runner that pushes each case
// through the reading paths with a hang watchdog. A case passes when it ends in success or in a MatqException whose
// message is one line, at most MaxMessage characters, without control characters; anything else fails the test
// with the case's seed and mutation so it reproduces (FuzzRunner.Case(format, seed) rebuilds one case).
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Matq.Fuzz;

internal sealed record FuzzCase(string What, Action Run);

internal static class FuzzRunner
{
    public const int MaxMessage = 1000;
    /// <summary>A case running longer than this is a hang.</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Runs cases <paramref name="firstSeed"/> .. firstSeed + count − 1 built by <paramref name="make"/> (seeded: the same seed
    /// gives the same case), prints "fuzz FORMAT: tried N, clear error E, accepted A, other exception O (T s)" and appends it to
    /// the file named by MATQ_FUZZ_REPORT; fails listing every bad case.
    /// </summary>
    public static void Run(string format, int firstSeed, int count, Func<int, FuzzCase> make, ITestOutputHelper output)
    {
        int clear = 0, accepted = 0, other = 0, tried = 0;
        var failures = new List<string>();
        var sw = Stopwatch.StartNew();
        for (int seed = firstSeed; seed < firstSeed + count; seed++)
        {
            FuzzCase c;
            try { c = make(seed); }
            catch (Exception e) { throw new InvalidOperationException($"fuzz {format} seed {seed}: building the case failed", e); }
            tried++;
            var task = Task.Run(c.Run);
            bool done;
            try { done = task.Wait(HangLimit); }
            catch (AggregateException) { done = true; }
            if (!done)
            {
                other++;
                failures.Add($"seed {seed} ({c.What}): no result within {HangLimit.TotalSeconds} s (hang)");
                break; // the hung case still holds a thread; stop here
            }
            var error = task.Exception?.InnerException;
            if (error is null) { accepted++; continue; }
            if (error is MatqException mx && Problem(mx.Message) is null) { clear++; continue; }
            other++;
            if (failures.Count < 25)
                failures.Add(error is MatqException m2
                    ? $"seed {seed} ({c.What}): MatqException message {Problem(m2.Message)}: {Shorten(m2.Message)}"
                    : $"seed {seed} ({c.What}): {error.GetType().Name}: {Shorten(error.Message)} at {Shorten(error.StackTrace ?? "", 600)}");
        }
        sw.Stop();
        var line = $"fuzz {format}: tried {tried}, clear error {clear}, accepted {accepted}, other exception {other} ({sw.Elapsed.TotalSeconds:F1} s)";
        output.WriteLine(line);
        foreach (var f in failures) output.WriteLine("  " + f);
        if (Environment.GetEnvironmentVariable("MATQ_FUZZ_REPORT") is { Length: > 0 } report)
        {
            lock (typeof(FuzzRunner)) File.AppendAllText(report, line + Environment.NewLine);
        }
        Assert.True(failures.Count == 0, line + Environment.NewLine + string.Join(Environment.NewLine, failures));
    }

    /// <summary>One case as a regression test: success or a clean MatqException line, within the hang limit.</summary>
    public static void AssertPasses(string context, Action run)
    {
        var task = Task.Run(run);
        try { Assert.True(task.Wait(HangLimit), $"{context}: no result within {HangLimit.TotalSeconds} s (hang)"); }
        catch (AggregateException) { }
        if (task.Exception?.InnerException is { } e)
        {
            if (e is not MatqException mx) throw new Xunit.Sdk.XunitException($"{context}: expected success or MatqException, got {e}");
            Assert.True(Problem(mx.Message) is null, $"{context}: MatqException message {Problem(mx.Message)}: {Shorten(mx.Message)}");
        }
    }

    /// <summary>Why a MatqException message breaks the one-line rule, or null.</summary>
    public static string? Problem(string message) =>
        message.Contains('\n') ? "spans several lines"
        : message.Length > MaxMessage ? $"is {message.Length} characters long"
        : message.Any(char.IsControl) ? "holds a control character"
        : null;

    private static string Shorten(string s, int n = 300) => SafeText.Escape(s, n);
}

/// <summary>Seeded mutations of raw bytes; <c>headerEnd</c> biases positions toward the structure at the front of a file.</summary>
internal static class ByteMutator
{
    private static readonly ulong[] Extremes64 =
        [0, 1, 2, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 1UL << 62, long.MaxValue, 1UL << 63, ulong.MaxValue];

    public static byte[] Mutate(byte[] seed, Random rng, int headerEnd, out string what)
    {
        int len = seed.Length;
        int Pos() => rng.Next(2) == 0 ? rng.Next(Math.Max(1, Math.Min(headerEnd, len))) : rng.Next(Math.Max(1, len));
        switch (rng.Next(6))
        {
            case 0:
            {
                var b = (byte[])seed.Clone();
                int n = 1 + rng.Next(4);
                var at = new List<int>();
                for (int i = 0; i < n; i++) { int p = Pos(); b[p] ^= (byte)(1 << rng.Next(8)); at.Add(p); }
                what = $"bit flips at {string.Join(",", at)}";
                return b;
            }
            case 1:
            {
                int cut = Pos();
                what = $"truncated to {cut} bytes";
                return seed[..cut];
            }
            case 2:
            {
                var b = (byte[])seed.Clone();
                int p = Pos(), n = Math.Min(1 + rng.Next(32), len - p);
                for (int i = 0; i < n; i++) b[p + i] = (byte)rng.Next(256);
                what = $"{n} random bytes at {p}";
                return b;
            }
            case 3:
            {
                int p = Pos(), n = 1 + rng.Next(16);
                var run = new byte[n];
                rng.NextBytes(run);
                what = $"{n} bytes inserted at {p}";
                return [.. seed[..p], .. run, .. seed[p..]];
            }
            case 4:
            {
                int p = Pos(), n = Math.Min(1 + rng.Next(16), len - p);
                what = $"{n} bytes deleted at {p}";
                return [.. seed[..p], .. seed[(p + n)..]];
            }
            default:
            {
                var b = (byte[])seed.Clone();
                ulong v = rng.Next(4) == 0 ? (ulong)len + (ulong)rng.Next(-2, 3) : Extremes64[rng.Next(Extremes64.Length)];
                int size = rng.Next(2) == 0 ? 4 : 8, p = Math.Min(Pos(), Math.Max(0, len - size));
                if (len >= size)
                {
                    if (size == 4) BitConverter.TryWriteBytes(b.AsSpan(p), (uint)v); else BitConverter.TryWriteBytes(b.AsSpan(p), v);
                }
                what = $"u{size * 8} {v} written at {p}";
                return b;
            }
        }
    }
}

/// <summary>A safetensors image split into its JSON header and data buffer, and rebuilt with a fresh header length.</summary>
internal static class SafetensorsImage
{
    public static (JsonObject Header, byte[] Data) Split(byte[] file)
    {
        long n = (long)BitConverter.ToUInt64(file, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)n))!.AsObject();
        return (header, file[(8 + (int)n)..]);
    }

    public static int HeaderEnd(byte[] file) => 8 + (int)BitConverter.ToUInt64(file, 0);

    public static byte[] Join(JsonObject header, byte[] data)
    {
        var h = Encoding.UTF8.GetBytes(header.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        h = [.. h, .. Enumerable.Repeat((byte)' ', ((h.Length + 7) & ~7) - h.Length)];
        return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. data];
    }
}

/// <summary>Seeded edits of JSON documents: absurd values (huge, negative, fractional, wrong kinds, control characters), removed keys.</summary>
internal static class JsonMutator
{
    public static readonly string[] Absurd =
    [
        "0", "-1", "1", "3", "7", "9", "2147483647", "2147483648", "-2147483649", "4611686018427387904", "1e9", "1e300", "-1e300",
        "1.5", "0.0", "\"x\"", "\"NaN\"", "\"Infinity\"", "null", "true", "false", "[]", "{}", "[1,2]", "\"\\u001b[2J\\n\"", "\"" + new string('y', 3000) + "\"",
    ];

    public static JsonNode? AbsurdValue(Random rng, JsonNode? current)
    {
        if (current is JsonValue v && v.TryGetValue<long>(out var n) && rng.Next(3) == 0)
        {
            long[] near = [n * 2, n / 2, n + 1, n - 1, -n, n * 1000];
            return JsonValue.Create(near[rng.Next(near.Length)]);
        }
        return JsonNode.Parse(Absurd[rng.Next(Absurd.Length)]);
    }

    /// <summary>Sets a random key (from <paramref name="keys"/> or those present) to an absurd value, or removes it.</summary>
    public static string EditObject(JsonObject o, Random rng, IReadOnlyList<string>? keys = null)
    {
        var pool = keys ?? o.Select(kv => kv.Key).ToList();
        if (pool.Count == 0) { o["\u001bkey\n"] = 1; return "control-character key added"; }
        var key = pool[rng.Next(pool.Count)];
        if (rng.Next(6) == 0) { o.Remove(key); return $"'{key}' removed"; }
        var value = AbsurdValue(rng, o[key]);
        o[key] = value;
        return $"'{key}' = {Short(value)}";
    }

    public static string Short(JsonNode? n)
    {
        var s = n?.ToJsonString() ?? "null";
        return s.Length > 40 ? s[..37] + "..." : s;
    }

    public static readonly string[] ConfigKeys =
    [
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
        "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "model_type", "architectures", "rope_parameters",
        "rope_scaling", "sliding_window", "hidden_act", "attention_bias", "mlp_bias",
    ];

    /// <summary>An HF config.json / model_config edit: one or two keys set to absurd values or removed.</summary>
    public static string EditConfig(JsonObject config, Random rng)
    {
        var parts = new List<string>();
        int n = 1 + rng.Next(2);
        for (int i = 0; i < n; i++) parts.Add(EditObject(config, rng, ConfigKeys));
        return string.Join("; ", parts);
    }

    private static readonly string[][] ShapeEdits =
    [
        ["4611686018427387904", "4"], ["-1", "4"], [], ["0"], ["1.5"], ["\"x\""], ["null"], ["2147483648", "2"], ["4611686018427387904"],
        ["1", "1", "1", "1", "1", "1", "1", "1", "1"], ["9223372036854775807", "9223372036854775807"],
    ];

    private static readonly string[] Dtypes = ["F32", "F16", "BF16", "U8", "I8", "I32", "I64", "F64", "BOOL", "U16", "F8_E4M3", "", "f32", "7", "null"];

    /// <summary>Edits one tensor entry of a safetensors header (shape, dtype, data_offsets, keys, name) or the entry list.</summary>
    public static string EditTensorEntry(JsonObject header, Random rng)
    {
        var names = header.Where(kv => kv.Key != "__metadata__").Select(kv => kv.Key).ToList();
        if (names.Count == 0) return "no tensors";
        var name = names[rng.Next(names.Count)];
        var e = header[name] as JsonObject;
        switch (rng.Next(9))
        {
            case 0 when e is not null:
            {
                string[] s = ShapeEdits[rng.Next(ShapeEdits.Length)];
                if (rng.Next(3) == 0 && e["shape"] is JsonArray cur && cur.Count > 0)
                {
                    var dims = cur.Select(d => d!.GetValue<long>()).ToArray();
                    dims[rng.Next(dims.Length)] += rng.Next(2) == 0 ? 1 : -1;
                    s = dims.Select(d => d.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                }
                e["shape"] = JsonNode.Parse("[" + string.Join(",", s) + "]");
                return $"'{name}' shape = {Short(e["shape"])}";
            }
            case 1 when e is not null:
            {
                var d = Dtypes[rng.Next(Dtypes.Length)];
                e["dtype"] = d is "7" or "null" ? JsonNode.Parse(d) : JsonValue.Create(d);
                return $"'{name}' dtype = {Short(e["dtype"])}";
            }
            case 2 when e is not null && e["data_offsets"] is JsonArray off && off.Count == 2:
            {
                long b = off[0]!.GetValue<long>(), en = off[1]!.GetValue<long>();
                string[] choices = [$"[{en},{b}]", $"[0,{long.MaxValue}]", $"[-1,{en}]", "[0]", $"[{b},{en},{en}]", $"[\"{b}\",\"{en}\"]", "[1e30,1e31]",
                    $"[{b + 1},{en + 1}]", $"[{b},{en - 1}]", $"[{b},{en + 8}]"];
                e["data_offsets"] = JsonNode.Parse(choices[rng.Next(choices.Length)]);
                return $"'{name}' data_offsets = {Short(e["data_offsets"])}";
            }
            case 3 when e is not null:
            {
                var k = new[] { "dtype", "shape", "data_offsets" }[rng.Next(3)];
                e.Remove(k);
                return $"'{name}' lost '{k}'";
            }
            case 4:
            {
                string[] renames = [name + "\u001b[31m\n", new string('n', 5000), "", name + ".qcodes", name[..Math.Max(1, name.Length / 2)], "__metadata__x", name + "\u2028"];
                var nn = renames[rng.Next(renames.Length)];
                var node = header[name];
                header.Remove(name);
                if (!header.ContainsKey(nn)) header[nn] = node;
                return $"'{name}' renamed to {Short(JsonValue.Create(nn))}";
            }
            case 5:
                header.Remove(name);
                return $"'{name}' entry removed";
            case 6:
                header[name] = AbsurdValue(rng, null);
                return $"'{name}' entry = {Short(header[name])}";
            default:
                if (header["__metadata__"] is JsonObject md && rng.Next(2) == 0)
                {
                    md["\u001bevil\nkey"] = "v\u0007";
                    return "__metadata__ gained a control-character key";
                }
                header["__metadata__"] = AbsurdValue(rng, null);
                return $"__metadata__ = {Short(header["__metadata__"])}";
        }
    }
}
