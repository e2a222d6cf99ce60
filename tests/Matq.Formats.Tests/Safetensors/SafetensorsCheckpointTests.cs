// Sharded HF checkpoints: WriteSharded splits by a byte budget and writes the index; Open validates the index.
using System.Text.Json;
using System.Text.Json.Nodes;
using Matq.Formats.Safetensors;

namespace Matq.Formats.Tests.Safetensors;

public sealed class SafetensorsCheckpointTests
{
    private static List<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)> Tensors()
    {
        var list = new List<(string, SafetensorsDtype, long[], byte[])>();
        for (int i = 0; i < 5; i++) list.Add(($"layer.{i}.weight", SafetensorsDtype.F32, [4, 8], Bytes.Of(Bytes.Seeded(32, i))));
        list.Add(("norm.weight", SafetensorsDtype.BF16, [8], SafetensorsDtypes.Float32ToBf16(Bytes.Seeded(8, 9))));
        return list;
    }

    [Fact]
    public void Sharded_write_then_read_returns_every_tensor()
    {
        using var tmp = new TempDir();
        var tensors = Tensors();
        var written = SafetensorsCheckpoint.WriteSharded(tmp.Path, tensors, maxShardBytes: 300, new Dictionary<string, string> { ["format"] = "pt" });
        // 128-byte tensors, 300-byte budget: two per shard -> 3 shards (the bf16 norm joins the last) + index
        Assert.Equal(4, written.Count);
        Assert.EndsWith(SafetensorsCheckpoint.IndexFileName, written[^1]);
        Assert.EndsWith("model-00001-of-00003.safetensors", written[0]);
        Assert.False(File.Exists(Path.Combine(tmp.Path, SafetensorsCheckpoint.SingleFileName)));

        var index = JsonNode.Parse(File.ReadAllText(written[^1]))!;
        Assert.Equal(tensors.Sum(t => t.Data.Length), index["metadata"]!["total_size"]!.GetValue<long>());
        Assert.Equal("model-00003-of-00003.safetensors", index["weight_map"]!["norm.weight"]!.GetValue<string>());

        using var c = SafetensorsCheckpoint.Open(tmp.Path);
        Assert.Equal(3, c.Files.Count);
        Assert.Equal(tensors.Select(t => t.Name).Order(), c.TensorNames.Order());
        foreach (var t in tensors)
        {
            Assert.Equal(t.Data, c.ReadBytes(t.Name));
            Assert.Equal(t.Shape, c.Get(t.Name).Shape);
            Assert.Equal(t.Dtype, c.Get(t.Name).Dtype);
        }
        Assert.All(c.Files, f => Assert.Equal("pt", f.Metadata["format"]));
    }

    [Fact]
    public void Rewriting_with_fewer_shards_removes_stale_ones()
    {
        using var tmp = new TempDir();
        SafetensorsCheckpoint.WriteSharded(tmp.Path, Tensors(), maxShardBytes: 130);
        Assert.Equal(6, Directory.GetFiles(tmp.Path, "model-*-of-*.safetensors").Length); // one tensor per shard
        SafetensorsCheckpoint.WriteSharded(tmp.Path, Tensors(), maxShardBytes: 300);
        Assert.Equal(3, Directory.GetFiles(tmp.Path, "model-*-of-*.safetensors").Length);
        SafetensorsCheckpoint.WriteSharded(tmp.Path, Tensors(), maxShardBytes: 1 << 20);
        Assert.Equal([SafetensorsCheckpoint.SingleFileName], Directory.GetFiles(tmp.Path).Select(Path.GetFileName));
        using var c = SafetensorsCheckpoint.Open(tmp.Path);
        Assert.Equal(6, c.TensorNames.Count());
    }

    private static string WriteShardedAndEditIndex(TempDir tmp, Action<JsonObject> edit)
    {
        SafetensorsCheckpoint.WriteSharded(tmp.Path, Tensors(), maxShardBytes: 300);
        var indexPath = Path.Combine(tmp.Path, SafetensorsCheckpoint.IndexFileName);
        var index = JsonNode.Parse(File.ReadAllText(indexPath))!.AsObject();
        edit(index);
        File.WriteAllText(indexPath, index.ToJsonString());
        return indexPath;
    }

    [Fact]
    public void Missing_shard_is_named()
    {
        using var tmp = new TempDir();
        SafetensorsCheckpoint.WriteSharded(tmp.Path, Tensors(), maxShardBytes: 300);
        File.Delete(Path.Combine(tmp.Path, "model-00002-of-00003.safetensors"));
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.Path), "model.safetensors.index.json", "model-00002-of-00003.safetensors", "missing");
    }

    [Fact]
    public void Tensor_mapped_to_the_wrong_shard_is_named()
    {
        using var tmp = new TempDir();
        WriteShardedAndEditIndex(tmp, ix => ix["weight_map"]!["layer.0.weight"] = "model-00002-of-00003.safetensors");
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.Path), "index.json", "layer.0.weight", "model-00002-of-00003.safetensors", "does not hold");
    }

    [Fact]
    public void Index_listing_a_tensor_no_shard_holds_is_named()
    {
        using var tmp = new TempDir();
        WriteShardedAndEditIndex(tmp, ix => ix["weight_map"]!["ghost.weight"] = "model-00001-of-00003.safetensors");
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.Path), "ghost.weight", "does not hold");
    }

    [Fact]
    public void Tensor_left_out_of_the_index_is_still_found_in_its_shard()
    {
        using var tmp = new TempDir();
        WriteShardedAndEditIndex(tmp, ix => ix["weight_map"]!.AsObject().Remove("layer.1.weight"));
        using var c = SafetensorsCheckpoint.Open(tmp.Path);
        Assert.True(c.Contains("layer.1.weight"));
        Assert.Equal(Tensors()[1].Data, c.ReadBytes("layer.1.weight"));
    }

    [Theory]
    [InlineData("[1, 2]", "weight_map")]
    [InlineData("{\"metadata\": {}}", "weight_map")]
    [InlineData("{\"weight_map\": {}}", "empty")]
    [InlineData("{\"weight_map\": {\"a\": 3}}", "'a'")]
    [InlineData("{\"weight_map\": {\"a\": \"../evil.safetensors\"}}", "../evil.safetensors")]
    [InlineData("{\"weight_map\": ", "not valid JSON")]
    public void Malformed_index_is_a_MatqException(string json, string fragment)
    {
        using var tmp = new TempDir();
        File.WriteAllText(Path.Combine(tmp.Path, SafetensorsCheckpoint.IndexFileName), json);
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.Path), "index.json", fragment);
    }

    [Fact]
    public void Folder_without_weights_or_missing_path_is_named()
    {
        using var tmp = new TempDir();
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.Path), tmp.Path, "model.safetensors");
        MatqAssert.Throws(() => SafetensorsCheckpoint.Open(tmp.File("nope")), "nope", "no such file");
    }
}
