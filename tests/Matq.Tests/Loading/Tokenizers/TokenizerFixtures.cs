// Locates tests/fixtures/tokenizers (HF tokenizers 0.23.2 reference ids) and loads expected-ids.json.
using System.Text.Json;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

internal static class TokenizerFixtures
{
    public static readonly string Dir = FindDir();
    public static string SpJson => Path.Combine(Dir, "sp-bpe-32k.tokenizer.json");
    public static string Gpt2Encoder => Path.Combine(Dir, "gpt2-encoder.json");
    public static string Gpt2Merges => Path.Combine(Dir, "gpt2-vocab.bpe");

    private static readonly JsonElement Expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "expected-ids.json"))).RootElement;
    public static readonly string[] Texts = Expected.GetProperty("texts").EnumerateArray().Select(e => e.GetString()!).ToArray();
    public static readonly int[][] Llama2Ids = Ids("llama2");
    public static readonly int[][] Gpt2Ids = Ids("gpt2");

    public static readonly Lazy<TextTokenizer> Sp = new(() => TextTokenizer.FromTokenizerJson(SpJson));
    public static readonly Lazy<TextTokenizer> Gpt2 = new(() => TextTokenizer.FromGpt2Files(Gpt2Encoder, Gpt2Merges));

    public static IEnumerable<object[]> TextIndices => Enumerable.Range(0, Texts.Length).Select(i => new object[] { i });

    private static int[][] Ids(string key) => Expected.GetProperty(key).EnumerateArray()
        .Select(a => a.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();

    private static string FindDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "tokenizers");
            if (File.Exists(Path.Combine(candidate, "expected-ids.json"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/tokenizers not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Asserts equal arrays, naming the first index where they differ.</summary>
    public static void AssertIds(int[] expected, int[] actual, string what)
    {
        int n = Math.Min(expected.Length, actual.Length);
        int first = Enumerable.Range(0, n).FirstOrDefault(i => expected[i] != actual[i], -1);
        if (first < 0 && expected.Length == actual.Length) return;
        if (first < 0) first = n;
        Assert.Fail($"{what}: ids differ first at index {first} (expected {Show(expected, first)}, got {Show(actual, first)}); " +
                    $"lengths {expected.Length} vs {actual.Length}\n expected [{string.Join(",", expected)}]\n actual   [{string.Join(",", actual)}]");
    }

    private static string Show(int[] a, int i) => i < a.Length ? a[i].ToString() : "end";
}
