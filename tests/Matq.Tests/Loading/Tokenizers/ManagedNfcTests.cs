// ManagedNfc against closed-form cases (composition, Hangul, ordering, blocking, exclusions, singletons) and against
// ICU: .NET's own string.Normalize run in another process (dotnet fsi, which runs with ICU), over every character
// the tables name, the composable pairs with and without a blocking mark, and seeded random strings.
using System.Diagnostics;
using System.Text;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class ManagedNfcTests
{
    [Theory]
    [InlineData("Cafe\u0301", "Caf\u00E9")]                       // decomposed accent → composed
    [InlineData("A\u030Angstro\u0308m", "\u00C5ngstr\u00F6m")]
    [InlineData("a\u0323\u0302", "\u1EAD")]                       // two marks, both compose (ậ)
    [InlineData("a\u0302\u0323", "\u1EAD")]                       // other order: canonical ordering first
    [InlineData("a\u0301\u0301", "\u00E1\u0301")]                 // second acute is blocked by the first
    [InlineData("a\u0308\u0301\u0323", "\u1EA1\u0308\u0301")]       // dot below reorders first and composes; ä+́ has no composite
    [InlineData("\u1100\u1161", "\uAC00")]                        // Hangul L+V → LV
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]                  // L+V+T → LVT
    [InlineData("\uAC00\u11A8", "\uAC01")]                        // LV+T → LVT
    [InlineData("\uAC01\u11A8", "\uAC01\u11A8")]                  // LVT takes no second T
    [InlineData("\u212B", "\u00C5")]                              // singletons: Angstrom sign, Ohm sign, CJK compatibility
    [InlineData("\u2126", "\u03A9")]
    [InlineData("\uF900", "\u8C48")]
    [InlineData("\u0958", "\u0915\u093C")]                        // composition exclusion stays decomposed
    [InlineData("\u0915\u093C", "\u0915\u093C")]
    [InlineData("\u0344", "\u0308\u0301")]                        // non-starter decomposition
    [InlineData("\u1E08", "\u1E08")]                              // Ḉ: recursive decomposition recomposes
    [InlineData("C\u0301\u0327", "\u1E08")]
    [InlineData("\U0001D15E", "\U0001D157\U0001D165")]            // astral exclusion (musical half note)
    [InlineData("\U00011099\U000110BA", "\U0001109A")]            // astral composition (Kaithi)
    [InlineData("\U0001F600e\u0301\U0001F680", "\U0001F600\u00E9\U0001F680")]
    [InlineData("\u0301e", "\u0301e")]                            // a leading mark has no starter
    [InlineData("\u0301\u0316", "\u0316\u0301")]                  // ... but is still reordered
    public void ComposesLikeUax15(string input, string expected) =>
        Assert.Equal(Hex(expected), Hex(ManagedNfc.Normalize(input)));

    [Theory]
    [InlineData("")]
    [InlineData("plain ASCII, tabs\tand\r\nnewlines")]
    [InlineData("Caf\u00E9 na\u00EFve \u00C5ngstr\u00F6m \u1EAD")]
    [InlineData("\u65E5\u672C\u8A9E \uD55C\uAD6D\uC5B4 \U0001F600 \u2764\uFE0F")]
    public void AlreadyNfcTextIsReturnedUnchanged(string text) => Assert.Same(text, ManagedNfc.Normalize(text));

    [Fact]
    public void LoneSurrogatesPassThrough()
    {
        Assert.Equal("a\uD800\u00E9", ManagedNfc.Normalize("a\uD800e\u0301"));
        Assert.Equal("\uD800\u00E9\uDC00", ManagedNfc.Normalize("\uD800e\u0301\uDC00"));
    }

    [Fact]
    public void MatchesIcuOverEveryTableCharacterAndRandomStrings()
    {
        var cases = IcuCases();
        string[] icu = RunIcuNormalize(cases);
        Assert.Equal(cases.Count, icu.Length);
        var mismatches = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            string mine = Hex(ManagedNfc.Normalize(cases[i]));
            if (mine != icu[i]) mismatches.Add($"[{Hex(cases[i])}] → ICU [{icu[i]}], matq [{mine}]");
        }
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {cases.Count} strings differ from ICU, e.g.\n" +
                                            string.Join("\n", mismatches.Take(20)));
        Assert.True(cases.Count > 8000, $"only {cases.Count} cases");
    }

    // Every code point the tables mention, alone; each composable pair, adjacent and with a blocking or a
    // non-blocking mark between; seeded random strings over those characters, Hangul jamo and ASCII.
    internal static List<string> IcuCases()
    {
        var chars = new SortedSet<int>();
        var runs = NfcTables.CombiningClassRuns;
        for (int i = 0; i < runs.Length; i += 3) for (int cp = runs[i]; cp <= runs[i + 1]; cp++) chars.Add(cp);
        var dec = NfcTables.Decompositions;
        var pairs = new List<(int A, int B)>();
        for (int i = 0; i < dec.Length; i += 3)
        {
            chars.Add(dec[i]);
            chars.Add(dec[i + 1]);
            if (dec[i + 2] != 0) { chars.Add(dec[i + 2]); pairs.Add((dec[i + 1], dec[i + 2])); }
        }
        int[] jamo = [.. Enumerable.Range(0x1100, 19), .. Enumerable.Range(0x1161, 21), .. Enumerable.Range(0x11A8, 27), 0xAC00, 0xAC01, 0xD7A3, 0xB098];
        foreach (int j in jamo) chars.Add(j);
        var cases = chars.Select(S).ToList();
        foreach (var (a, b) in pairs)
        {
            cases.Add(S(a) + S(b));
            cases.Add(S(a) + "\u0323" + S(b));   // dot below (220): blocks only marks of class ≤ 220
            cases.Add(S(a) + "\u0301" + S(b));   // acute (230)
        }
        var pool = chars.Concat("aeiouAEIOU ".Select(c => (int)c)).ToArray();
        var rng = new Random(1234);
        for (int n = 0; n < 4000; n++)
        {
            var sb = new StringBuilder();
            for (int k = rng.Next(1, 9); k > 0; k--) sb.Append(S(pool[rng.Next(pool.Length)]));
            cases.Add(sb.ToString());
        }
        return cases;
    }

    private static string S(int cp) => char.ConvertFromUtf32(cp);

    internal static string Hex(string s)
    {
        var parts = new List<string>();
        for (int i = 0; i < s.Length; i++)
        {
            int cp = char.IsSurrogatePair(s, i) ? char.ConvertToUtf32(s[i], s[++i]) : s[i];
            parts.Add(cp.ToString("X"));
        }
        return string.Join(" ", parts);
    }

    // One line per case in and out, as hex code points (no encoding questions across the pipe).
    private const string Script = """
        let s = "e\u0301".Normalize(System.Text.NormalizationForm.FormC)
        if s <> "\u00E9" then
            eprintfn "ICU is not loaded in this process (string.Normalize does not compose)"
            exit 3
        let hex (t: string) = t.EnumerateRunes() |> Seq.map (fun r -> r.Value.ToString("X")) |> String.concat " "
        let lines = System.IO.File.ReadAllLines(fsi.CommandLineArgs.[1])
        let out = lines |> Array.map (fun l ->
            let text = l.Split(' ') |> Array.map (fun h -> System.Char.ConvertFromUtf32(System.Convert.ToInt32(h, 16))) |> String.concat ""
            hex (text.Normalize(System.Text.NormalizationForm.FormC)))
        System.IO.File.WriteAllLines(fsi.CommandLineArgs.[2], out)
        """;

    private static string[] RunIcuNormalize(List<string> cases)
    {
        string dir = Directory.CreateTempSubdirectory("matq-nfc-").FullName;
        try
        {
            string script = Path.Combine(dir, "nfc.fsx"), input = Path.Combine(dir, "in.txt"), output = Path.Combine(dir, "out.txt");
            File.WriteAllText(script, Script);
            File.WriteAllLines(input, cases.Select(Hex));
            string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
            var psi = new ProcessStartInfo(dotnet) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { "fsi", "--quiet", script, input, output }) psi.ArgumentList.Add(a);
            psi.Environment.Remove("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT");   // the oracle must run with ICU
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("dotnet fsi did not start");
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); Assert.Fail("dotnet fsi (the ICU oracle) ran over 3 minutes"); }
            Assert.True(p.ExitCode == 0, $"the ICU oracle (`{dotnet} fsi`) failed with exit code {p.ExitCode}: {stderr.Result}{stdout.Result}\n" +
                "It needs the .NET SDK's F# interactive and ICU (Debian: apt-get install libicu72).");
            return File.ReadAllLines(output);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
