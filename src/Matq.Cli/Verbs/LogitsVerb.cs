// `matq logits`: the logits of given token ids for any model — an HF folder, a .safetensors file or a .matq artifact at
// --bits r / --plan — through the torch engine (TorchSharp forward) or the packed engine (r-bit CPU kernels), written as
// safetensors in the layout transformers users save (input_ids int64 [B, T], logits f32 [B, T, V]) and, with --compare
// FILE (such a file, e.g. logits saved from transformers), checked against it: max |Δ| per row and overall.
// It is how a user checks parity with transformers, and how matq's family parity is measured.
using System.Globalization;
using Matq.Formats.Safetensors;
using static TorchSharp.torch;

namespace Matq.Cli.Verbs;

public sealed class LogitsVerb(IAnsiConsole console) : Verb<LogitsSettings>(console, "logits",
    "Write the logits of token ids (safetensors: input_ids, logits) and compare them with a reference such as transformers' output",
    "matq logits --model tests/fixtures/families/tiny-gemma2 --compare tests/fixtures/families/tiny-gemma2/expected.safetensors",
    "matq logits --model models/tiny --text \"Fellow citizens\" --out tiny-logits.safetensors",
    "matq logits --model out/tiny8.matq --bits 4 --engine packed --ids 70,101,108,108,111 --out l.safetensors")
{
    private readonly Option<string> _model = CommonOptions.Model();
    private readonly Option<string?> _ids = new("--ids") { Description = "Token ids, comma-separated; rows of a batch separated by ';' (all rows the same length)", HelpName = "I,I,...[;I,I,...]" };
    private readonly Option<string?> _text = new("--text") { Description = "Text to tokenize with the model's tokenizer (or --tokenizer)", HelpName = "TEXT" };
    private readonly Option<string?> _tokenizer = CommonOptions.Tokenizer();
    private readonly Option<string?> _compare = new("--compare") { Description = "A safetensors file with input_ids [B, T] and logits [B, T, V] (e.g. saved from transformers): its ids are used when --ids/--text are not given, and max |Δlogit| is reported", HelpName = "FILE" };
    private readonly Option<string?> _out = new("--out") { Description = "Write input_ids and logits here as safetensors (atomically)", HelpName = "FILE" };
    private readonly Option<int?> _bits = CommonOptions.ServeBits();
    private readonly Option<string?> _plan = CommonOptions.Plan();
    private readonly Option<string> _engine = new("--engine") { Description = "torch (default; TorchSharp forward, any model) or packed (a .matq on the r-bit CPU kernels, fp32 activations and head)", DefaultValueFactory = _ => "torch", HelpName = "torch|packed" };
    private readonly Option<string> _device = CommonOptions.Device();

    protected override IEnumerable<Option> Options => [_model, _ids, _text, _tokenizer, _compare, _out, _bits, _plan, _engine, _device];

    protected override LogitsSettings Read(ParseResult r) => new(r.GetValue(_model)!, r.GetValue(_ids), r.GetValue(_text), r.GetValue(_tokenizer), r.GetValue(_compare),
        r.GetValue(_out), r.GetValue(_bits), r.GetValue(_plan), r.GetValue(_engine)!.Trim().ToLowerInvariant(), r.GetValue(_device)!);

    protected override int Run(LogitsSettings s)
    {
        var (path, text, compare, outPath, engine) = (s.Model, s.Text, s.Compare, s.Out, s.Engine);
        long[,]? given = s.Ids is null ? null : ParseIds(s.Ids);
        var (bits, plan) = new ServingRequest(s.Bits, s.Plan).Resolve();

        (long[,]? refIds, float[]? refLogits, long vocabRef) = compare is null ? (null, null, 0) : ReadReference(compare);
        long[,] ids = given is not null ? given
            : text is not null ? new long[1, 0]   // filled after the model (and so its tokenizer) is known
            : refIds!;

        float[] logits;
        long vocab;
        if (engine == "packed")
        {
            if (!ArtifactSource.IsArtifactFile(path)) throw new MatqException($"--engine packed serves .matq artifacts; {path} is a float model (use --engine torch)");
            if (!s.Device.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase) && !s.Device.Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase))
                throw new MatqException("--engine packed runs on the CPU; drop --device or use --engine torch");
            var model = PackedLlamaModel.Load(path, new PackedModelOptions { Bits = bits, Plan = plan, HeadBits = null });
            if (text is not null) ids = Tokenize(text, s.Tokenizer ?? ArtifactSource.ArtifactTokenizer(path, model.Metadata).Folder, path);
            vocab = model.Config.VocabSize;
            CheckIds(ids, vocab);
            var session = new PackedLlamaSession(model, contextLength: Math.Max(ids.GetLength(1), 1), threads: -1, activations: PackedActivations.Fp32);
            logits = new float[ids.GetLength(0) * ids.GetLength(1) * vocab];
            for (int b = 0; b < ids.GetLength(0); b++)
            {
                session.Reset();
                var row = Enumerable.Range(0, ids.GetLength(1)).Select(t => (int)ids[b, t]).ToArray();
                session.Forward(row, logits.AsSpan((int)(b * row.Length * vocab), (int)(row.Length * vocab)), allLogits: true);
            }
        }
        else
        {
            var device = TorchRuntime.Configure(s.Device).Device;
            using var opened = ModelSource.Open(path, bits, device, plan: plan);
            if (text is not null) ids = Tokenize(text, s.Tokenizer ?? opened.TokenizerFolder, path);
            vocab = opened.Model.Config.VocabSize;
            CheckIds(ids, vocab);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var flat = new long[ids.Length];
            Buffer.BlockCopy(ids, 0, flat, 0, flat.Length * sizeof(long));
            var output = opened.Model.call(tensor(flat, [ids.GetLength(0), ids.GetLength(1)]).to(device));
            logits = output.to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        }

        int rows = ids.GetLength(0), len = ids.GetLength(1);
        if (outPath is not null)
        {
            var w = new SafetensorsWriter();
            var idBytes = new byte[ids.Length * sizeof(long)];
            Buffer.BlockCopy(ids, 0, idBytes, 0, idBytes.Length);
            var logitBytes = new byte[logits.Length * sizeof(float)];
            Buffer.BlockCopy(logits, 0, logitBytes, 0, logitBytes.Length);
            w.Add("input_ids", SafetensorsDtype.I64, [rows, len], idBytes);
            w.Add("logits", SafetensorsDtype.F32, [rows, len, vocab], logitBytes);
            w.Metadata["matq.model"] = Path.GetFileName(Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar));
            w.Metadata["matq.engine"] = engine;
            w.Write(outPath);
            Console.MarkupLine(Markup.Escape($"wrote {outPath}: input_ids [{rows}, {len}], logits [{rows}, {len}, {vocab}] ({engine} engine)"));
        }
        if (compare is not null)
        {
            if (!SameIds(ids, refIds!)) throw new MatqException($"--compare {compare}: its input_ids differ from the ids given; drop --ids/--text to use the file's");
            if (vocabRef != vocab) throw new MatqException($"--compare {compare}: its logits have {vocabRef} entries per token, the model {vocab}");
            var table = new Table().AddColumns("row", "tokens", "max |Δlogit|", "mean |Δlogit|", "max |logit| (reference)");
            double all = 0;
            for (int b = 0; b < rows; b++)
            {
                double max = 0, sum = 0, mag = 0;
                long n = len * vocab, o = b * n;
                for (long i = 0; i < n; i++)
                {
                    double d = Math.Abs(logits[o + i] - refLogits![o + i]);
                    max = Math.Max(max, d); sum += d; mag = Math.Max(mag, Math.Abs(refLogits[o + i]));
                }
                all = Math.Max(all, max);
                table.AddRow(b.ToString(CultureInfo.InvariantCulture), len.ToString(CultureInfo.InvariantCulture), max.ToString("E2", CultureInfo.InvariantCulture),
                    (sum / n).ToString("E2", CultureInfo.InvariantCulture), mag.ToString("F3", CultureInfo.InvariantCulture));
            }
            Console.Write(table);
            Console.MarkupLine(Markup.Escape($"max |Δlogit| {all.ToString("E2", CultureInfo.InvariantCulture)} against {compare} ({engine} engine)"));
        }
        return 0;
    }

    internal static long[,] ParseIds(string text)
    {
        var rows = text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => r.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v
                    : throw new MatqException($"--ids '{SafeText.Escape(s, 40)}' is not a token id: give non-negative integers, e.g. --ids 1,15,27")).ToArray())
            .ToArray();
        if (rows.Length == 0 || rows[0].Length == 0) throw new MatqException("--ids is empty: give token ids, e.g. --ids 1,15,27");
        if (rows.Any(r => r.Length != rows[0].Length)) throw new MatqException("--ids: every row (separated by ';') must hold the same number of ids");
        var ids = new long[rows.Length, rows[0].Length];
        for (int b = 0; b < rows.Length; b++) for (int t = 0; t < rows[b].Length; t++) ids[b, t] = rows[b][t];
        return ids;
    }

    private static long[,] Tokenize(string text, string? tokenizerFolder, string model)
    {
        if (tokenizerFolder is null) throw new MatqException($"--text needs a tokenizer: {model} has none beside it; give --tokenizer DIR or --ids");
        var encoded = TextTokenizer.Load(tokenizerFolder).Encode(text);
        if (encoded.Length == 0) throw new MatqException("--text tokenizes to no tokens; give some text");
        var ids = new long[1, encoded.Length];
        for (int t = 0; t < encoded.Length; t++) ids[0, t] = encoded[t];
        return ids;
    }

    private static void CheckIds(long[,] ids, long vocab)
    {
        foreach (var id in ids)
            if (id < 0 || id >= vocab) throw new MatqException($"token id {id} is out of range: the model's vocabulary holds 0..{vocab - 1}");
    }

    private static bool SameIds(long[,] a, long[,] b) =>
        a.GetLength(0) == b.GetLength(0) && a.GetLength(1) == b.GetLength(1) && a.Cast<long>().SequenceEqual(b.Cast<long>());

    // input_ids [B, T] (int64 or int32) and logits [B, T, V] (f32) from a reference file
    private static (long[,], float[], long) ReadReference(string path)
    {
        using var f = SafetensorsFile.Open(path);
        if (!f.Contains("input_ids") || !f.Contains("logits"))
            throw new MatqException($"--compare {path}: needs tensors input_ids [B, T] and logits [B, T, V]");
        var idInfo = f.Get("input_ids");
        var logitInfo = f.Get("logits");
        if (idInfo.Shape.Length != 2 || logitInfo.Shape.Length != 3 || logitInfo.Shape[0] != idInfo.Shape[0] || logitInfo.Shape[1] != idInfo.Shape[1])
            throw new MatqException($"--compare {path}: input_ids {idInfo.ShapeText} and logits {logitInfo.ShapeText} do not fit [B, T] and [B, T, V]");
        if (logitInfo.Dtype != SafetensorsDtype.F32) throw new MatqException($"--compare {path}: logits must be F32");
        var raw = f.ReadBytes("input_ids");
        var ids = new long[idInfo.Shape[0], idInfo.Shape[1]];
        switch (idInfo.Dtype)
        {
            case SafetensorsDtype.I64: Buffer.BlockCopy(raw, 0, ids, 0, raw.Length); break;
            case SafetensorsDtype.I32:
                for (int i = 0; i < raw.Length / 4; i++) ids[i / ids.GetLength(1), i % ids.GetLength(1)] = BitConverter.ToInt32(raw, i * 4);
                break;
            default: throw new MatqException($"--compare {path}: input_ids must be I64 or I32");
        }
        return (ids, f.ReadFloat32("logits"), logitInfo.Shape[2]);
    }
}

