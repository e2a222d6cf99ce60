// Misuse of every verb, as a hostile but realistic user would: each row is one command line that must end in exactly
// one "error:" line naming the problem (exit 2 for usage, 1 for everything else), no stack trace, no control
// characters, and nothing written. Then the regressions of the reliability review: --out that is (or lies in) the
// input, unwritable --out, an existing HF folder without --force, temps of a killed run, crafted names in messages,
// GGUF/ONNX given where safetensors is read, --group that no consumer runs, plan --avg-bits before any work.
using System.Security.Cryptography;

namespace Matq.Cli.Tests.Verbs;

/// <summary>A sandbox shared by the rows: a copy of tiny-llama (M), an int8 artifact of it (A), a plain file (F).</summary>
public sealed class ReliabilitySandbox : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("matq-cli-reliability-").FullName;
    public string Model => Path.Combine(Root, "M");
    public string Artifact => Path.Combine(Root, "a.matq");
    public string PlainFile => Path.Combine(Root, "plainfile");

    public ReliabilitySandbox()
    {
        Directory.CreateDirectory(Model);
        foreach (var f in Directory.GetFiles(CliRunner.Fixture("tiny-llama"))) File.Copy(f, Path.Combine(Model, Path.GetFileName(f)));
        File.WriteAllText(PlainFile, "not a model");
        var q = CliRunner.Run("quantize", "--model", Model, "--method", "rtn", "--bits", "8", "--group", "32", "--device", "cpu", "--out", Artifact);
        if (q.ExitCode != 0) throw new InvalidOperationException(q.Output);
    }

    public static string Cnn => Path.GetFullPath(CliRunner.Fixture("..", "..", "models", "cnn"));

    public string Expand(string arg) => arg.Replace("{CNN}", Cnn).Replace("{M}", Model).Replace("{A}", Artifact).Replace("{F}", PlainFile).Replace("{T}", Root);

    /// <summary>Every file and folder under Root with its size and content hash.</summary>
    public IReadOnlyList<string> Snapshot() => Directory.EnumerateFileSystemEntries(Root, "*", SearchOption.AllDirectories)
        .Select(p => Path.GetRelativePath(Root, p) + (File.Exists(p) ? " " + Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))) : "/"))
        .Order(StringComparer.Ordinal).ToList();

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

