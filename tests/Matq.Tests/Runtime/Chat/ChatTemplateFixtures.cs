// The real chat templates of tests/fixtures/chat-templates (see its README for sources) and the conversations of
// cases.json, rendered by matq as transformers' apply_chat_template(tokenize=False) renders them.
using System.Text.Json;
using Matq.Runtime.Chat;

namespace Matq.Tests.Runtime.Chat;

internal static class ChatTemplateFixtures
{
    public static readonly string Dir = FindDir();
    private static readonly JsonElement Cases = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "cases.json"))).RootElement;

    public static string[] TemplateNames => Cases.GetProperty("templates").EnumerateObject().Select(p => p.Name).ToArray();
    public static string[] CaseNames => Cases.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToArray();
    public static string CasesJson => Cases.GetRawText();

    public static string TemplateText(string name) => File.ReadAllText(Path.Combine(Dir, name + ".jinja"));

    public static Dictionary<string, string> SpecialTokens(string name) =>
        Cases.GetProperty("templates").GetProperty(name).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);

    public static ChatTemplate Template(string name) => new(TemplateText(name), name + ".jinja", SpecialTokens(name));

    /// <summary>matq's rendering of one case, or "error: message" when the template refuses it (raise_exception).</summary>
    public static string Render(string template, string caseName)
    {
        var c = Cases.GetProperty("cases").EnumerateArray().Single(x => x.GetProperty("name").GetString() == caseName);
        var messages = c.GetProperty("messages").EnumerateArray().Select(m => (TemplateDict)TemplateValues.FromJson(m)!).ToList();
        var tools = c.TryGetProperty("tools", out var t) ? (List<object?>)TemplateValues.FromJson(t)! : null;
        var kwargs = c.TryGetProperty("kwargs", out var k) ? ((TemplateDict)TemplateValues.FromJson(k)!).ToDictionary(kv => kv.Key, kv => kv.Value) : null;
        try
        {
            return Template(template).Render(messages, c.GetProperty("add_generation_prompt").GetBoolean(), tools, kwargs);
        }
        catch (TemplateRaisedException e)
        {
            return "error: " + e.TemplateMessage;
        }
    }

    private static string FindDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "chat-templates");
            if (File.Exists(Path.Combine(candidate, "cases.json"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/chat-templates not found above " + AppContext.BaseDirectory);
    }
}
