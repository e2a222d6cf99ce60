// Differential test against HF's own tokenizers library (npm tokenizers@0.23.2, the Rust core through Node): for each
// family tokenizer.json, hard and seeded random texts must give the same ids (with and without special tokens) and
// the same decode. The package is installed at test time into the matq data cache; a missing node/npm fails the
// test with what to install (scripts/prereqs.sh installs npm), never a skip.
using System.Text;
using System.Text.Json;
using Matq.Tests.TestSupport;
using Matq.Runtime.Tokenizers;

namespace Matq.Tests.Loading.Tokenizers;

public class HfTokenizersDifferentialTests
{
    private const string Package = "tokenizers@0.23.2";

    // Fragments that stress each pipeline step: whitespace runs and line ends (split regex), contractions in any
    // case, digit runs in several scripts, composed and decomposed accents (NFC), Hangul jamo, CJK, emoji with
    // joiners and variation selectors, letters outside the BMP (regex \p{L} on surrogate pairs), chat markers.
    private static readonly string[] Fragments =
    [
        "the", "The", " quick", "brown", " fox", "Senate", "represent", "ing", "I", "'s", "'S", "'re", "'LL", "'d", "n't",
        " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00A0", "\u3000", "\u2028", "\u200B",
        "0", "7", "42", "123", "2026", "3.14", "1,000", "\u0663\u0664", "\u0967\u0968", "\uFF11\uFF12", "\u00BD", "\u2167",
        ".", ",", "!?", "...", "--", "\u2014", "\u2026", "(", ")", "[]", "{", "}", "#", "**", "->", "::", "\"", "'", "`", "_",
        "caf\u00E9", "cafe\u0301", "A\u030A", "o\u0308\u0304", "a\u0323\u0302", "\u1E08", "\u212B", "\uF900", "\u0958",
        "\u1100\u1161\u11A8", "\uD55C\uAD6D\uC5B4", "\u65E5\u672C\u8A9E", "\u4E2D\u6587", "\u30C6\u30AD\u30B9\u30C8",
        "\u0645\u0631\u062D\u0628\u0627", "\u0928\u092E\u0938\u094D\u0924\u0947", "\u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35",
        "\U0001F600", "\U0001F680", "\u2764\uFE0F", "\U0001F468\u200D\U0001F469\u200D\U0001F467", "\U0001F44D\U0001F3FD",
        "\U0001D400\U0001D401", "\U00020000\U00020001", "x\U0001D400", "\U0001D7CE\U0001D7CF", "\U0001F600a", "\U00010400",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>",
        "<bos>", "<eos>", "<unk>", "<0x41>", "\u2581", "\u0120",
    ];

    private static readonly string[] HardTexts =
    [
        "I'M SURE THEY'LL SAY IT'S", "don't won't can't y'all", "    leading spaces", "trailing spaces    ", "\n\n\n",
        " \t \t ", "a\u00A0b\u3000c", "x\r\n\r\ny", "\U0001D400\U0001D401\U0001D402 math", "\U0001F600a\U0001F680b",
        "\U0001D7CE\U0001D7CF\U0001D7D0\U0001D7D1", "12345678901234567890", "\u0663\u0664\u0665\u0666",
        "e\u0301\u0301\u0323", "\u1100\u1161\u11A8\u1100\u1161", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n",
        "<start_of_turn>model\nok<end_of_turn>\n", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
        "def f(x):\n\treturn {'a': [1, 2]}\n", "\u2581\u2581 already metaspace", "\u0120\u010A byte-level chars",
        new string(' ', 40) + "x", string.Concat(Enumerable.Repeat("ab ", 200)),
    ];

    private static readonly int RandomCount = int.TryParse(Environment.GetEnvironmentVariable("MATQ_TOK_DIFF_N"), out int n) ? n : 400;