public sealed class ReliabilityTests(ReliabilitySandbox box) : IClassFixture<ReliabilitySandbox>
{
    // verb words ... | expected exit code | a fragment of the one error line
    public static TheoryData<string, int, string> Misuse => new()
    {
        { "nosuchverb", 2, "Unrecognized command or argument 'nosuchverb'" },
        { "data fetch nosuch", 1, "unknown dataset 'nosuch'" },
        { "data fetch sotu --bogus", 2, "Unrecognized command or argument '--bogus'" },
        { "data list --bogus", 2, "Unrecognized command or argument '--bogus'" },
        { "inspect", 2, "Required argument 'path' missing" },
        { "inspect {T}/missing.safetensors", 1, "no such file or folder" },
        { "inspect {F}", 1, "not safetensors" },
        { "train lm --preset nope --out {T}/t1", 1, "unknown preset 'nope'" },
        { "train lm --preset tiny --steps -5 --out {T}/t1", 1, "--steps = -5 is out of range" },
        { "train lm --preset tiny --out {F}", 1, "is a file: give a folder path" },
        { "train lm --preset tiny --out /proc/matq-t1", 1, "cannot write in /proc" },
        { "train lm --preset tiny --out {T}/t1 --device cuda", 1, "--device cuda: CUDA is not available" },
        { "train lm --preset tiny --out {M}", 1, "already holds a model: pass --force" },
        { "train cnn --arch vgg --out {T}/c1", 1, "--arch 'vgg' is not supported" },
        { "train cnn --epochs 0 --out {T}/c1", 1, "epochs = 0 is out of range" },
        { "train cnn --out /proc/matq-c1", 1, "cannot write in /proc" },
        { "quantize --model {M} --method nope --out {T}/q.matq", 1, "method 'nope' is not known" },
        { "quantize --model {M} --bits 9 --out {T}/q.matq", 1, "--bits '9' is not supported" },
        { "quantize --model {M} --bits x --out {T}/q.matq", 1, "--bits 'x' is not supported" },
        { "quantize --model {M} --group abc --out {T}/q.matq", 2, "Cannot parse argument 'abc' for option '--group'" },
        { "quantize --model {M} --group 7 --out {T}/q.matq", 1, "--group 7 is not supported" },
        { "quantize --model {M} --group 48 --out {T}/q.matq", 1, "--group 48 is not supported" },
        { "quantize --model {M} --group -1 --out {T}/q.matq", 1, "--group -1 is not supported" },
        { "quantize --model {T}/missing --out {T}/q.matq", 1, "does not exist" },
        { "quantize --model {M} --out {F}/q.matq", 1, "is a file, not a folder" },
        { "quantize --model {M} --out /proc/matq-x/q.matq", 1, "cannot write in /proc" },
        { "quantize --model {M} --out {T}/q.matq --device cuda", 1, "--device cuda: CUDA is not available" },
        { "quantize --model {M} --method gptq --calib-n 0 --out {T}/q.matq", 1, "--calib-n 0 is out of range" },
        { "quantize --model {M}/model.safetensors --out {M}/model.safetensors", 1, "is the input" },
        { "quantize --model {M} --out {M}/q.matq", 1, "lies inside the input" },
        { "quantize --model {A} --out {T}/b.matq", 1, "already a .matq artifact" },
        { "eval --model {T}/missing", 1, "does not exist" },
        { "eval --model {M} --context 0", 1, "--context 0 is out of range" },
        { "eval --model {A} --bits 9", 1, "--bits '9' is not supported" },
        { "eval --model {M} --device cuda", 1, "--device cuda: CUDA is not available" },
        { "generate --model {M}", 2, "Option '--prompt' is required" },
        { "generate --model {M} --prompt hi --max-tokens -1", 1, "--max-tokens -1 is out of range" },
        { "generate --model {A} --prompt hi --bits 0", 1, "--bits 0 is out of range" },
        { "generate --model {A} --prompt hi --engine warp", 1, "--engine warp is not known" },
        { "generate --model {A} --prompt hi --device cuda --engine torch", 1, "--device cuda: CUDA is not available" },
        { "serve --model {M} --port 70000", 1, "--port 70000 is out of range" },
        { "serve --model {M} --max-concurrency 0", 1, "--max-concurrency 0 is out of range" },
        { "serve --model {M} --group 7", 1, "--group 7 is not supported" },
        { "serve --model {T}/missing", 1, "does not exist" },
        { "quantize-cnn --model {T}/missing", 1, "is not a matq vision model folder" },
        { "quantize-cnn --model {M} --wbits 1", 1, "weight bits = 1 is out of range" },
        { "quantize-cnn --model {CNN} --sweep /proc/matq-sweep.md", 1, "cannot write in /proc" },
        { "quantize-cnn --model {CNN} --sweep {CNN}/README.md", 1, "lies inside the input" },
        { "quantize-cnn --model {CNN} --method maqd --sweep /proc/matq-sweep.md", 1, "cannot write in /proc" },
        { "quantize-cnn --model {CNN} --method maqd --bits 4", 1, "--bits" },
        { "quantize-cnn --model {CNN} --method ptq --mode cwpl", 1, "--mode applies to --method efqat, not to ptq" },
        { "quantize-cnn --model {M} --method maqd", 1, "needs a vision model folder written by `matq train cnn`" },
        { "quantize --model {CNN} --method efqat", 1, "`matq quantize-cnn" },
        { "bench matquant --model {M} --threads 0 --work {T}/w2", 1, "--threads 0 is out of range" },
        { "plan --model {A} --strategy nope --out {T}/p.json", 1, "--strategy 'nope' is not one of" },
        { "plan --model {A} --strategy uniform --bits 9 --out {T}/p.json", 1, "--bits 9 is out of range" },
        { "plan --model {A} --strategy budget --avg-bits 9 --out {T}/p.json", 1, "--avg-bits 9 is out of range" },
        { "plan --model {A} --strategy budget --avg-bits 0 --out {T}/p.json", 1, "--avg-bits 0 is out of range" },
        { "plan --model {A} --strategy uniform --bits 4 --out {A}", 1, "is the input" },
        { "plan --model {A} --strategy uniform --bits 4 --out /proc/matq-p.json", 1, "cannot write in /proc" },
        { "plan --model {T}/missing.matq --strategy uniform --bits 4 --out {T}/p.json", 1, "does not exist" },
        { "export --format xyz --model {A} --out {T}/x", 1, "--format xyz is not supported" },
        { "export --format gguf --model {A} --type q9 --out {T}/x.gguf", 1, "--type q9 is not supported" },
        { "export --format gguf --model {A} --out {A}", 1, "is the input" },
        { "export --format gguf --model {A} --out /proc/matq-x.gguf", 1, "cannot write in /proc" },
        { "export --format gguf --model {M}/model.safetensors --out {T}/x.gguf", 1, "not a .matq artifact" },
        { "export --format gguf --model {A} --embed-type q9 --out {T}/x.gguf", 1, "--type q9 is not supported" },
        { "export --format onnx --model {A} --bits 4 --embed-type f16 --out {T}/x.onnx", 1, "--embed-type is for --format gguf" },
        { "export --format onnx --model {A} --bits 3 --out {T}/x.onnx", 1, "--bits 3 is not supported" },
        { "export --format onnx --model {M} --out {M}/model.safetensors", 1, "lies inside the input" },
        { "export --format onnx --model {M} --out /proc/matq-x.onnx", 1, "cannot write in /proc" },
        { "export --format hf --model {A} --out {M}", 1, "already exists: pass --force" },
        { "export --format hf --model {A} --out {F}", 1, "is a file: give a folder path" },
        { "export --format hf --model {A} --out {T}", 1, "contains the input" },
        { "export --format hf --model {A} --out /proc/matq-hf", 1, "cannot write in /proc" },
        { "export --format gguf --model {A} --force --out {T}/x.gguf", 1, "--force is for --format hf" },
        { "demo --bogus", 2, "Unrecognized command or argument '--bogus'" },
        { "device --device cuda", 1, "--device cuda: CUDA is not available" },
        { "device --size 0", 1, "--size 0 is out of range" },
        { "bench kernels --shapes 12y --seconds 0.01", 1, "--shapes '12y' is not OUTxIN" },
        { "bench kernels --bits 12", 1, "--bits '12' is not supported" },
        { "bench ptq --model {T}/missing", 1, "does not exist" },
        { "bench ptq --model {M} --out {F}", 1, "is a file: give a folder" },
        { "bench generate --model {T}/missing", 1, "does not exist" },
        { "bench generate --model {A} --repeats 0", 1, "--repeats 0 must be at least 1" },
        { "bench quantize-layer --bits 1", 1, "bits = 1 is out of range" },
        { "bench quantize-layer --shapes x", 1, "--shapes 'x' is not OUTxIN" },
        { "bench matquant --model {M} --budgets abc --work {T}/w1", 1, "--budgets 'abc' is invalid" },
        { "bench matquant --model {M} --out /proc/matq-x.md", 1, "cannot write in /proc" },
        { "bench efqat --fractions 2", 1, "--fractions '2' is invalid" },
        { "bench efqat --arch vgg", 1, "--arch 'vgg' is not supported" },
        { "bench efqat-lm --model {M} --fractions 0", 1, "--fractions '0' is invalid" },
        { "bench efqat-lm --model {M} --work {F}", 1, "is a file: give a folder path" },
    };

