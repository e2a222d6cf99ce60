// Fashion-MNIST fetch (gzipped or raw IDX, --from or the system folder) and IDX validation errors.
using System.Buffers.Binary;
using Matq.Data;

namespace Matq.Tests.Data;

public sealed class FashionMnistTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Fetch_copies_or_gunzips_and_loads_normalized_images(bool gzip)
    {
        using var root = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteFashionMnist(from.Path, train: 3, test: 2, gzip);
        var store = new DataStore(root.Path);
        store.Fetch("fashion-mnist", from.Path);
        var data = store.FashionMnist();

        Assert.Equal((3, 28, 28), (data.Train.Count, data.Train.Rows, data.Train.Cols));
        Assert.Equal(2, data.Test.Count);
        Assert.Equal(3 * 784, data.Train.Images.Length);
        var pixels = DataFixtures.Pixels(3);
        for (int i = 0; i < pixels.Length; i++) Assert.Equal(pixels[i] / 255f, data.Train.Images[i]);
        Assert.Equal(0f, data.Train.Images[0]);          // pixel value 0
        Assert.Equal(1f, data.Train.Images[255]);        // pixel value 255
        Assert.Equal([0, 1, 2], data.Train.Labels);
        Assert.Equal([0, 1], data.Test.Labels);
        Assert.Equal(FashionMnistFetcher.FileNames.Order(), store.Status().Single(s => s.Name == "fashion-mnist").Files);
    }

    [Fact]
    public void Fetch_without_from_reads_the_system_folder()
    {
        using var root = new TempDir();
        using var system = new TempDir();
        DataFixtures.WriteFashionMnist(system.Path, 1, 1, gzip: true);
        var store = new DataStore(root.Path, new DataOptions { FashionMnistSystemDir = system.Path });
        Assert.Equal(1, store.FashionMnist().Train.Count);
    }

    [Fact]
    public void Missing_files_name_the_folder_and_the_package()
    {
        using var root = new TempDir();
        using var empty = new TempDir();
        var store = new DataStore(root.Path, new DataOptions { FashionMnistSystemDir = empty.Path });
        var e = Assert.Throws<MatqException>(() => store.FashionMnist());
        Assert.Equal($"Fashion-MNIST not found at {empty.Path} (no train-images-idx3-ubyte or train-images-idx3-ubyte.gz): " +
                     "install it with `apt-get install dataset-fashion-mnist` or pass --from DIR", e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "fashion-mnist");
    }

    [Fact]
    public void A_bad_file_in_from_fails_the_fetch_and_leaves_no_dataset()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteFashionMnist(from.Path, 2, 2, gzip: false);
        // Swap a labels file in as the test images: wrong magic.
        File.Copy(Path.Combine(from.Path, FashionMnistFetcher.TestLabels), Path.Combine(from.Path, FashionMnistFetcher.TestImages), overwrite: true);
        var e = Assert.Throws<MatqException>(() => new DataStore(root.Path).Fetch("fashion-mnist", from.Path));
        Assert.Contains("t10k-images-idx3-ubyte has magic 0x00000801, expected 0x00000803", e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "fashion-mnist");
    }

    [Fact]
    public void Idx_rejects_bad_magic_naming_the_file()
    {
        using var tmp = new TempDir();
        var path = Path.Combine(tmp.Path, "x-idx3-ubyte");
        Idx.Write(path, Idx.ImagesMagic, [1, 2, 2], new byte[4]);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteInt32BigEndian(bytes, 0x00000802);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<MatqException>(() => Idx.ReadImages(path));
        Assert.StartsWith($"IDX file {path} has magic 0x00000802, expected 0x00000803", e.Message);
    }

    [Theory]
    [InlineData(0, "no magic number")]
    [InlineData(10, "shorter than its 16-byte header")]
    [InlineData(16 + 11, "needs 28: it is truncated")]
    [InlineData(16 + 13, "needs 28: it has trailing data")]
    public void Idx_rejects_a_length_that_disagrees_with_the_header(int length, string expected)
    {
        using var tmp = new TempDir();
        var path = Path.Combine(tmp.Path, "x-idx3-ubyte");
        Idx.Write(path, Idx.ImagesMagic, [3, 2, 2], new byte[12]);
        var bytes = File.ReadAllBytes(path);
        var changed = new byte[length];
        Array.Copy(bytes, changed, Math.Min(length, bytes.Length));
        File.WriteAllBytes(path, changed);
        var e = Assert.Throws<MatqException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Idx_round_trips_labels_and_images()
    {
        using var tmp = new TempDir();
        var labels = Path.Combine(tmp.Path, "l");
        var images = Path.Combine(tmp.Path, "i");
        Idx.Write(labels, Idx.LabelsMagic, [3], new byte[] { 9, 0, 4 });
        Idx.Write(images, Idx.ImagesMagic, [2, 1, 3], new byte[] { 1, 2, 3, 4, 5, 6 });
        Assert.Equal([9, 0, 4], Idx.ReadLabels(labels));
        var img = Idx.ReadImages(images);
        Assert.Equal((2, 1, 3), (img.Count, img.Rows, img.Cols));
        Assert.Equal([1, 2, 3, 4, 5, 6], img.Pixels);
    }

    [Fact]
    public void Loading_checks_image_size_label_count_and_label_range()
    {
        using var tmp = new TempDir();
        DataFixtures.WriteFashionMnist(tmp.Path, 2, 2, gzip: false);
        Idx.Write(Path.Combine(tmp.Path, FashionMnistFetcher.TestLabels), Idx.LabelsMagic, [1], new byte[] { 0 });
        var e = Assert.Throws<MatqException>(() => FashionMnist.Load(tmp.Path));
        Assert.Contains("has 1 labels for 2 images", e.Message);

        Idx.Write(Path.Combine(tmp.Path, FashionMnistFetcher.TestLabels), Idx.LabelsMagic, [2], new byte[] { 0, 10 });
        e = Assert.Throws<MatqException>(() => FashionMnist.Load(tmp.Path));
        Assert.Contains("has label 10 at index 1", e.Message);

        Idx.Write(Path.Combine(tmp.Path, FashionMnistFetcher.TrainImages), Idx.ImagesMagic, [2, 4, 4], new byte[32]);
        e = Assert.Throws<MatqException>(() => FashionMnist.Load(tmp.Path));
        Assert.Contains("holds 4×4 images", e.Message);
    }
}
