// The chat-template engine's semantics case by case (whitespace control as transformers configures Jinja, Python value
// semantics, loop scoping, macros, tojson, strftime_now) and its refusals: every unsupported or broken template fails
// with one line naming the template, line and column.
using Matq.Runtime.Chat;

namespace Matq.Tests.Runtime.Chat;

public class ChatTemplateEngineTests
{
    private static string R(string template, Dictionary<string, object?>? vars = null) =>
        JinjaTemplate.Parse(template, "t.jinja").Render(vars ?? new(), () => new DateTime(2026, 12, 7, 4, 5, 6));

    [Theory]
    [InlineData("a  {%- if true -%}  b  {%- endif -%}  c", "abc")]
    [InlineData("{% if true %}\nx\n{% endif %}\ny", "x\ny")]              // trim_blocks
    [InlineData("  {% if true %}x{% endif %}", "x")]                        // lstrip_blocks at the template start
    [InlineData("a\n    {% if true %}x{% endif %}", "a\nx")]                // ... and at a line start
    [InlineData("a {% if true %}x{% endif %}", "a x")]                      // not after other text on the line
    [InlineData("{{ 'a' }}\nb", "a\nb")]                                    // output tags keep the newline
    [InlineData("  {{- 'a' -}}  \n b", "ab")]
    [InlineData("{# note #}\nx\n", "x")]                                    // comment + trim_blocks, trailing newline dropped
    [InlineData("{%+ if true %}x{% endif %}", "x")]
    [InlineData("  {%+ if true %}x{% endif %}", "  x")]
    public void WhitespaceControlMatchesTransformersSettings(string template, string expected) => Assert.Equal(expected, R(template));