/// <summary>What `logits` was asked: the option values as typed (--engine trimmed, lower-cased); <see cref="Validate"/> checks which
/// tokens are given, --ids, --out/--compare, --model, --engine, --bits/--plan and --device (one line per mistake) before any load.</summary>
public sealed record LogitsSettings(string Model, string? Ids, string? Text, string? Tokenizer, string? Compare, string? Out, int? Bits, string? Plan,
    string Engine, string Device) : IVerbSettings
{
    public void Validate()
    {
        if ((Ids is null ? 0 : 1) + (Text is null ? 0 : 1) > 1) throw new MatqException("give one of --ids and --text");
        if (Ids is null && Text is null && Compare is null) throw new MatqException("give the tokens: --ids 1,2,3, --text \"...\", or --compare FILE (its input_ids)");
        if (Ids is not null) LogitsVerb.ParseIds(Ids);
        if (Out is null && Compare is null) throw new MatqException("give --out FILE to write the logits, --compare FILE to check them, or both");
        if (!Directory.Exists(Model) && !File.Exists(Model)) throw new MatqException($"--model {Model} does not exist");
        if (Compare is not null && !File.Exists(Compare)) throw new MatqException($"--compare {Compare} does not exist");
        if (Out is not null) OutputPaths.CheckFile(Out, "--out", Model, Compare);
        if (Engine is not ("torch" or "packed")) throw new MatqException($"--engine {Engine} is not known: use torch or packed");
        new ServingRequest(Bits, Plan).Resolve();
        if (Engine == "torch") TorchRuntime.Check(Device);   // the packed engine answers any --device but cpu/auto itself
    }
}
