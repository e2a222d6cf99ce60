// Options named and described the same way on every verb (--model, --out, --bits, --group, --data, --device, --cudnn-benchmark, --seed).
using TorchSharp;

namespace Matq.Cli.Common;

public static class CommonOptions
{
    public static Option<string> Model(bool required = true) => new("--model")
    {
        Description = "An HF checkpoint folder, a .safetensors file or a .matq artifact",
        Required = required,
        HelpName = "PATH",
    };

    public static Option<string> Out(bool required = true) => new("--out")
    {
        Description = "Where to write the result (written atomically; an existing file is replaced only on success)",
        Required = required,
        HelpName = "PATH",
    };

    public static Option<string> Bits(string defaultValue) => new("--bits")
    {
        Description = "Bit-width(s), comma-separated, each in 1..8 (e.g. 8,4,3,2)",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "B[,B...]",
    };

    public static Option<int> Group(int defaultValue) => new("--group")
    {
        Description = "Quantization group size along the input dimension; 0 = per output channel",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "G",
    };

    public static Option<string> Data(string defaultValue) => new("--data")
    {
        Description = "Dataset name (sotu-train, sotu-validation, sotu-test, moby-dick) or a UTF-8 text file",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "NAME|FILE",
    };

    public static Option<string?> Tokenizer() => new("--tokenizer")
    {
        Description = "A folder with tokenizer files (tokenizer.json, or encoder.json + vocab.bpe), for a model that has none beside it",
        HelpName = "DIR",
    };

    /// <summary>--bits R of the verbs that serve one precision of a .matq (generate, logits).</summary>
    public static Option<int?> ServeBits() => new("--bits")
    {
        Description = "For a .matq: serve at R bits, 1..master; default the master bits",
        HelpName = "R",
    };

    /// <summary>--plan FILE: a per-layer bits plan (as `matq plan` writes) for a .matq.</summary>
    public static Option<string?> Plan() => new("--plan")
    {
        Description = "For a .matq: per-layer bits JSON {\"default\": 4, \"layers\": {\"model.layers.0.mlp.down_proj\": 8}}",
        HelpName = "FILE",
    };

    /// <summary>--extra-precision for a .matq; <paramref name="note"/> (e.g. "; torch engine") ends the description's parenthesis.</summary>
    public static Option<bool> ExtraPrecision(string note = "") => new("--extra-precision")
    {
        Description = $"For a .matq: keep the rounding overflow bucket 2^r (a few weights take an extra bit{note})",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "cpu, cuda or auto (cuda needs MATQ_TORCH_LIB=/path/to/torch/lib of a CUDA PyTorch install)",
        DefaultValueFactory = _ => "auto",
        HelpName = "cpu|cuda|auto",
    };

    public static Option<string> CudnnBenchmark() => new("--cudnn-benchmark")
    {
        Description = "CUDA: let cuDNN time its convolution algorithms once per shape and keep the fastest (PyTorch's cudnn.benchmark): faster convolutions once timed, but every new input shape is timed first, so short runs can get slower, and results are not bit-reproducible run to run; libtorch's default is off",
        DefaultValueFactory = _ => "off",
        HelpName = "on|off",
    };

    public static Option<int> Seed(int defaultValue = 1234) => new("--seed")
    {
        Description = "Random seed; the same seed gives the same result",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "N",
    };

    /// <summary>Parses --widths "64,128,256" (vision stage channels or hidden sizes), each in 1..4096.</summary>
    public static int[] ParseWidths(string text) =>
        text.Split(',').Select(w => int.TryParse(w, out int v) && v >= 1 && v <= 4096 ? v
            : throw new MatqException($"--widths '{w}' is invalid: give sizes in 1..4096, e.g. 64,128,256")).ToArray();

    /// <summary>
    /// Checks a language-model --group against what every consumer of the artifact supports: the packed runtime
    /// (generate, serve, plan), the GGUF and ONNX exporters all need per-channel (0) or groups of a multiple of 32.
    /// </summary>
    public static int CheckGroup(int group, string option = "--group")
    {
        if (group == 0 || (group > 0 && group % 32 == 0)) return group;
        throw new MatqException($"{option} {group} is not supported: use 0 (per output channel) or a multiple of 32 (32, 64, 128, ...), " +
                                "which generate, serve and the GGUF/ONNX exports all run");
    }

    /// <summary>Parses "8,4,2" into bit-widths, each validated to 1..8.</summary>
    public static int[] ParseBits(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new MatqException("--bits is empty: give one or more bit-widths in 1..8, e.g. --bits 4 or --bits 8,4,2");
        var bits = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], out bits[i]) || bits[i] < 1 || bits[i] > 8)
                throw new MatqException($"--bits '{parts[i]}' is not supported: bit-widths must be integers in 1..8");
        }
        return bits;
    }
}
