// Contract: writes an HF checkpoint folder of a real model's shape with random weights, for scale benchmarks: config.json
// (the family's published config, optionally truncated in layers, torch_dtype bfloat16), bf16 tensors split into
// shards of at most ShardBytes with model.safetensors.index.json, as HF's save_pretrained lays them out. Tensors are
// generated while they are written (a few MiB at a time), so writing an 8B checkpoint needs no model-sized memory.
// Values: linears and embeddings uniform in ±0.02·√3 (σ = 0.02, HF's initializer_range), norms 1 (Gemma: 0, as its
// (1 + w) norms store), biases 0; seeded, so a shape and seed always give the same bytes.

namespace Matq.Evaluation;

/// <summary>What <see cref="SyntheticCheckpoint.Write"/> wrote: the folder, its config, shard files and total bytes.</summary>
public sealed record SyntheticCheckpointInfo(string Folder, LlamaConfig Config, IReadOnlyList<string> Shards, long Bytes, long Parameters);

public static class SyntheticCheckpoint
{
    /// <summary>HF's default max_shard_size (5 GB).</summary>
    public const long ShardBytes = 5_000_000_000;
    private const int ChunkElements = 1 << 21;   // 4 MiB of bf16 per generated chunk

    /// <summary>Writes the checkpoint of <paramref name="shape"/> (RealConfigs.Shapes) into <paramref name="folder"/> (created).</summary>
    public static SyntheticCheckpointInfo Write(string folder, string shape, int? layers = null, int seed = 1234, long shardBytes = ShardBytes)
    {
        var node = JsonNode.Parse(RealConfigs.Config(shape, layers))!.AsObject();
        node["torch_dtype"] = "bfloat16";
        var configText = node.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var config = HfLlamaConfig.Parse(configText, shape);
        Directory.CreateDirectory(folder);
        var tensors = LlamaTensors.Checkpoint(config).ToList();
        var shards = new List<List<int>> { new() };
        long current = 0, total = 0, parameters = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            long n = tensors[i].Shape.Aggregate(1L, (a, b) => checked(a * b));
            long size = n * 2;
            if (current > 0 && current + size > shardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add(i);
            current += size; total += size; parameters += n;
        }
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var written = new List<string>();
        for (int s = 0; s < shards.Count; s++)
        {
            var name = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            var w = new SafetensorsWriter();
            w.Metadata["format"] = "pt";
            foreach (int i in shards[s])
            {
                var (tensorName, shape2) = tensors[i];
                long n = shape2.Aggregate(1L, (a, b) => a * b);
                float fill = tensorName.EndsWith("norm.weight", StringComparison.Ordinal) ? (config.NormOffset ? 0f : 1f)
                    : tensorName.EndsWith(".bias", StringComparison.Ordinal) ? 0f : float.NaN;
                int tensorSeed = HashCode.Combine(seed, i);
                w.AddStreamed(tensorName, SafetensorsDtype.BF16, shape2, () => Chunks(n, fill, tensorSeed));
                map[tensorName] = name;
            }
            var path = Path.Combine(folder, name);
            w.Write(path);
            written.Add(path);
        }
        var index = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = total },
            ["weight_map"] = new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
        };
        AtomicFile.WriteAllText(Path.Combine(folder, SafetensorsCheckpoint.IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        AtomicFile.WriteAllText(Path.Combine(folder, "config.json"), configText);
        return new SyntheticCheckpointInfo(folder, config, written, total, parameters);
    }

    // n bf16 values: the constant fill, or uniform(−a, a) from a xorshift stream when fill is NaN
    private static IEnumerable<ReadOnlyMemory<byte>> Chunks(long n, float fill, int seed)
    {
        const float a = 0.034641016f;   // 0.02·√3
        var buffer = new byte[(int)Math.Min(n, ChunkElements) * 2];
        ulong state = 0x9E3779B97F4A7C15UL ^ (uint)seed;
        if (state == 0) state = 1;
        for (long done = 0; done < n;)
        {
            int count = (int)Math.Min(ChunkElements, n - done);
            var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(buffer.AsSpan(0, count * 2));
            if (float.IsNaN(fill))
            {
                for (int i = 0; i < count; i++)
                {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    float u = (state >> 40) * (1f / (1 << 24)) * 2f - 1f;
                    dst[i] = (ushort)(BitConverter.SingleToUInt32Bits(u * a) >> 16);
                }
            }
            else dst.Fill((ushort)(BitConverter.SingleToUInt32Bits(fill) >> 16));
            done += count;
            yield return buffer.AsMemory(0, count * 2);
        }
    }
}
