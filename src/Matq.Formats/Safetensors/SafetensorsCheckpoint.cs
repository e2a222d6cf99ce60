// A model's weights as HF stores them: one model.safetensors, or shards listed in model.safetensors.index.json
// ({"metadata": {...}, "weight_map": {tensor: shard file}}). Also accepts a single .safetensors file path.
using System.Text.Json;

namespace Matq.Formats.Safetensors;

public sealed partial class SafetensorsCheckpoint : IDisposable
{
    [System.Text.RegularExpressions.GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial System.Text.RegularExpressions.Regex ShardName();

    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _byTensor = new(StringComparer.Ordinal);
    private readonly List<SafetensorsFile> _files = new();

    public string Source { get; }
    public IReadOnlyList<SafetensorsFile> Files => _files;
    /// <summary>The index file when the checkpoint is sharded, else null.</summary>
    public string? IndexPath { get; private set; }
    /// <summary>The index's "metadata" object (e.g. total_size), values as JSON text; empty when not sharded.</summary>
    public IReadOnlyDictionary<string, string> IndexMetadata { get; private set; } = new Dictionary<string, string>();
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    private SafetensorsCheckpoint(string source) => Source = source;

    /// <summary>Opens a folder (single file or sharded index) or a .safetensors file.</summary>
    public static SafetensorsCheckpoint Open(string path)
    {
        var ckpt = new SafetensorsCheckpoint(path);
        try
        {
            if (File.Exists(path))
            {
                ckpt.AddFile(SafetensorsFile.Open(path));
            }
            else if (Directory.Exists(path))
            {
                var index = System.IO.Path.Combine(path, IndexFileName);
                var single = System.IO.Path.Combine(path, SingleFileName);
                if (File.Exists(index)) ckpt.LoadIndex(path, index);
                else if (File.Exists(single)) ckpt.AddFile(SafetensorsFile.Open(single));
                else throw new MatqException($"{path}: no {SingleFileName} or {IndexFileName} in this folder (give an HF checkpoint folder)");
            }
            else
            {
                throw new MatqException($"{path}: no such file or folder (give an HF checkpoint folder or a .safetensors file)");
            }
            return ckpt;
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
    }

    private void LoadIndex(string dir, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new MatqException($"{indexPath}: missing 'weight_map' object");
            weightMap = new(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new MatqException($"{indexPath}: weight_map entry {SafeText.Quote(p.Name)} must name a shard file");
                weightMap[p.Name] = p.Value.GetString()!;
            }
            if (doc.RootElement.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
                IndexMetadata = md.EnumerateObject().ToDictionary(p => p.Name,
                    p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText(), StringComparer.Ordinal);
            IndexPath = indexPath;
            if (weightMap.Count == 0)
                throw new MatqException($"{indexPath}: 'weight_map' is empty; the checkpoint lists no tensors");
        }
        catch (JsonException e)
        {
            throw new MatqException($"{indexPath}: not valid JSON ({SafeText.Escape(e.Message.Split('\n')[0])})");
        }
        var shards = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        foreach (var shardName in weightMap.Values.Distinct(StringComparer.Ordinal).OrderBy(s => s, StringComparer.Ordinal))
        {
            if (shardName.Contains('/') || shardName.Contains('\\'))
                throw new MatqException($"{indexPath}: shard name {SafeText.Quote(shardName)} must be a file name in the same folder");
            var shardPath = System.IO.Path.Combine(dir, shardName);
            if (!File.Exists(shardPath))
                throw new MatqException($"{indexPath}: shard {SafeText.Quote(shardName)} listed in weight_map is missing");
            var f = SafetensorsFile.Open(shardPath);
            _files.Add(f);
            shards[shardName] = f;
        }
        foreach (var (tensor, shardName) in weightMap)
        {
            var f = shards[shardName];
            if (!f.Contains(tensor))
                throw new MatqException($"{indexPath}: tensor {SafeText.Quote(tensor)} is mapped to {SafeText.Quote(shardName)} but that shard does not hold it");
            _byTensor[tensor] = f;
        }
        // Tensors a shard holds but the index does not list are still loaded (as transformers does),
        // unless another shard holds the same name.
        foreach (var f in _files)
        {
            foreach (var t in f.Tensors)
            {
                if (_byTensor.TryGetValue(t.Name, out var owner))
                {
                    if (!ReferenceEquals(owner, f) && !weightMap.ContainsKey(t.Name))
                        throw new MatqException($"{indexPath}: tensor {SafeText.Quote(t.Name)} appears in two shards");
                    continue;
                }
                _byTensor[t.Name] = f;
            }
        }
    }

    private void AddFile(SafetensorsFile f)
    {
        _files.Add(f);
        foreach (var t in f.Tensors)
        {
            if (!_byTensor.TryAdd(t.Name, f))
                throw new MatqException($"{f.Path}: tensor {SafeText.Quote(t.Name)} appears in two files");
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafetensorsTensorInfo Get(string name) => FileOf(name).Get(name);

    public float[] ReadFloat32(string name) => FileOf(name).ReadFloat32(name);

    public byte[] ReadBytes(string name) => FileOf(name).ReadBytes(name);

    /// <summary>Bytes [offset, offset + destination.Length) of tensor <paramref name="name"/>'s data.</summary>
    public void ReadRange(string name, long offset, Span<byte> destination)
    {
        var f = FileOf(name);
        f.ReadRange(f.Get(name), offset, destination);
    }

    private SafetensorsFile FileOf(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f
            : throw new MatqException($"{Source}: tensor {SafeText.Quote(name)} is missing from the checkpoint");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }

    /// <summary>
    /// Writes tensors as HF does: one model.safetensors when it fits in <paramref name="maxShardBytes"/>,
    /// else model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json. Each file is atomic.
    /// </summary>
    public static IReadOnlyList<string> WriteSharded(string dir, IReadOnlyList<(string Name, SafetensorsDtype Dtype, long[] Shape, byte[] Data)> tensors,
        long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Directory.CreateDirectory(dir);
        var groups = new List<List<int>> { new() };
        long current = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            long size = tensors[i].Data.Length;
            if (current > 0 && current + size > maxShardBytes) { groups.Add(new()); current = 0; }
            groups[^1].Add(i);
            current += size;
        }
        var written = new List<string>();
        if (groups.Count == 1)
        {
            var w = new SafetensorsWriter();
            if (metadata is not null) foreach (var (k, v) in metadata) w.Metadata[k] = v;
            foreach (var t in tensors) w.Add(t.Name, t.Dtype, t.Shape, t.Data);
            var p = System.IO.Path.Combine(dir, SingleFileName);
            w.Write(p);
            var staleIndex = System.IO.Path.Combine(dir, IndexFileName);
            if (File.Exists(staleIndex)) File.Delete(staleIndex);
            DeleteStaleShards(dir, written);
            written.Add(p);
            return written;
        }
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int g = 0; g < groups.Count; g++)
        {
            var name = $"model-{g + 1:D5}-of-{groups.Count:D5}.safetensors";
            var w = new SafetensorsWriter();
            if (metadata is not null) foreach (var (k, v) in metadata) w.Metadata[k] = v;
            foreach (var i in groups[g]) { w.Add(tensors[i].Name, tensors[i].Dtype, tensors[i].Shape, tensors[i].Data); map[tensors[i].Name] = name; }
            var p = System.IO.Path.Combine(dir, name);
            w.Write(p);
            written.Add(p);
        }
        var indexPath = System.IO.Path.Combine(dir, IndexFileName);
        var json = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = tensors.Sum(t => (long)t.Data.Length) },
            ["weight_map"] = map,
        }, new JsonSerializerOptions { WriteIndented = true });
        Matq.Formats.IO.AtomicFile.WriteAllText(indexPath, json);
        var single = System.IO.Path.Combine(dir, SingleFileName);
        if (File.Exists(single)) File.Delete(single);
        DeleteStaleShards(dir, written);
        written.Add(indexPath);
        return written;
    }

    // Shards of an earlier write with a different shard count would otherwise linger beside the new files.
    private static void DeleteStaleShards(string dir, List<string> keep)
    {
        foreach (var stale in Directory.EnumerateFiles(dir, "model-*-of-*.safetensors"))
        {
            if (ShardName().IsMatch(System.IO.Path.GetFileName(stale)) && !keep.Contains(stale)) File.Delete(stale);
        }
    }
}
