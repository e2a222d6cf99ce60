// Fashion-MNIST: fetched from the Debian package dataset-fashion-mnist (gzipped IDX under
// /usr/share/datasets/fashion-mnist) or --from DIR, stored as the four raw IDX files; loaded as [0,1] floats.
using System.IO.Compression;

namespace Matq.Data;

/// <summary>Copies (gunzipping *.gz) the four IDX files and checks their headers before they enter the cache.</summary>
public sealed class FashionMnistFetcher : DatasetFetcher
{
    public const string TrainImages = "train-images-idx3-ubyte";
    public const string TrainLabels = "train-labels-idx1-ubyte";
    public const string TestImages = "t10k-images-idx3-ubyte";
    public const string TestLabels = "t10k-labels-idx1-ubyte";
    public static IReadOnlyList<string> FileNames { get; } = [TrainImages, TrainLabels, TestImages, TestLabels];

    public override string Name => "fashion-mnist";
    public override string Description => "Fashion-MNIST 28×28 grey images, 10 classes (60k train, 10k test)";
    // The Debian package version the layout was checked against; upstream data is unchanged since 2017.
    public override string Version => "0.0~git20200523.55506a9-1";
    public override string Source => "debian:dataset-fashion-mnist";

    public override void Fetch(FetchContext context)
    {
        var dir = context.FromDir ?? context.Options.FashionMnistSystemDir;
        foreach (var name in FileNames)
        {
            var raw = Path.Combine(dir, name);
            var gz = raw + ".gz";
            var target = Path.Combine(context.OutputDir, name);
            if (File.Exists(raw))
            {
                context.Report($"fashion-mnist: copying {raw}");
                File.Copy(raw, target);
            }
            else if (File.Exists(gz))
            {
                context.Report($"fashion-mnist: unpacking {gz}");
                Gunzip(gz, target);
            }
            else
            {
                throw new MatqException(
                    $"Fashion-MNIST not found at {dir} (no {name} or {name}.gz): install it with `apt-get install dataset-fashion-mnist` or pass --from DIR");
            }
            // A bad file is rejected before the rename, so the cache never holds it.
            Idx.ReadHeader(target, name.Contains("images") ? Idx.ImagesMagic : Idx.LabelsMagic);
        }
    }

    static void Gunzip(string source, string target)
    {
        try
        {
            using var input = File.OpenRead(source);
            using var gz = new GZipStream(input, CompressionMode.Decompress);
            using var output = File.Create(target);
            gz.CopyTo(output);
        }
        catch (InvalidDataException e)
        {
            throw new MatqException($"{source} is not a valid gzip file ({e.Message}): reinstall dataset-fashion-mnist or pass --from DIR", e);
        }
    }
}

/// <summary>Images as floats in [0,1], row-major [Count, Rows, Cols]; labels 0..9 (see <see cref="FashionMnist.ClassNames"/>).</summary>
public sealed record ImageSet(int Count, int Rows, int Cols, float[] Images, byte[] Labels)
{
    /// <summary>Images start..start+count−1 as a new set (copies).</summary>
    public ImageSet Slice(int start, int count)
    {
        if (start < 0 || count < 1 || start + count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), $"slice [{start}, {start + count}) is outside the {Count} images");
        int pix = Rows * Cols;
        return new ImageSet(count, Rows, Cols, Images.AsSpan(start * pix, count * pix).ToArray(), Labels.AsSpan(start, count).ToArray());
    }
}

/// <summary>The canonical split: upstream train file (60,000 images) and t10k file (10,000 images).</summary>
public sealed class FashionMnist
{
    public const int Side = 28;
    public const int Classes = 10;
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    FashionMnist(ImageSet train, ImageSet test) { Train = train; Test = test; }

    public ImageSet Train { get; }
    public ImageSet Test { get; }

    /// <summary>Loads the four IDX files from a folder (the cache folder, or any folder of raw IDX files).</summary>
    public static FashionMnist Load(string dir) =>
        new(LoadSet(dir, FashionMnistFetcher.TrainImages, FashionMnistFetcher.TrainLabels),
            LoadSet(dir, FashionMnistFetcher.TestImages, FashionMnistFetcher.TestLabels));

    static ImageSet LoadSet(string dir, string imagesName, string labelsName)
    {
        var imagesPath = Path.Combine(dir, imagesName);
        var labelsPath = Path.Combine(dir, labelsName);
        var img = Idx.ReadImages(imagesPath);
        if (img.Rows != Side || img.Cols != Side)
            throw new MatqException($"IDX file {imagesPath} holds {img.Rows}×{img.Cols} images, Fashion-MNIST is {Side}×{Side}: pass the right file");
        var labels = Idx.ReadLabels(labelsPath);
        if (labels.Length != img.Count)
            throw new MatqException($"IDX file {labelsPath} has {labels.Length} labels for {img.Count} images in {imagesName}: fetch the dataset again");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= Classes)
                throw new MatqException($"IDX file {labelsPath} has label {labels[i]} at index {i}, expected 0..{Classes - 1}: fetch the dataset again");

        var images = new float[img.Pixels.Length];
        // Division, not a multiply by 1/255f: it gives the correctly rounded p/255, so 255 maps to exactly 1.
        for (int i = 0; i < images.Length; i++) images[i] = img.Pixels[i] / 255f;
        return new ImageSet(img.Count, img.Rows, img.Cols, images, labels);
    }
}
