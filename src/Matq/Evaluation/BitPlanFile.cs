// Reads a per-layer bit plan for serving a .matq (`--plan FILE`): {"default": 4, "layers": {"model.layers.0.mlp.down_proj": 8}},
// or a plan written by `matq plan` ({"format": "matq-plan", ...}: its default_bits and layers). Keys are HF module (or
// weight) names; which names exist and which bits the artifact allows is checked by the loader.
using System.Text.Json;

namespace Matq.Evaluation;

/// <summary>A plan: the default bits (null = take --bits or the master bits) and per-layer overrides.</summary>
public sealed record BitPlan(int? Default, IReadOnlyDictionary<string, int> Layers)
{
    /// <summary>
    /// The serving bits given <paramref name="bits"/> from the command line: --bits wins when the plan has no default
    /// or agrees; a disagreement is refused rather than silently resolved.
    /// </summary>
    public int? ResolveBits(int? bits, string planPath)
    {
        if (bits is int b && Default is int d && b != d)
            throw new MatqException($"--bits {b} disagrees with the default {d} of --plan {planPath}: drop one or make them equal");
        return bits ?? Default;
    }
}

public static class BitPlanFile
{
    public static BitPlan Load(string path)
    {
        if (!File.Exists(path)) throw new MatqException($"--plan {path} does not exist");
        try
        {
            return Parse(File.ReadAllText(path), path);
        }
        catch (JsonException e)
        {
            throw new MatqException($"--plan {path} is not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>Parses plan JSON; <paramref name="origin"/> names it in errors.</summary>
    public static BitPlan Parse(string json, string origin)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("format", out var format) && format.ValueKind == JsonValueKind.String
            && format.GetString() == Matq.Runtime.Plans.MixPlan.Format)
        {
            var mix = Matq.Runtime.Plans.MixPlan.Parse(json, $"--plan {origin}");
            return new BitPlan(mix.DefaultBits, mix.Layers);
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new MatqException($"--plan {origin}: expected an object like {{\"default\": 4, \"layers\": {{\"model.layers.0.mlp.down_proj\": 8}}}}");
        int? def = null;
        var layers = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in root.EnumerateObject())
        {
            switch (p.Name)
            {
                case "default":
                    def = Bits(p.Value, origin, "default");
                    break;
                case "layers":
                    if (p.Value.ValueKind != JsonValueKind.Object)
                        throw new MatqException($"--plan {origin}: \"layers\" must be an object of layer name → bits");
                    foreach (var l in p.Value.EnumerateObject())
                        if (!layers.TryAdd(l.Name, Bits(l.Value, origin, l.Name)))
                            throw new MatqException($"--plan {origin}: layer '{l.Name}' is given twice");
                    break;
                default:
                    throw new MatqException($"--plan {origin}: unknown key '{p.Name}' (a plan has \"default\" and \"layers\")");
            }
        }
        return new BitPlan(def, layers);
    }

    private static int Bits(JsonElement e, string origin, string what)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var b) || b < 1 || b > 8)
            throw new MatqException($"--plan {origin}: bits for '{what}' must be an integer in 1..8, got {e.GetRawText()}");
        return b;
    }
}
