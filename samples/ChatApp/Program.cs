// ChatApp: asks a matq model one question through Microsoft.Extensions.AI's IChatClient and prints the answer as it
// streams, then whether libtorch was ever loaded into this process (it never is: Matq.Runtime is TorchSharp-free).
//
//   dotnet run --project samples/ChatApp -- MODEL [--template FILE] [--bits R] [--max-tokens N] [QUESTION]
//
// MODEL is a .matq artifact or an HF model folder (e.g. models/tiny, quantized to an int8 master when opened). The chat
// template is the model's (tokenizer_config.json) unless --template names a Jinja file; --bits picks the precision of
// this call (1..8, through ChatOptions.AdditionalProperties["bits"]).
using Matq;
using Matq.Runtime;
using Microsoft.Extensions.AI;

string? model = null, template = null, question = null;
int? bits = null;
int maxTokens = 48;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--template" when i + 1 < args.Length: template = args[++i]; break;
        case "--bits" when i + 1 < args.Length && int.TryParse(args[i + 1], out var b): bits = b; i++; break;
        case "--max-tokens" when i + 1 < args.Length && int.TryParse(args[i + 1], out var n): maxTokens = n; i++; break;
        case var a when a.StartsWith("--", StringComparison.Ordinal):
            Console.Error.WriteLine($"unknown or incomplete option {a}: usage: ChatApp MODEL [--template FILE] [--bits R] [--max-tokens N] [QUESTION]");
            return 2;
        case var a when model is null: model = a; break;
        case var a: question = question is null ? a : question + " " + a; break;
    }
}
if (model is null)
{
    Console.Error.WriteLine("usage: ChatApp MODEL [--template FILE] [--bits R] [--max-tokens N] [QUESTION]   (MODEL: a .matq or an HF folder such as models/tiny)");
    return 2;
}
question ??= "What is the state of the Union?";

try
{
    // --- the IChatClient part: open, ask, stream ---
    using IChatClient client = MatqChatClient.Open(model, new MatqModelOptions { ChatTemplatePath = template });
    var options = new ChatOptions
    {
        Instructions = "Answer in one sentence.",
        MaxOutputTokens = maxTokens,
        Temperature = 0.7f,
        Seed = 1,
        AdditionalProperties = new() { ["bits"] = bits ?? 8 },   // the precision of this call: any 1..8 from the one artifact
    };
    Console.WriteLine($"Q: {question}");
    bool answering = false;
    ChatFinishReason? finish = null;
    UsageDetails? usage = null;
    object? servedBits = null;
    await foreach (var update in client.GetStreamingResponseAsync(question, options))
    {
        if (!answering) Console.Write("A: ");
        answering = true;
        Console.Write(update.Text);
        finish = update.FinishReason ?? finish;
        servedBits = update.AdditionalProperties?.GetValueOrDefault("bits") ?? servedBits;
        foreach (var usageContent in update.Contents.OfType<UsageContent>()) usage = usageContent.Details;
    }
    Console.WriteLine();
    Console.WriteLine($"[{usage?.OutputTokenCount} tokens, {finish}, {servedBits} bits]");
}
catch (Exception e) when (e is MatqException or NotSupportedException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}

// --- the proof that no libtorch came along: the libraries mapped into this process ---
bool torch = File.Exists("/proc/self/maps")
    && File.ReadLines("/proc/self/maps").Any(l => l.Contains("libtorch", StringComparison.Ordinal) || l.Contains("LibTorchSharp", StringComparison.Ordinal));
bool torchSharp = AppDomain.CurrentDomain.GetAssemblies().Any(a => a.GetName().Name!.StartsWith("TorchSharp", StringComparison.Ordinal));
Console.WriteLine($"libtorch loaded: {(torch || torchSharp ? "yes" : "no")}");
return 0;
