// Differential test against HF's own JavaScript Jinja (npm @huggingface/jinja 0.5.11, the engine transformers.js uses
// for apply_chat_template, configured as transformers configures Python's Jinja: trim_blocks, lstrip_blocks): every real
// template x every conversation of cases.json must render to the same string, or both must refuse it through
// raise_exception with the same message. The package is installed at test time into the matq data cache; a missing
// node/npm fails the test with what to install, never a skip. expected.json, when present (written on the GPU machine
// by scripts/gpu/chat-template-fixtures.py with transformers), is compared too.
using System.Text.Json;
using Matq.Tests.TestSupport;

namespace Matq.Tests.Runtime.Chat;

public class HfJinjaDifferentialTests
{
    private const string Package = "@huggingface/jinja@0.5.11";

    private const string Script = """
        const fs = require('fs');
        const { Template } = require(process.argv[2]);
        const job = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
        const out = {};
        for (const [name, tokens] of Object.entries(job.cases.templates)) {
          out[name] = {};
          const template = new Template(job.texts[name]);
          for (const c of job.cases.cases) {
            const vars = Object.assign({}, tokens, { messages: c.messages, tools: c.tools ?? null, documents: null,
              add_generation_prompt: c.add_generation_prompt }, c.kwargs ?? {});
            try { out[name][c.name] = template.render(vars); }
            catch (e) { out[name][c.name] = 'error: ' + e.message; }
          }
        }
        fs.writeFileSync(process.argv[4], JSON.stringify(out));
        """;

    private static readonly Lazy<JsonElement> Reference = new(() =>
    {
        var module = NodeTool.Install(Package, "@huggingface/jinja");
        var texts = ChatTemplateFixtures.TemplateNames.ToDictionary(n => n, ChatTemplateFixtures.TemplateText);
        var job = "{\"cases\": " + ChatTemplateFixtures.CasesJson + ", \"texts\": " + JsonSerializer.Serialize(texts) + "}";
        var json = NodeTool.RunScript(Package, Script, [("job.json", job)], "out.json", module, "{dir}/job.json", "{dir}/out.json");
        return JsonDocument.Parse(json).RootElement;
    });

    private static readonly Lazy<JsonElement?> Transformers = new(() =>
    {
        string path = Path.Combine(ChatTemplateFixtures.Dir, "expected.json");
        return File.Exists(path) ? JsonDocument.Parse(File.ReadAllText(path)).RootElement : null;
    });

    public static IEnumerable<object[]> Templates => ChatTemplateFixtures.TemplateNames.Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Templates))]
    public void EveryConversationRendersAsHfJinjaDoes(string template)
    {
        var failures = new List<string>();
        foreach (var c in ChatTemplateFixtures.CaseNames)
        {
            string hf = Reference.Value.GetProperty(template).GetProperty(c).GetString()!;
            string mine = ChatTemplateFixtures.Render(template, c);
            if (hf != mine) failures.Add($"{c}:\n  HF   {JsonSerializer.Serialize(hf)}\n  matq {JsonSerializer.Serialize(mine)}");
            // transformers' own rendering, when scripts/gpu/chat-template-fixtures.py has written it
            if (Transformers.Value is JsonElement py && py.GetProperty("renderings").GetProperty(template).GetProperty(c).GetString() is string expected
                && expected != mine)
                failures.Add($"{c} (transformers {py.GetProperty("transformers").GetString()}):\n  HF   {JsonSerializer.Serialize(expected)}\n  matq {JsonSerializer.Serialize(mine)}");
        }
        Assert.True(failures.Count == 0, $"{template}: {failures.Count} of {ChatTemplateFixtures.CaseNames.Length} conversations differ from {Package}:\n" + string.Join("\n", failures));
    }
}
