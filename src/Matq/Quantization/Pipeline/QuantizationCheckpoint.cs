// Contract: the resume checkpoint of a block-walking quantization run (gptq, athena, omniquant, matquant with the athena
// or omniquant base). A hidden folder beside the artifact, named from it:
//   out/.tiny.matq.resume/run.json                  format, the settings a resume must match (ordered key/value
//                                                   pairs), and a SHA-256 of the calibration windows once known
//   out/.tiny.matq.resume/block-0000.safetensors    one file per finished block (lm_head, when quantized, is the last
//   out/.tiny.matq.resume/block-0001.safetensors    "block", index NumLayers); metadata "matq.resume" = JSON of the
//   ...                                             block's LayerReports; tensors "layer.<i>.codes" U8 [out, in],
//                                                   ".scales"/".zeros" F32 [out, nGroups], ".perm" I32 [in] and
//                                                   "state.<name>": the tensors that define the block's quantized forward
//                                                   (installed weights in the model dtype, LWC clip logits), raw bytes.
//                                                   A layer whose installed weight is exactly its dequantized codes
//                                                   (checked bit for bit at commit) is marked "installed": "codes" and its
//                                                   weight is not stored: a resume dequantizes it again (GPTQ at 8B: 0.22
//                                                   GB a block instead of 1.09 GB).
// Every file is written to a temp file and renamed. The blocks 0..k−1 whose files exist are finished; a resumed run
// restores their results and state, replays the calibration activations through them and continues at block k.
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Matq.Quantization.Pipeline;

public sealed class QuantizationCheckpoint
{
    public const string FormatValue = "matq-quantize-resume-v2";
    // v1 (every installed weight stored as state) still reads: its layers carry no "installed" mark
    private const string FormatV1 = "matq-quantize-resume-v1";
    private const string RunFile = "run.json", MetaKey = "matq.resume", LayerPrefix = "layer.", StatePrefix = "state.";

    /// <summary>The methods whose runs resume, as said in errors and help.</summary>
    public const string ResumableMethods = "gptq, athena, omniquant, and matquant with --base athena or omniquant";

    // reports keep their doubles exactly (shortest round-trip text), NaN/∞ included
    private static JsonSerializerOptions ReportJson => QuantizedLinearResult.ReportJson;

    private readonly List<KeyValuePair<string, string>> _settings;
    private string? _calibration;

    private QuantizationCheckpoint(string folder, List<KeyValuePair<string, string>> settings, string? calibration, int blocksDone)
    {
        Folder = folder;
        _settings = settings;
        _calibration = calibration;
        BlocksDone = blocksDone;
    }

    /// <summary>The checkpoint folder; "&lt;dir&gt;/.&lt;file&gt;.resume".</summary>
    public string Folder { get; }

    /// <summary>Finished blocks 0..BlocksDone−1 (consecutive); the next block to quantize is BlocksDone.</summary>
    public int BlocksDone { get; private set; }

    public IReadOnlyList<KeyValuePair<string, string>> Settings => _settings;

    /// <summary>"&lt;dir&gt;/.&lt;file&gt;.resume" for an artifact path "&lt;dir&gt;/&lt;file&gt;".</summary>
    public static string FolderFor(string artifactPath)
    {
        var full = Path.GetFullPath(artifactPath);
        return Path.Combine(Path.GetDirectoryName(full)!, "." + Path.GetFileName(full) + ".resume");
    }

    public static bool Exists(string artifactPath) => File.Exists(Path.Combine(FolderFor(artifactPath), RunFile));

    /// <summary>Finished blocks of the checkpoint for <paramref name="artifactPath"/> without checking settings; 0 when none.</summary>
    public static int PeekBlocksDone(string artifactPath) => Exists(artifactPath) ? CountBlocks(FolderFor(artifactPath)) : 0;

    /// <summary>Removes the checkpoint for <paramref name="artifactPath"/> if there is one.</summary>
    public static void DeleteFor(string artifactPath)
    {
        var folder = FolderFor(artifactPath);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }

