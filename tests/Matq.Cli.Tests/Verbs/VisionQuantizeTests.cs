// `matq quantize-cnn` on vision model folders (efqat, maqd) and `train cnn --norm`: each user mistake is one MatqException
// line with exit code 1 before any dataset is touched (the injected DataStore factory fails the test otherwise), `matq
// quantize` refuses vision folders, methods and options with a pointer to quantize-cnn, and a tiny MaQD run and sweep on
// synthetic Fashion-MNIST files complete (fold reported, markdown written).
using System.Buffers.Binary;
using Matq.Data;
using Matq.Models.Vision;

namespace Matq.Cli.Tests.Verbs;

public sealed class VisionQuantizeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("matq-vision-verbs-").FullName;

    private static (int Code, string Output) Run(Func<DataStore>? data, params string[] args)
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No,
        });
        console.Profile.Width = 240;
        data ??= () => throw new InvalidOperationException("the verb touched the dataset cache");
        var root = new RootCommand("test");
        var train = new Command("train", "train");
        train.Subcommands.Add(new TrainCnnVerb(console, data).Build());
        root.Subcommands.Add(train);
        root.Subcommands.Add(new QuantizeVerb(console, data).Build());
        root.Subcommands.Add(new VisionQuantizeVerb(console, data).Build());
        int code = CliHost.Run(root, args, console);
        return (code, writer.ToString());
    }

    private string Folder(string name, VisionNetConfig config)
    {
        var dir = Path.Combine(_dir, name);
        using var net = VisionNet.Create(config);
        VisionNetIO.Save(net, dir);
        return dir;
    }

    private string Resnet => Folder("resnet", new VisionNetConfig("resnet", [4, 8], 1));

    private static void AssertOneError(int code, string output, string expected)
    {
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains(expected, output);
        Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", output);
    }

    [Theory]
    [InlineData("--wstates", "4", "weight states = 4 is invalid")]
    [InlineData("--wstates", "1", "weight states = 1 is invalid")]
    [InlineData("--astates", "1", "activation states = 1 is out of range")]
    [InlineData("--surrogate", "sigmoid", "surrogate 'sigmoid' is not supported")]
    [InlineData("--width", "0", "surrogate width = 0 is out of range")]
    [InlineData("--norm", "none", "norm 'none' is not supported for resnet")]
    [InlineData("--freeze-lbn", "1", "freeze fraction = 1 is out of range")]
    [InlineData("--ends-wstates", "4", "end-layer weight states = 4 is invalid")]
    [InlineData("--clip-grad", "-1", "--clip-grad -1 is invalid")]
    [InlineData("--holdout", "0", "--holdout 0 is out of range")]
    [InlineData("--holdout", "59999", "--holdout 59999 is out of range")]
    public void MaqdRejectsInvalidSettings(string option, string value, string expected)
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", "maqd", option, value, "--limit-train", "16", "--epochs", "1");
        AssertOneError(code, output, expected);
    }

    [Fact]
    public void FoldOnANormFreeNetIsOneError()
    {
        var mlp = Folder("mlp", new VisionNetConfig("mlp", [8]));
        var (code, output) = Run(null, "quantize-cnn", "--model", mlp, "--method", "maqd", "--norm", "none", "--fold", "--limit-train", "16", "--epochs", "1");
        AssertOneError(code, output, "has no normalization layers to fold");
    }

    [Theory]
    [InlineData("--fraction", "1.5", "fraction = 1.5 is out of range")]
    [InlineData("--fraction", "1.01", "fraction = 1.01 is out of range")]
    [InlineData("--mode", "rows", "EfQAT mode 'rows' is not supported")]
    [InlineData("--abits", "9", "activation bits = 9 is out of range")]
    [InlineData("--bits", "1", "weight bits = 1 is out of range")]
    public void EfQatRejectsInvalidSettings(string option, string value, string expected)
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", "efqat", option, value, "--limit-train", "16");
        AssertOneError(code, output, expected);
    }

    [Fact]
    public void CudnnBenchmarkIsForCudaAndOnOrOff()
    {
        foreach (var args in new[] { new[] { "quantize-cnn", "--model", Resnet, "--method", "efqat" }, ["quantize-cnn", "--model", Resnet, "--method", "maqd"],
                     ["quantize-cnn", "--model", Resnet], ["train", "cnn", "--out", Path.Combine(_dir, "m")] })
        {
            var (code, output) = Run(null, [.. args, "--device", "cpu", "--cudnn-benchmark", "on", "--limit-train", "16"]);
            AssertOneError(code, output, "--cudnn-benchmark applies to --device cuda only");
            (code, output) = Run(null, [.. args, "--device", "cpu", "--cudnn-benchmark", "fast", "--limit-train", "16"]);
            AssertOneError(code, output, "--cudnn-benchmark 'fast' is invalid: use on or off");
        }
        Assert.False(Directory.Exists(Path.Combine(_dir, "m")));
    }

    [Fact]
    public void VisionMethodOnAnLmFolderSaysWhatItNeeds()
    {
        var lm = CliRunner.Fixture("tiny-llama");
        var (code, output) = Run(null, "quantize", "--model", lm, "--method", "maqd", "--limit-train", "16");
        AssertOneError(code, output, "--method maqd needs a vision model folder written by `matq train cnn`");
    }

    [Fact]
    public void LmMethodOnAVisionFolderPointsToTheVisionMethods()
    {
        var (code, output) = Run(null, "quantize", "--model", Resnet, "--method", "rtn", "--out", Path.Combine(_dir, "x.matq"));
        AssertOneError(code, output, "is a vision model (written by `matq train cnn`): quantize it with --method efqat or maqd");
    }

    [Fact]
    public void VisionOptionsAreRejectedOnTheLmPath()
    {
        var lm = CliRunner.Fixture("tiny-llama");
        var (code, output) = Run(null, "quantize", "--model", lm, "--method", "rtn", "--wstates", "3", "--out", Path.Combine(_dir, "x.matq"));
        AssertOneError(code, output, "--wstates applies to the vision methods");
    }

    [Fact]
    public void OptionsOfTheOtherMethodAreRejected()
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--fraction", "0.5", "--limit-train", "16");
        AssertOneError(code, output, "--fraction applies to --method efqat, not to maqd");
        (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", "efqat", "--wstates", "3", "--limit-train", "16");
        AssertOneError(code, output, "--wstates applies to --method maqd, not to efqat");
        (code, output) = Run(null, "quantize", "--model", Resnet, "--method", "maqd", "--group", "64", "--limit-train", "16");
        AssertOneError(code, output, "--group applies to LM quantization");
        (code, output) = Run(null, "quantize", "--model", Resnet, "--method", "maqd", "--embedding-bits", "8", "--limit-train", "16");
        AssertOneError(code, output, "--embedding-bits applies to LM quantization");
    }

    [Fact]
    public void UnknownMethodListsBothFamilies()
    {
        var (code, output) = Run(null, "quantize", "--model", Resnet, "--method", "magic");
        AssertOneError(code, output, "efqat, maqd (vision models)");
    }

    [Fact]
    public void BadSweepSettingsAreOneError()
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--sweep", Path.Combine(_dir, "t.md"), "--sweep-settings", "8:x", "--limit-train", "16");
        AssertOneError(code, output, "--sweep-settings item '8:x' is not B[:IMAGES[:EPOCHS]]");
    }

    [Fact]
    public void TrainCnnRejectsAnUnknownNorm()
    {
        var (code, output) = Run(null, "train", "cnn", "--norm", "group", "--out", Path.Combine(_dir, "m"), "--limit-train", "16");
        AssertOneError(code, output, "norm 'group' is not supported for resnet");
    }

    [Fact]
    public void TrainCnnTakesWidthsAndRejectsBadOnes()
    {
        var (code, output) = Run(null, "train", "cnn", "--widths", "8,0", "--out", Path.Combine(_dir, "m"), "--limit-train", "16");
        AssertOneError(code, output, "--widths '0' is invalid: give sizes in 1..4096");
        Assert.False(Directory.Exists(Path.Combine(_dir, "m")));

        var store = SyntheticFashionMnist();
        var outDir = Path.Combine(_dir, "wide");
        (code, output) = Run(() => store, "train", "cnn", "--widths", "4,6,8", "--epochs", "1", "--batch", "16", "--limit-train", "32", "--out", outDir, "--device", "cpu");
        Assert.True(code == 0, output);
        Assert.Equal([4, 6, 8], VisionNetIO.ReadConfig(outDir).Widths);
    }

    [Fact]
    public void TinyMaqdRunFoldsAndTheSweepWritesTheTable()
    {
        var store = SyntheticFashionMnist();
        var (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--wstates", "3", "--astates", "3",
            "--surrogate", "smooth", "--fold", "--limit-train", "32", "--batch", "16", "--epochs", "1", "--device", "cpu");
        Assert.True(code == 0, output);
        Assert.Contains("MaQD (3, 3) + LBN, first/last 255 B=16: test accuracy", output);
        Assert.Contains("folded", output);

        // the float reference on a held-out split (the last 8 of the 48 training images)
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--float", "--holdout", "8",
            "--limit-train", "32", "--batch", "16", "--epochs", "1", "--device", "cpu");
        Assert.True(code == 0, output);
        Assert.Contains("float + LBN B=16: held-out accuracy", output);
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--float", "--holdout", "48", "--limit-train", "32", "--device", "cpu");
        AssertOneError(code, output, "--holdout 48 leaves no training images of the 48");
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--float", "--wstates", "3", "--limit-train", "32", "--device", "cpu");
        AssertOneError(code, output, "--wstates sets the quantizers, which --float leaves out");

        // --init: a float LBN folder of the same architecture is the start; the BN folder of models/cnn is refused
        var lbnDir = Folder("lbn", new VisionNetConfig("resnet", [4, 8], 1, norm: "lbn"));
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--init", lbnDir, "--limit-train", "16", "--batch", "16", "--epochs", "1", "--device", "cpu");
        Assert.True(code == 0, output);
        Assert.Contains("MaQD (3, 15) + LBN, first/last 255, from lbn B=16: test accuracy", output);
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--init", Resnet, "--limit-train", "16", "--device", "cpu");
        AssertOneError(code, output, "holds a resnet [4, 8] with norm bn, but this run trains a resnet [4, 8] with norm lbn and standardized weights");

        var md = Path.Combine(_dir, "out", "table.md");
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "maqd", "--sweep", md,
            "--sweep-settings", "8:16:1,16:32:1", "--device", "cpu");
        Assert.True(code == 0, output);
        var text = File.ReadAllText(md);
        foreach (var row in new[] { "float + BN", "float + LBN", "MaQD (3, 15) + LBN, first/last 255", "MaQD (15, 15) + LBN, first/last 255", "MaQD (3, 3) + LBN, first/last 255",
                     "MaQD (255, 255) + LBN, all layers", "MaQD (3, 15) + LBN, all layers", "MaQD (15, 15) + LBN, all layers" })
            Assert.Contains($"| {row} |", text);
        Assert.Contains("gradient norm clipped at 2·sqrt(128/B)", text);
        Assert.Contains("lr 0.1·min(1, sqrt(B/128))", text);
        Assert.Contains("B=8 (16 images × 1 ep)", text);
        Assert.Contains("B=16 (32 images × 1 ep)", text);
        Assert.DoesNotContain("MaQD (3, 3) + LBN, all layers", text);
        Assert.Equal(2 + 8 + 2 + 16, text.Split('\n').Count(l => l.StartsWith('|')));
    }

    [Fact]
    public void QuantizePointsVisionFoldersMethodsAndOptionsToQuantizeCnn()
    {
        var (code, output) = Run(null, "quantize", "--model", Resnet, "--method", "maqd", "--wstates", "3");
        AssertOneError(code, output, "of `matq quantize-cnn --model");
        (code, output) = Run(null, "quantize", "--model", CliRunner.Fixture("tiny-llama"), "--method", "maqd");
        AssertOneError(code, output, "is a method of `matq quantize-cnn --model DIR --method maqd`");
        (code, output) = Run(null, "quantize", "--model", CliRunner.Fixture("tiny-llama"), "--method", "rtn", "--fold", "--out", Path.Combine(_dir, "x.matq"));
        AssertOneError(code, output, "--fold applies to the vision methods of `matq quantize-cnn`");
        Assert.False(File.Exists(Path.Combine(_dir, "x.matq")));
    }

    [Theory]
    [InlineData("ptq", "--mode", "cwpn", "--mode applies to --method efqat, not to ptq")]
    [InlineData("ptq", "--epochs", "2", "--epochs applies to --method qat or efqat or maqd, not to ptq")]
    [InlineData("qat", "--sweep", "t.md", "--sweep applies to --method efqat or maqd, not to qat")]
    [InlineData("qat", "--holdout", "10", "--holdout applies to --method maqd, not to qat")]
    [InlineData("maqd", "--abits", "4", "--abits applies to --method ptq or qat or efqat, not to maqd")]
    [InlineData("nope", "--seed", "1", "--method 'nope' is not supported: use ptq, qat, efqat, maqd")]
    [InlineData("efqat", "--threads", "0", "--threads 0 is out of range")]
    [InlineData("efqat", "--limit-test", "0", "limit-test = 0 is out of range")]
    public void QuantizeCnnRejectsOptionsOfOtherMethods(string method, string option, string value, string expected)
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--method", method, option, option == "--sweep" ? Path.Combine(_dir, value) : value);
        AssertOneError(code, output, expected);
    }

    [Fact]
    public void AnEfQatSweepRefusesTheSettingsItFixes()
    {
        var (code, output) = Run(null, "quantize-cnn", "--model", Resnet, "--sweep", Path.Combine(_dir, "t.md"), "--fraction", "0.5");
        AssertOneError(code, output, "--fraction does not apply to --sweep");
        Assert.False(File.Exists(Path.Combine(_dir, "t.md")));
    }

    [Fact]
    public void TinyPtqAndEfQatRunsReportAccuracy()
    {
        var store = SyntheticFashionMnist();
        var (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "ptq", "--wbits", "4", "--limit-test", "10", "--device", "cpu");
        Assert.True(code == 0, output);
        Assert.Contains("float model", output);
        Assert.Contains("PTQ (RTN, MSE clip) W4A8:", output);
        (code, output) = Run(() => store, "quantize-cnn", "--model", Resnet, "--method", "efqat", "--bits", "2", "--mode", "lwpn", "--fraction", "0.5",
            "--limit-train", "32", "--batch", "16", "--limit-test", "10", "--device", "cpu", "--threads", "1");
        Assert.True(code == 0, output);
        Assert.Contains("EfQAT LWPN", output);
        Assert.Contains("W2A8", output);
    }

    /// <summary>A DataStore whose fashion-mnist entry holds 48 train / 20 test random images in the IDX layout.</summary>
    private DataStore SyntheticFashionMnist()
    {
        var from = Path.Combine(_dir, "fm-src");
        Directory.CreateDirectory(from);
        var rng = new Random(3);
        void Write(string name, int count, bool images)
        {
            int header = images ? 16 : 8;
            var bytes = new byte[header + count * (images ? 784 : 1)];
            BinaryPrimitives.WriteInt32BigEndian(bytes, images ? 0x00000803 : 0x00000801);
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
            if (images) { BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), 28); BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), 28); }
            for (int i = header; i < bytes.Length; i++) bytes[i] = (byte)(images ? rng.Next(256) : rng.Next(10));
            File.WriteAllBytes(Path.Combine(from, name), bytes);
        }
        Write(FashionMnistFetcher.TrainImages, 48, true);
        Write(FashionMnistFetcher.TrainLabels, 48, false);
        Write(FashionMnistFetcher.TestImages, 20, true);
        Write(FashionMnistFetcher.TestLabels, 20, false);
        var store = new DataStore(Path.Combine(_dir, "cache"));
        store.Fetch("fashion-mnist", from);
        return store;
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