    private static List<string> Texts()
    {
        var texts = new List<string>(HardTexts);
        foreach (var style in FamilyTokenizerTests.Styles) texts.AddRange(FamilyTokenizerTests.Cases(style).Select(c => c.Text));
        var rng = new Random(20260206);
        for (int n = 0; n < RandomCount; n++)
        {
            var sb = new StringBuilder();
            for (int k = rng.Next(1, 16); k > 0; k--) sb.Append(Fragments[rng.Next(Fragments.Length)]);
            texts.Add(sb.ToString());
            sb.Clear();
            // Random assigned code points of every plane and category (no lone surrogates: Rust strings cannot hold them).
            for (int k = rng.Next(1, 12); k > 0; k--)
            {
                int cp = rng.Next(4) switch { 0 => rng.Next(0x20, 0x250), 1 => rng.Next(0x250, 0x3000), 2 => rng.Next(0x3000, 0x10000), _ => rng.Next(0x10000, 0x30000) };
                if (cp is >= 0xD800 and <= 0xDFFF || System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp) == System.Globalization.UnicodeCategory.OtherNotAssigned) continue;
                sb.Append(char.ConvertFromUtf32(cp));
                if (rng.Next(3) == 0) sb.Append(Fragments[rng.Next(Fragments.Length)]);
            }
            texts.Add(sb.ToString());
        }
        return texts.Distinct().ToList();
    }

    // The three family shapes, and the Llama-2 SentencePiece file (Prepend/Replace normalizer, Strip decoder).
    public static IEnumerable<object[]> Files => FamilyTokenizerTests.StyleNames.Append(["sp-bpe-32k"]);

    [Theory]
    [MemberData(nameof(Files))]
    public void IdsAndDecodeMatchHfTokenizersOnHardAndRandomTexts(string style)
    {
        var texts = Texts();
        string path = style == "sp-bpe-32k" ? TokenizerFixtures.SpJson : FamilyTokenizerTests.JsonPath(style);
        var hf = HfTokenizers.Run(path, texts);
        var tok = style == "sp-bpe-32k" ? TokenizerFixtures.Sp.Value : FamilyTokenizerTests.Get(style);
        var failures = new List<string>();
        for (int i = 0; i < texts.Count; i++)
        {
            string t = texts[i];
            var (ids, idsNoSpecial, decoded) = hf[i];
            int[] mine = tok.Encode(t), mineNoSpecial = tok.Encode(t, addSpecialTokens: false);
            string mineDecoded = tok.Decode(idsNoSpecial);
            if (!mine.SequenceEqual(ids)) failures.Add($"ids [{Show(t)}]: HF [{string.Join(",", ids)}] matq [{string.Join(",", mine)}]");
            else if (!mineNoSpecial.SequenceEqual(idsNoSpecial)) failures.Add($"ids without specials [{Show(t)}]: HF [{string.Join(",", idsNoSpecial)}] matq [{string.Join(",", mineNoSpecial)}]");
            if (mineDecoded != decoded) failures.Add($"decode [{Show(t)}]: HF [{Show(decoded)}] matq [{Show(mineDecoded)}]");
        }
        Assert.True(failures.Count == 0, $"{style}: {failures.Count} differences from HF tokenizers 0.23.2 over {texts.Count} texts:\n" +
                                          string.Join("\n", failures.Take(15)));
    }

    // HF's NFC uses Unicode 9.0 data: marks added later (U+0898, U+1E4EF, U+10EFD) are starters to it, so
    // "a" + such a mark + a dot below is left as is, where ICU would reorder and compose.
    [Fact]
    public void NfcMatchesHfNormalizer()
    {
        var cases = ManagedNfcTests.IcuCases();
        foreach (string mark in new[] { "\u0898", "\U0001E4EF", "\U00010EFD", "\u1AC1", "\u0D3B", "\U0001E94A" })
        {
            cases.Add("a" + mark + "\u0323");
            cases.Add("a" + mark + "\u0301\u0323");
        }
        var hf = HfTokenizers.RunNfc(cases);
        var mismatches = Enumerable.Range(0, cases.Count).Where(i => ManagedNfc.Normalize(cases[i]) != hf[i])
            .Select(i => $"[{ManagedNfcTests.Hex(cases[i])}] → HF [{ManagedNfcTests.Hex(hf[i])}], matq [{ManagedNfcTests.Hex(ManagedNfc.Normalize(cases[i]))}]").ToList();
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {cases.Count} strings differ from HF's NFC:\n" + string.Join("\n", mismatches.Take(20)));
    }

    private static string Show(string s)
    {
        var sb = new StringBuilder();
        foreach (var r in s.EnumerateRunes())
            sb.Append(r.Value is >= 0x20 and < 0x7F ? ((char)r.Value).ToString() : $"\\u{{{r.Value:X}}}");
        return sb.ToString();
    }

    /// <summary>Runs HF tokenizers (Node binding) over texts: encode with and without specials, decode skipping specials.</summary>
    private static class HfTokenizers
    {
        private const string Script = """
            const fs = require('fs');
            const { Tokenizer } = require(process.argv[2]);
            (async () => {
              const job = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
              const tok = Tokenizer.fromFile(job.tokenizer);
              const out = [];
              for (const text of job.texts) {
                const ids = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
                const idsNoSpecial = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
                out.push({ ids, idsNoSpecial, decoded: await tok.decode(idsNoSpecial, true) });
              }
              fs.writeFileSync(process.argv[4], JSON.stringify(out));
            })().catch(e => { console.error(e); process.exit(2); });
            """;

        private const string NfcScript = """
            const fs = require('fs');
            const { nfcNormalizer } = require(process.argv[2]);
            const nfc = nfcNormalizer();
            const texts = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
            fs.writeFileSync(process.argv[4], JSON.stringify(texts.map(t => nfc.normalizeString(t))));
            """;

        private static readonly Lazy<string> ModuleDir = new(() => NodeTool.Install(Package, "tokenizers"));

        public static string[] RunNfc(List<string> texts) =>
            JsonSerializer.Deserialize<string[]>(NodeTool.RunScript(Package, NfcScript, [("job.json", JsonSerializer.Serialize(texts))], "out.json",
                ModuleDir.Value, "{dir}/job.json", "{dir}/out.json"))!;

        public static List<(int[] Ids, int[] IdsNoSpecial, string Decoded)> Run(string tokenizerJson, List<string> texts)
        {
            var json = NodeTool.RunScript(Package, Script, [("job.json", JsonSerializer.Serialize(new { tokenizer = tokenizerJson, texts }))], "out.json",
                ModuleDir.Value, "{dir}/job.json", "{dir}/out.json");
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.EnumerateArray().Select(e => (
                e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("idsNoSpecial").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("decoded").GetString()!)).ToList();
        }
    }
}
