// Rewrites a .matq with an edited "matq" metadata document (tensors copied unchanged), for config-contradiction tests.
using System.Text.Json.Nodes;
using Matq.Formats.Artifact;
using Matq.Formats.Safetensors;

namespace Matq.Tests.Fuzz;

internal static class ArtifactEdits
{
    /// <summary>Copies <paramref name="src"/> to <paramref name="dst"/> with <paramref name="edit"/> applied to the matq JSON document.</summary>
    public static void EditMetadata(string src, string dst, Action<JsonObject> edit)
    {
        var w = new SafetensorsWriter();
        using (var f = SafetensorsFile.Open(src))
        {
            foreach (var (k, v) in f.Metadata) w.Metadata[k] = v;
            var doc = JsonNode.Parse(f.Metadata[MatqMetadata.Key])!.AsObject();
            edit(doc);
            w.Metadata[MatqMetadata.Key] = doc.ToJsonString();
            foreach (var t in f.Tensors) w.Add(t.Name, t.Dtype, t.Shape, f.ReadBytes(t.Name));
        }
        w.Write(dst);
    }

    /// <summary>Sets model_config[key] = value (a JSON literal, e.g. "128" or "2147483648").</summary>
    public static void SetModelConfig(string src, string dst, string key, string jsonValue) =>
        EditMetadata(src, dst, d => d["model_config"]![key] = JsonNode.Parse(jsonValue));
}