    /// <summary>
    /// Rows made from the command tree itself, so a new verb or option is covered without editing this file: for every
    /// verb an unknown option, the verb with its required options missing, and every numeric option given "abc"
    /// (required options filled in, so the bad number is the only mistake).
    /// </summary>
    public static TheoryData<string, int, string> Generated()
    {
        var rows = new TheoryData<string, int, string>();
        var root = Program.BuildRoot(Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(TextWriter.Null) }));
        foreach (var (path, command) in Leaves(root, ""))
        {
            var required = command.Options.Where(o => o.Required).ToList();
            var arguments = command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0).ToList();
            if (required.Count > 0 || arguments.Count > 0) rows.Add(path, 2, "equired");   // "Required argument ..." / "Option ... is required"
            string args = string.Join(' ', command.Arguments.Select(a => a.Name == "path" ? "{A}" : "sotu"));
            rows.Add($"{path} {args} --no-such-option".Replace("  ", " ", StringComparison.Ordinal), 2, "Unrecognized command or argument '--no-such-option'");
            string fill = string.Join(' ', arguments.Select(a => a.Name == "path" ? "{A}" : "sotu")
                .Concat(required.SelectMany(o => new[] { o.Name, o.Name switch { "--model" => "{A}", "--prompt" => "x", "--format" => "gguf", _ => "{T}/generated-out" } })));
            foreach (var o in command.Options.Where(o => !o.Required && Numeric(o.ValueType)))
                rows.Add($"{path} {fill} {o.Name} abc".Replace("  ", " ", StringComparison.Ordinal), 2, $"Cannot parse argument 'abc' for option '{o.Name}'");
        }
        return rows;

        static bool Numeric(Type t) => (Nullable.GetUnderlyingType(t) ?? t) is var u && (u == typeof(int) || u == typeof(long) || u == typeof(double) || u == typeof(float));
        static IEnumerable<(string, System.CommandLine.Command)> Leaves(System.CommandLine.Command c, string prefix)
        {
            foreach (var sub in c.Subcommands)
            {
                string p = (prefix + " " + sub.Name).Trim();
                if (sub.Subcommands.Count == 0) yield return (p, sub);
                else foreach (var leaf in Leaves(sub, p)) yield return leaf;
            }
        }
    }

    [Theory]
    [MemberData(nameof(Generated))]
    public Task Generated_misuse_is_one_usage_line(string line, int exitCode, string fragment) =>
        Misuse_is_one_error_line_with_its_exit_code_and_writes_nothing(line, exitCode, fragment);

    [Theory]
    [MemberData(nameof(Misuse))]
    public async Task Misuse_is_one_error_line_with_its_exit_code_and_writes_nothing(string line, int exitCode, string fragment)
    {
        var before = box.Snapshot();
        var args = line.Split(' ').Select(box.Expand).ToArray();
        var task = Task.Run(() => CliRunner.Run(args));
        string outcome, detail = "";
        if (await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(120))) != task) outcome = "hang";
        else if (task.IsFaulted) (outcome, detail) = ("crash", task.Exception!.InnerException!.ToString());
        else
        {
            var run = await task;
            detail = run.Output;
            var errors = run.Lines.Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToList();
            outcome = run.Lines.Any(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal)) ? "crash"
                : !before.SequenceEqual(box.Snapshot()) ? "half-written"
                : run.ExitCode != exitCode ? "wrong exit"
                : errors.Count != 1 || !errors[0].Contains(fragment, StringComparison.Ordinal) || run.Output.Any(c => c < ' ' && c != '\n') ? "unclear error"
                : "clear error";
        }
        ReliabilityReport.Add("verb", line.Split(' ')[0] is "bench" or "train" or "data" ? string.Join(' ', line.Split(' ')[..2]) : line.Split(' ')[0], outcome);
        Assert.True(outcome == "clear error", $"{line}: {outcome}\n{detail}");
    }

    [Fact]
    public void Export_hf_replaces_an_existing_folder_only_with_force()
    {
        var folder = Path.Combine(box.Root, "hf-force");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "keep.txt"), "mine");
        var refused = CliRunner.Run("export", "--format", "hf", "--model", box.Artifact, "--bits", "4", "--out", folder);
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(folder, "keep.txt")));
        var forced = CliRunner.Run("export", "--format", "hf", "--model", box.Artifact, "--bits", "4", "--out", folder, "--force");
        Assert.True(forced.ExitCode == 0, forced.Output);
        Assert.Equal(["config.json", "model.safetensors"], Directory.GetFiles(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        // nothing beside it: no staging folder, no visible or hidden ".old"
        Assert.Equal(["hf-force"], Directory.GetFileSystemEntries(box.Root).Select(Path.GetFileName).Where(n => n!.Contains("hf-force", StringComparison.Ordinal)));
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public void Temps_left_by_a_killed_run_are_cleaned_by_the_next_write_of_the_same_target()
    {
        var dir = Directory.CreateTempSubdirectory("matq-cli-stale-").FullName;
        try
        {
            var outPath = Path.Combine(dir, "q.matq");
            int dead = DeadPid();
            // what kill -9 during a write leaves, in this version's names and in the previous one's
            File.WriteAllBytes(Path.Combine(dir, $".q.matq.{dead}-0badf00d.matq-tmp"), new byte[4096]);
            File.WriteAllBytes(Path.Combine(dir, ".q.matq.0badf00d.tmp"), new byte[4096]);
            Directory.CreateDirectory(Path.Combine(dir, ".q.tokenizer.tmp-0badf00d"));
            Directory.CreateDirectory(Path.Combine(dir, "q.tokenizer.old-0badf00d"));
            foreach (var p in Directory.GetFileSystemEntries(dir).Where(p => !p.Contains(".matq-tmp", StringComparison.Ordinal)))
                Directory.SetLastWriteTimeUtc(p, DateTime.UtcNow.AddHours(-3));
            File.Copy(Path.Combine(box.Model, "config.json"), Path.Combine(dir, "unrelated.json"));
            var run = CliRunner.Run("quantize", "--model", box.Model, "--method", "rtn", "--bits", "4", "--group", "32", "--device", "cpu", "--out", outPath);
            Assert.True(run.ExitCode == 0, run.Output);
            Assert.Equal(["q.matq", "unrelated.json"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Crafted_names_in_a_file_reach_the_terminal_escaped_and_bounded()
    {
        var dir = Directory.CreateTempSubdirectory("matq-cli-crafted-").FullName;
        try
        {
            // a safetensors header whose tensor name carries ESC (clear screen), BEL and NUL, and a 60,000-character name
            string evil = "\\u001b[2J\\u001b]0;pwned\\u0007x\\u0000y";
            foreach (var (name, file) in new[] { (evil, "esc.safetensors"), (new string('n', 60_000), "long.safetensors") })
            {
                var header = System.Text.Encoding.UTF8.GetBytes($"{{\"{name}\":{{\"dtype\":\"X99\",\"shape\":[1],\"data_offsets\":[0,4]}}}}");
                var path = Path.Combine(dir, file);
                File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, 0, 0, 0, 0]);
                foreach (var args in new[] { new[] { "inspect", path }, ["eval", "--model", path] })
                {
                    var run = CliRunner.Run(args);
                    Assert.Equal(1, run.ExitCode);
                    var error = Assert.Single(run.Lines, l => l.StartsWith("error:", StringComparison.Ordinal));
                    Assert.DoesNotContain(run.Output, c => c < ' ' && c != '\n');
                    Assert.InRange(error.Length, 1, Common.CliHost.MaxErrorChars + 100);
                    if (file == "esc.safetensors") Assert.Contains("\\x1B[2J", error, StringComparison.Ordinal);
                }
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Inspect_escapes_crafted_names_and_metadata_of_a_valid_file()
    {
        var path = Path.Combine(box.Root, "crafted-valid.safetensors");
        try
        {
            var header = System.Text.Encoding.UTF8.GetBytes(
                "{\"__metadata__\":{\"k\\u001b]0;t\\u0007\":\"v\\u001b[31m\"},\"w\\u001b[2J\\u202e\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
            File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, 0, 0, 0, 0]);
            var run = CliRunner.Run("inspect", path);
            Assert.True(run.ExitCode == 0, run.Output);
            Assert.DoesNotContain(run.Output, c => (c < ' ' && c != '\n') || c == '\u202e');
            Assert.Contains("w\\x1B[2J\\u202E", run.Output, StringComparison.Ordinal);
            Assert.Contains("v\\x1B[31m", run.Output, StringComparison.Ordinal);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Gguf_and_onnx_files_given_to_eval_generate_and_inspect_are_named()
    {
        var dir = Directory.CreateTempSubdirectory("matq-cli-foreign-").FullName;
        try
        {
            var gguf = Path.Combine(dir, "t.gguf");
            var onnx = Path.Combine(dir, "t.onnx");
            Assert.Equal(0, CliRunner.Run("export", "--format", "gguf", "--model", box.Artifact, "--type", "f16", "--out", gguf).ExitCode);
            Assert.Equal(0, CliRunner.Run("export", "--format", "onnx", "--model", box.Artifact, "--bits", "4", "--out", onnx).ExitCode);
            foreach (var (path, what) in new[] { (gguf, "is a GGUF file"), (onnx, "is an ONNX model") })
                foreach (var args in new[] { new[] { "eval", "--model", path }, ["generate", "--model", path, "--prompt", "x"], ["plan", "--model", path, "--strategy", "uniform", "--bits", "4", "--out", Path.Combine(dir, "p.json")] })
                {
                    var run = CliRunner.Run(args);
                    Assert.True(run.ExitCode == 1 && run.Lines.Count(l => l.StartsWith("error:", StringComparison.Ordinal)) == 1
                        && run.Output.Contains(what, StringComparison.Ordinal), $"{string.Join(' ', args)}:\n{run.Output}");
                }
            Assert.Contains("is an ONNX model", CliRunner.Run("inspect", onnx).Output, StringComparison.Ordinal);
            Assert.Contains("gguf.version", CliRunner.Run("inspect", gguf).Output, StringComparison.Ordinal);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Error_lines_escape_control_characters_and_are_cut()
    {
        Assert.Equal("a\\x1B[31mb\\x00c\\x0Ad\\u202Ee", Common.CliHost.OneLine("a\u001b[31mb\0c\nd\u202ee"));
        var cut = Common.CliHost.OneLine(new string('x', 5000));
        Assert.StartsWith(new string('x', Common.CliHost.MaxErrorChars), cut, StringComparison.Ordinal);
        Assert.EndsWith("… (4000 more characters)", cut, StringComparison.Ordinal);
    }

    private static int DeadPid()
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }
}

/// <summary>With MATQ_RELIABILITY_REPORT=FILE, each classified case appends "kind\tname\toutcome" to FILE (for
/// docs/results/reliability.md, composed by scripts/reliability-report.sh).</summary>
internal static class ReliabilityReport
{
    private static readonly object Gate = new();

    public static void Add(string kind, string name, string outcome)
    {
        if (Environment.GetEnvironmentVariable("MATQ_RELIABILITY_REPORT") is not { Length: > 0 } path) return;
        lock (Gate) File.AppendAllText(path, $"{kind}\t{name}\t{outcome}\n");
    }
}