    /// <summary>A fresh, empty checkpoint for <paramref name="artifactPath"/>; an existing one is replaced.</summary>
    public static QuantizationCheckpoint Create(string artifactPath, IEnumerable<KeyValuePair<string, string>> settings)
    {
        var folder = FolderFor(artifactPath);
        try
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MatqException($"cannot create the resume checkpoint {folder} ({e.Message.Split('\n')[0]}); check that the --out folder is writable");
        }
        var checkpoint = new QuantizationCheckpoint(folder, settings.ToList(), null, 0);
        checkpoint.WriteRunFile();
        return checkpoint;
    }

    /// <summary>Opens the checkpoint for <paramref name="artifactPath"/> and checks that it was written with
    /// <paramref name="settings"/>; a missing checkpoint or the first differing setting is one MatqException.</summary>
    public static QuantizationCheckpoint Open(string artifactPath, IEnumerable<KeyValuePair<string, string>> settings)
    {
        var folder = FolderFor(artifactPath);
        var runPath = Path.Combine(folder, RunFile);
        if (!File.Exists(runPath))
            throw new MatqException($"--resume: no checkpoint for --out {artifactPath} (expected {folder}); run without --resume to start");
        JsonObject run;
        try
        {
            run = JsonNode.Parse(File.ReadAllText(runPath)) as JsonObject ?? throw new JsonException("not an object");
        }
        catch (JsonException e)
        {
            throw new MatqException($"{runPath} is not valid JSON ({e.Message}); delete {folder} and run without --resume");
        }
        if ((string?)run["format"] is not (FormatValue or FormatV1))
            throw new MatqException($"{runPath} is not a {FormatValue} checkpoint; delete {folder} and run without --resume");
        var stored = (run["settings"] as JsonArray ?? [])
            .Select(n => new KeyValuePair<string, string>((string?)n?["key"] ?? "", (string?)n?["value"] ?? "")).ToList();
        var wanted = settings.ToList();
        foreach (var (key, value) in wanted)
        {
            var old = stored.FirstOrDefault(s => s.Key == key);
            if (old.Key is null)
                throw new MatqException($"cannot resume from {folder}: it records no setting '{key}' (written by another matq version); run without --resume to start over");
            if (old.Value != value)
                throw new MatqException($"cannot resume from {folder}: it was written with {key} = {old.Value}, this run has {key} = {value}; rerun with the same settings, or without --resume to start over");
        }
        var extra = stored.FirstOrDefault(s => wanted.All(w => w.Key != s.Key));
        if (extra.Key is not null)
            throw new MatqException($"cannot resume from {folder}: it was written with setting '{extra.Key}' = {extra.Value}, which this run does not have; run without --resume to start over");
        return new QuantizationCheckpoint(folder, wanted, (string?)run["calibration"], CountBlocks(folder));
    }

    /// <summary>
    /// The library's part of what a resume must match: method, bits, group, scheme, head, layer selection, every option
    /// of the method at its effective value, the seed, the model's architecture and dtype. Callers add their own
    /// (model path and file fingerprint, calibration source, device).
    /// </summary>
    public static List<KeyValuePair<string, string>> RunSettings(QuantizationAlgorithm algorithm, LlamaForCausalLM model, int seed)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        ArgumentNullException.ThrowIfNull(model);
        var c = algorithm.Config;
        var list = new List<KeyValuePair<string, string>>
        {
            new("method", algorithm.Name),
            new("bits", c.Bits.ToString(CultureInfo.InvariantCulture)),
            new("group", c.GroupSize.ToString(CultureInfo.InvariantCulture)),
            new("symmetric", c.Symmetric ? "true" : "false"),
            new("include-head", c.IncludeLmHead ? "true" : "false"),
            new("only-layers", c.OnlyLayers is null ? "all" : string.Join(",", c.OnlyLayers)),
            new("layers", c.Layers.Text),
        };
        var options = new OptionReader(c);
        foreach (var option in AlgorithmRegistry.Get(c.Method).Options)
            list.Add(new("option " + option.Key, options.Text(option.Key)));
        list.Add(new("seed", seed.ToString(CultureInfo.InvariantCulture)));
        list.Add(new("model dtype", model.Dtype.ToString()));
        list.Add(new("model config", Fingerprint(HfLlamaConfig.ToJson(model.Config, model.Dtype.ToString()))));
        return list;
    }

    /// <summary>A short SHA-256 of the names, sizes and modification times of a file, or of a folder's files (cheap).</summary>
    public static string FileFingerprint(string path)
    {
        var files = Directory.Exists(path) ? Directory.GetFiles(path).Order(StringComparer.Ordinal).ToArray()
            : File.Exists(path) ? [path] : [];
        var sb = new StringBuilder();
        foreach (var f in files)
        {
            var info = new FileInfo(f);
            if (info.Name.StartsWith('.')) continue;
            sb.Append(info.Name).Append(':').Append(info.Length).Append(':').Append(info.LastWriteTimeUtc.Ticks).Append('\n');
        }
        return Fingerprint(sb.ToString());
    }

    private static string Fingerprint(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16];

    /// <summary>Records the calibration windows' hash (fresh run) or checks it against the recorded one (resume).</summary>
    public void MatchCalibration(CalibrationTokens calibration)
    {
        ArgumentNullException.ThrowIfNull(calibration);
        var bytes = new byte[checked(calibration.Count * calibration.Length * sizeof(int))];
        for (int i = 0; i < calibration.Count; i++)
            Buffer.BlockCopy(calibration.Windows[i], 0, bytes, i * calibration.Length * sizeof(int), calibration.Length * sizeof(int));
        var hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        if (_calibration is null)
        {
            _calibration = hash;
            WriteRunFile();
        }
        else if (_calibration != hash)
            throw new MatqException($"cannot resume from {Folder}: the calibration windows differ from the checkpoint's (the calibration text or the tokenizer changed); rerun with the same data, or without --resume to start over");
    }

    /// <summary>Stores block <paramref name="block"/> (must be <see cref="BlocksDone"/>): its results and the state
    /// tensors (any device and dtype; raw bytes are kept) that reproduce its quantized forward.</summary>
    public void Commit(int block, IEnumerable<QuantizedLinearResult> results, IEnumerable<(string Name, Tensor Value)> state) =>
        Commit(block, results, state, codesInstalled: null);

    // codesInstalled: the results (by name) whose installed weight is their dequantized codes, restored from them
    private void Commit(int block, IEnumerable<QuantizedLinearResult> results, IEnumerable<(string Name, Tensor Value)> state,
        IReadOnlySet<string>? codesInstalled)
    {
        if (block != BlocksDone) throw new InvalidOperationException($"checkpoint: block {block} committed after {BlocksDone} finished blocks");
        var w = new SafetensorsWriter();
        w.Metadata["format"] = FormatValue;
        var layers = new JsonArray();
        int i = 0;
        foreach (var r in results)
        {
            var p = LayerPrefix + i++.ToString(CultureInfo.InvariantCulture);
            layers.Add(new JsonObject
            {
                ["name"] = r.Name, ["out"] = r.OutFeatures, ["in"] = r.InFeatures, ["group"] = r.GroupSize, ["perm"] = r.Perm is not null,
                ["report"] = JsonSerializer.SerializeToNode(r.Report, ReportJson),
            });
            if (codesInstalled?.Contains(r.Name) == true) layers[^1]!["installed"] = "codes";
            w.Add(p + ".codes", SafetensorsDtype.U8, [r.OutFeatures, r.InFeatures], r.Codes);
            w.Add(p + ".scales", SafetensorsDtype.F32, [r.OutFeatures, r.GroupCount], Bytes(r.Scales));
            w.Add(p + ".zeros", SafetensorsDtype.F32, [r.OutFeatures, r.GroupCount], Bytes(r.Zeros));
            if (r.Perm is not null) w.Add(p + ".perm", SafetensorsDtype.I32, [r.InFeatures], Bytes(r.Perm));
        }
        w.Metadata[MetaKey] = new JsonObject { ["block"] = block, ["layers"] = layers }.ToJsonString();
        // state tensors are streamed from their memory into the file in 4 MiB pieces: no managed copy of the block
        // (an 8B block's installed fp32 weights are 0.87 GB)
        var hosts = new List<Tensor>();
        // every intermediate (the detached alias, a device-to-host copy) belongs to this scope and is freed with it: left in
        // the caller's scope they would hold the block's weights (on the host and on the GPU) until the caller's scope ends
        using var scope = NewDisposeScope();
        try
        {
            foreach (var (name, value) in state)
            {
                var host = value.detach().cpu().contiguous();
                hosts.Add(host);
                w.AddStreamed(StatePrefix + name, StoredDtype(host.dtype, name), host.shape, () => Pieces(host));
            }
            w.Write(BlockPath(Folder, block));
        }
        finally
        {
            foreach (var h in hosts) h.Dispose();
        }
        BlocksDone++;
    }

    // a contiguous CPU tensor's bytes in pieces of at most 4 MiB, through one buffer
    private static IEnumerable<ReadOnlyMemory<byte>> Pieces(Tensor host)
    {
        using var flat = host.view(-1);
        long count = flat.numel(), per = Math.Max(1, (4L << 20) / host.ElementSize);
        var buffer = new byte[checked((int)(Math.Min(per, Math.Max(count, 1)) * host.ElementSize))];
        for (long at = 0; at < count; at += per)
        {
            int n = CopyPiece(flat, at, Math.Min(per, count - at), buffer);
            yield return buffer.AsMemory(0, n);
        }
    }

    private static int CopyPiece(Tensor flat, long at, long len, byte[] buffer)
    {
        using var part = flat.narrow(0, at, len);
        var bytes = part.bytes;
        bytes.CopyTo(buffer);
        return bytes.Length;
    }

    /// <summary><paramref name="committed"/> (block <paramref name="block"/>'s results as just committed, in order) with their
    /// codes dropped from memory and read back from the block's file when used.</summary>
    public IReadOnlyList<QuantizedLinearResult> Offload(int block, IReadOnlyList<QuantizedLinearResult> committed) =>
        committed.Select((r, i) => Offloaded(r, block, LayerPrefix + i.ToString(CultureInfo.InvariantCulture) + ".codes")).ToList();

    private QuantizedLinearResult Offloaded(QuantizedLinearResult r, int block, string tensor) =>
        r.WithOffloadedCodes(CodesReader(block, tensor), () => CodePieces(block, tensor));

    // the codes tensor of a block file in pieces of at most 4 MiB, through one buffer, the file open while they are read
    private IEnumerable<ReadOnlyMemory<byte>> CodePieces(int block, string tensor)
    {
        using var f = OpenBlock(block);
        var info = f.Get(tensor);
        var buffer = new byte[(int)Math.Min(Math.Max(info.ByteLength, 1), 4L << 20)];
        for (long at = 0; at < info.ByteLength; at += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, info.ByteLength - at);
            f.ReadRange(info, at, buffer.AsSpan(0, n));
            yield return buffer.AsMemory(0, n);
        }
    }

    private Func<byte[]> CodesReader(int block, string tensor) => () =>
    {
        using var f = OpenBlock(block);
        return f.ReadBytes(tensor);
    };

    /// <summary>The results stored for finished block <paramref name="block"/>, in the order they were committed.</summary>
    public IReadOnlyList<QuantizedLinearResult> Results(int block)
    {
        using var f = OpenBlock(block);
        var meta = JsonNode.Parse(f.Metadata[MetaKey])!;
        var list = new List<QuantizedLinearResult>();
        int i = 0;
        foreach (var l in meta["layers"]!.AsArray())
        {
            var p = LayerPrefix + i++.ToString(CultureInfo.InvariantCulture);
            var report = l!["report"].Deserialize<LayerReport>(ReportJson) ?? throw new MatqException($"{f.Path}: layer {p} has no report");
            var r = new QuantizedLinearResult((string)l["name"]!, (int)l["out"]!, (int)l["in"]!, (int)l["group"]!, f.ReadBytes(p + ".codes"),
                Floats(f.ReadBytes(p + ".scales")), Floats(f.ReadBytes(p + ".zeros")),
                (bool)l["perm"]! ? Ints(f.ReadBytes(p + ".perm")) : null, report);
            list.Add(Offloaded(r, block, p + ".codes"));
        }
        return list;
    }

    /// <summary>Copies every state tensor of block <paramref name="block"/> into <paramref name="target"/>(name), which
    /// must have the stored shape and dtype (the bytes are copied, so the values are bit-identical).</summary>
    public void Restore(int block, Func<string, Tensor> target)
    {
        using var f = OpenBlock(block);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();   // the host-to-device copies are freed here, not with the caller's scope
        foreach (var info in f.Tensors.Where(t => t.Name.StartsWith(StatePrefix, StringComparison.Ordinal)))
        {
            var name = info.Name[StatePrefix.Length..];
            var dest = target(name);
            if (!dest.shape.SequenceEqual(info.Shape) || StoredDtype(dest.dtype, name) != info.Dtype)
                throw new MatqException($"{f.Path}: '{name}' is {SafetensorsDtypes.ToName(info.Dtype)}{info.ShapeText}, the run needs {dest.dtype}[{string.Join(", ", dest.shape)}]; delete {Folder} and run without --resume");
            using var host = empty(info.Shape, dtype: dest.dtype);
            host.bytes = f.ReadBytes(info.Name);
            dest.copy_(host.to(dest.device));
        }
    }

    /// <summary>The state of a block whose weights were installed in the model: "&lt;module&gt;.weight" per result.
    /// A weight that equals its result's dequantized codes bit for bit (GPTQ, Athena, RTN-style installs) is not stored:
    /// <see cref="RestoreInstalled"/> dequantizes it again, which gives the same bits (the dequantization is one
    /// subtraction and one product per value, rounded the same on every device).</summary>
    public void CommitInstalled(int block, IReadOnlyList<QuantizedLinearResult> results, LlamaForCausalLM model)
    {
        var fromCodes = new HashSet<string>(StringComparer.Ordinal);
        var state = new List<(string, Tensor)>();
        foreach (var r in results)
        {
            var weight = Parameter(model, r.WeightName);
            if (IsDequantizedCodes(r, weight)) fromCodes.Add(r.Name);
            else state.Add((r.WeightName, weight));
        }
        Commit(block, results, state, fromCodes);
    }

    // row chunks of at most 2^24 values: the 128256-row head is compared and restored without a second fp32 copy of itself
    private const long CompareChunkValues = 1L << 24;

    private static bool IsDequantizedCodes(QuantizedLinearResult r, Tensor weight)
    {
        if (weight.shape.Length != 2 || weight.shape[0] != r.OutFeatures || weight.shape[1] != r.InFeatures) return false;
        using var noGrad = no_grad();
        bool same = true;
        r.ForEachRowChunk(weight.device, CompareChunkValues,
            (row, count, wHat) => same = SameBits(weight.detach().narrow(0, row, count), wHat.to(weight.dtype)));
        return same;
    }

    // bit for bit: equal values and equal signs (eq alone takes −0 for +0); a NaN fails, so such a weight is stored
    private static bool SameBits(Tensor a, Tensor b) => a.eq(b).logical_and(a.signbit().eq(b.signbit())).all().item<bool>();

    /// <summary>Installs the weights of finished block <paramref name="block"/> into <paramref name="model"/>: the stored
    /// ones byte for byte, the others dequantized again from their codes.</summary>
    public void RestoreInstalled(int block, LlamaForCausalLM model)
    {
        Restore(block, name => Parameter(model, name));
        var marked = InstalledFromCodes(block);
        if (marked.Count == 0) return;
        using var noGrad = no_grad();
        foreach (var r in Results(block).Where(r => marked.Contains(r.Name)))
        {
            using var scope = NewDisposeScope();
            var weight = Parameter(model, r.WeightName);
            if (weight.shape.Length != 2 || weight.shape[0] != r.OutFeatures || weight.shape[1] != r.InFeatures)
                throw new MatqException($"{BlockPath(Folder, block)}: '{r.WeightName}' is [{r.OutFeatures}, {r.InFeatures}], the run needs [{string.Join(", ", weight.shape)}]; delete {Folder} and run without --resume");
            r.ForEachRowChunk(weight.device, CompareChunkValues, (row, count, wHat) =>
            {
                weight.narrow(0, row, count).copy_(wHat.to(weight.dtype));
                return true;
            });
        }
    }

    private HashSet<string> InstalledFromCodes(int block)
    {
        using var f = OpenBlock(block);
        return JsonNode.Parse(f.Metadata[MetaKey])!["layers"]!.AsArray()
            .Where(l => (string?)l!["installed"] == "codes").Select(l => (string)l!["name"]!).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Deletes the folder (after the artifact was written; offloaded results cannot be read after).</summary>
    public void Delete()
    {
        if (Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
    }

    private static Tensor Parameter(LlamaForCausalLM model, string name) =>
        model.get_parameter(name) ?? throw new MatqException($"the checkpoint names '{name}', which this model does not have; run without --resume to start over");

    private SafetensorsFile OpenBlock(int block)
    {
        if (block < 0 || block >= BlocksDone) throw new ArgumentOutOfRangeException(nameof(block), block, $"{BlocksDone} blocks are finished");
        var f = SafetensorsFile.Open(BlockPath(Folder, block));
        if (!f.Metadata.TryGetValue("format", out var fmt) || (fmt != FormatValue && fmt != FormatV1) || !f.Metadata.ContainsKey(MetaKey))
        {
            f.Dispose();
            throw new MatqException($"{BlockPath(Folder, block)} is not a {FormatValue} block; delete {Folder} and run without --resume");
        }
        return f;
    }

    private void WriteRunFile()
    {
        var settings = new JsonArray(_settings.Select(kv => (JsonNode?)new JsonObject { ["key"] = kv.Key, ["value"] = kv.Value }).ToArray());
        var json = new JsonObject { ["format"] = FormatValue, ["settings"] = settings, ["calibration"] = _calibration }
            .ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(Folder, RunFile), json);
    }

    private static string BlockPath(string folder, int block) =>
        Path.Combine(folder, "block-" + block.ToString("D4", CultureInfo.InvariantCulture) + ".safetensors");

    private static int CountBlocks(string folder)
    {
        int k = 0;
        while (File.Exists(BlockPath(folder, k))) k++;
        return k;
    }

    private static SafetensorsDtype StoredDtype(ScalarType t, string name) => t switch
    {
        ScalarType.Float32 => SafetensorsDtype.F32,
        ScalarType.BFloat16 => SafetensorsDtype.BF16,
        ScalarType.Float16 => SafetensorsDtype.F16,
        ScalarType.Float64 => SafetensorsDtype.F64,
        ScalarType.Byte => SafetensorsDtype.U8,
        ScalarType.Int32 => SafetensorsDtype.I32,
        ScalarType.Int64 => SafetensorsDtype.I64,
        _ => throw new ArgumentException($"checkpoint state '{name}' has dtype {t}, which the checkpoint does not store"),
    };

    private static byte[] Bytes<T>(T[] values) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static float[] Floats(byte[] bytes) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    private static int[] Ints(byte[] bytes) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray();
}