    [Theory]
    [InlineData("{{ none }}|{{ true }}|{{ 1.0 }}|{{ 2.5e-05 }}|{{ 1e16 }}", "None|True|1.0|2.5e-05|1e+16")]
    [InlineData("{{ 3 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "1 -4 -2 3.5 1024")]
    [InlineData("{{ 'ab' * 2 }}{{ 'a' ~ 1 ~ none }}{{ [1] + [2] }}", "ababa1None[1, 2]")]
    [InlineData("{{ 'hello'[::-1] }} {{ [1, 2, 3][1:] }} {{ 'abc'[-1] }} {{ [1, 2, 3, 4][::2] }} {{ 'abc'[5:] }}|", "olleh [2, 3] c [1, 3] |")]
    [InlineData("{{ {'a': 1, 'b': 'x'} }} {{ ['it\\'s'] }}", "{'a': 1, 'b': 'x'} [\"it's\"]")]
    [InlineData("{{ 'a' in 'cat' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} {{ [1, [2]] == [1, [2]] }}", "True False True True True")]
    [InlineData("{{ 'x' if false }}|{{ 'y' if 0 else 'z' }}|{{ none or 'd' }}|{{ 'e' and 'f' }}", "|z|d|f")]
    [InlineData("{{ '  a b  '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a-b-c'.split('-', 1) }}",
        "a b|axx|['a', 'b', '', 'c']|['a', 'b']|['a', 'b-c']")]
    [InlineData("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aXa'.replace('a', 'b') }} {{ 'hi there'.title() }}", "True True bXb Hi There")]
    [InlineData("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 2) }} {{ {'a': 1}.get('b') }} {{ {'a': 1, 'b': 2}.items() | list }}", "1 2 None [['a', 1], ['b', 2]]")]
    public void ExpressionsFollowPythonSemantics(string template, string expected) => Assert.Equal(expected, R(template));

    [Theory]
    [InlineData("{{ '  x ' | trim }}|{{ 'ab' | upper }}|{{ 'aB' | capitalize }}|{{ [1, 2] | length }}|{{ 'héllo' | length }}", "x|AB|Ab|2|5")]
    [InlineData("{{ [1, 2, 3] | join('-') }}|{{ [3, 1] | first }}|{{ 'xyz' | last }}|{{ u | default('d') }}|{{ '' | default('d', true) }}", "1-2-3|3|z|d|d")]
    [InlineData("{{ [1, 2, 3, 4] | select('even') | list }}|{{ ['a', 'b'] | reject('equalto', 'a') | list }}", "[2, 4]|['b']")]
    [InlineData("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}", "hi,again")]
    [InlineData("{{ ms | map(attribute='role') | unique | list }}|{{ [3, 1, 2] | sort }}|{{ [1, 2] | reverse | list }}", "['user', 'assistant']|[1, 2, 3]|[2, 1]")]
    [InlineData("{{ 42 | string ~ '!' }}|{{ '7' | int + 1 }}|{{ 'x' | int }}|{{ 3 | float }}", "42!|8|0|3.0")]
    public void FiltersBehaveAsJinjas(string template, string expected)
    {
        var ms = new List<object?> { ChatTemplate.Message("user", "hi"), ChatTemplate.Message("assistant", "yo"), ChatTemplate.Message("user", "again") };
        Assert.Equal(expected, R(template, new() { ["ms"] = ms }));
    }

    [Fact]
    public void TojsonIsJsonDumpsWithoutAsciiEscaping()
    {
        var v = new Dictionary<string, object?> { ["v"] = TemplateValues.FromJson(System.Text.Json.JsonDocument.Parse("""{"a": [1, "é\"<>"], "b": null, "c": {}, "d": 2.5}""").RootElement) };
        Assert.Equal("""{"a": [1, "é\"<>"], "b": null, "c": {}, "d": 2.5}""", R("{{ v | tojson }}", v));
        Assert.Equal("{\n  \"a\": [\n    1,\n    \"é\\\"<>\"\n  ],\n  \"b\": null,\n  \"c\": {},\n  \"d\": 2.5\n}", R("{{ v | tojson(indent=2) }}", v));
        Assert.Equal("""{"a":[1,"\u00e9\"<>"],"b":null,"c":{},"d":2.5}""", R("{{ v | tojson(separators=(',', ':'), ensure_ascii=true) }}", v));
    }

    [Fact]
    public void LoopsOwnTheirScopeAndNamespacesCarryState()
    {
        Assert.Equal("1", R("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}"));
        Assert.Equal("2", R("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = i %}{% endfor %}{{ ns.x }}"));
        Assert.Equal("2", R("{% if true %}{% set x = 2 %}{% endif %}{{ x }}"));   // if blocks do not scope
        Assert.Equal("1a3False2c2True", R("{% for c in 'abc' if c != 'b' %}{{ loop.index }}{{ c }}{{ loop.revindex + loop.length - 1 }}{{ loop.last }}{% endfor %}"));
        Assert.Equal("none", R("{% for c in [] %}x{% else %}none{% endfor %}"));
        Assert.Equal("a1b2", R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"));
        Assert.Equal("12", R("{% for i in range(5) %}{% if i == 0 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"));
        Assert.Equal("aabbc", R("{% for c in 'abc' %}{{ loop.previtem if not loop.first }}{{ c }}{% endfor %}"));
    }

    [Fact]
    public void MacrosSetBlocksAndClock()
    {
        Assert.Equal("[1x][2y]", R("{% macro m(a, b='x') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b='y') }}"));
        Assert.Equal("<hi>", R("{% set s %}hi{% endset %}<{{ s }}>"));
        Assert.Equal("07 Dec 2026 04:05", R("{{ strftime_now('%d %b %Y %H:%M') }}"));
        var llama32 = ChatTemplateFixtures.Template("meta-llama-Llama-3.2-3B-Instruct");
        var text = llama32.Render([ChatTemplate.Message("user", "hi")], addGenerationPrompt: true, now: () => new DateTime(2026, 12, 7));
        Assert.Contains("Today Date: 07 Dec 2026\n", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{{ x | frobnicate }}", "line 1 column 8: the filter 'frobnicate' is not supported")]
    [InlineData("ok\n  {% if %}", "line 2 column 9: the expression ends too early")]
    [InlineData("{% include 'other.jinja' %}", "line 1 column 4: the statement 'include' is not supported")]
    [InlineData("{% if true %}x", "expected {% elif %} or {% else %} or {% endif %}")]
    [InlineData("{{ 'abc' ", "line 1 column 1: an output tag {{ is never closed with }}")]
    [InlineData("{{ x is frobbed }}", "the test 'frobbed' is not supported")]
    [InlineData("{% for x in y %}{% endif %}", "line 1 column 20: '{% endif %}' has no open block it belongs to")]
    [InlineData("{{ 'a' + 1 }}", "line 1 column 8: unsupported operand types for +: 'str' and 'int'")]
    [InlineData("{{ messages[0].role }}", "'messages' is undefined, so it cannot be indexed")]
    [InlineData("{{ m.nothing.x }}", "'m.nothing' is undefined, so it has no attribute 'x'")]
    [InlineData("{% set x = 1 %}{% set x.y = 2 %}", "cannot set the attribute 'y' on a int: only a namespace() takes attributes")]
    public void BrokenOrUnsupportedTemplatesFailWithLineAndColumn(string template, string message)
    {
        var e = Assert.ThrowsAny<TemplateException>(() => R(template, new() { ["m"] = ChatTemplate.Message("user", "x") }));
        Assert.StartsWith("chat template t.jinja: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void RaiseExceptionCarriesTheTemplatesMessage()
    {
        var gemma = ChatTemplateFixtures.Template("google-gemma-7b-it");
        var e = Assert.Throws<TemplateRaisedException>(() => gemma.Render([ChatTemplate.Message("system", "s"), ChatTemplate.Message("user", "u")], true));
        Assert.Equal("System role not supported", e.TemplateMessage);
        Assert.Equal("chat template google-gemma-7b-it.jinja refused the conversation: System role not supported", e.Message);
        var escaped = Assert.Throws<TemplateRaisedException>(() => R("{{ raise_exception('no\\nway\\x1b[31m') }}"));
        Assert.Equal("no\nway\u001b[31m", escaped.TemplateMessage);
        Assert.Equal("chat template t.jinja refused the conversation: no\\nway\\x1B[31m", escaped.Message);
    }

    [Fact]
    public void TokenizerFolderTemplatesLoadFromConfigOrJinjaFile()
    {
        var dir = Directory.CreateTempSubdirectory("matq-chat-").FullName;
        try
        {
            Assert.Contains("has no tokenizer_config.json", ChatTemplate.FromFolder(dir).Problem);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"eos_token": {"content": "</s>"}}""");
            Assert.Contains("has no chat_template", ChatTemplate.FromFolder(dir).Problem);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                """{"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}""");
            var (t, _) = ChatTemplate.FromFolder(dir);
            Assert.Equal("<s>hi</s>", t!.Render([ChatTemplate.Message("user", "hi")], false));
            Assert.Equal("</s>", t.EosToken);
            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "J{{ messages | length }}");
            Assert.Equal("J1", ChatTemplate.FromFolder(dir).Template!.Render([ChatTemplate.Message("user", "hi")], false));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{not json");
            var e = Assert.Throws<MatqException>(() => ChatTemplate.FromFolder(dir));
            Assert.Contains("is not valid JSON", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
