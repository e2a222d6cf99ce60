// DataCache: root resolution, atomic install (a failed fill leaves nothing), version-aware detection, status.
using Matq.Data;

namespace Matq.Tests.Data;

public sealed class DataCacheTests
{
    [Fact]
    public void Root_prefers_MATQ_DATA_then_XDG_then_home()
    {
        Assert.Equal(Path.GetFullPath("/a/b"), DataCache.ResolveRoot("/a/b", "/x", "/home/u"));
        Assert.Equal(Path.Combine(Path.GetFullPath("/x"), "matq"), DataCache.ResolveRoot(null, "/x", "/home/u"));
        Assert.Equal(Path.Combine("/home/u", ".cache", "matq"), DataCache.ResolveRoot("", " ", "/home/u"));
        Assert.Throws<MatqException>(() => DataCache.ResolveRoot(null, null, ""));
    }

    [Fact]
    public void Install_renames_a_finished_folder_into_place_with_a_manifest()
    {
        using var tmp = new TempDir();
        var cache = new DataCache(tmp.Path);
        var dir = cache.Install("demo", "1.0", "test", (outDir, _) => File.WriteAllText(Path.Combine(outDir, "a.txt"), "hello"));

        Assert.Equal(cache.DatasetPath("demo"), dir);
        Assert.Equal("hello", File.ReadAllText(Path.Combine(dir, "a.txt")));
        Assert.True(File.Exists(Path.Combine(dir, DataCache.ManifestFile)));
        Assert.True(cache.IsCached("demo", "1.0"));
        Assert.False(cache.IsCached("demo", "2.0"));
        var status = cache.Describe("demo", "d");
        Assert.True(status.Cached);
        Assert.Equal(["a.txt"], status.Files);
        Assert.Equal(5, status.SizeBytes);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(tmp.Path, ".staging")));
    }

    [Fact]
    public void A_failing_fill_leaves_no_dataset_folder_and_keeps_an_older_copy()
    {
        using var tmp = new TempDir();
        var cache = new DataCache(tmp.Path);
        Assert.Throws<MatqException>(() => cache.Install("demo", "1.0", "test", (outDir, _) =>
        {
            File.WriteAllText(Path.Combine(outDir, "half.txt"), "partial");
            throw new MatqException("boom");
        }));
        DataFixtures.AssertNothingLeft(tmp.Path, "demo");
        Assert.False(cache.IsCached("demo", "1.0"));

        cache.Install("demo", "1.0", "test", (outDir, _) => File.WriteAllText(Path.Combine(outDir, "a.txt"), "v1"));
        Assert.Throws<MatqException>(() => cache.Install("demo", "2.0", "test", (_, _) => throw new MatqException("boom")));
        Assert.True(cache.IsCached("demo", "1.0"));
        Assert.Equal("v1", File.ReadAllText(Path.Combine(cache.DatasetPath("demo"), "a.txt")));
    }

    [Fact]
    public void Reinstall_replaces_the_old_copy_and_a_missing_file_means_not_cached()
    {
        using var tmp = new TempDir();
        var cache = new DataCache(tmp.Path);
        cache.Install("demo", "1.0", "test", (o, _) => File.WriteAllText(Path.Combine(o, "old.txt"), "x"));
        cache.Install("demo", "2.0", "test", (o, _) => File.WriteAllText(Path.Combine(o, "new.txt"), "y"));
        Assert.True(cache.IsCached("demo", "2.0"));
        Assert.False(File.Exists(Path.Combine(cache.DatasetPath("demo"), "old.txt")));

        File.Delete(Path.Combine(cache.DatasetPath("demo"), "new.txt"));
        Assert.False(cache.IsCached("demo", "2.0"));
        File.WriteAllText(Path.Combine(cache.DatasetPath("demo"), DataCache.ManifestFile), "not json");
        Assert.False(cache.Describe("demo", "d").Cached);

        cache.Remove("demo");
        Assert.False(Directory.Exists(cache.DatasetPath("demo")));
        cache.Remove("demo"); // absent is fine
    }

    [Fact]
    public void Status_lists_every_registered_dataset_and_marks_what_is_cached()
    {
        using var tmp = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteGpt2Tgz(from.Path);
        var store = new DataStore(tmp.Path);
        Assert.All(store.Status(), s => Assert.False(s.Cached));

        store.Fetch("gpt2-tokenizer", from.Path);
        var status = store.Status();
        Assert.Equal(["sotu", "moby-dick", "fashion-mnist", "gpt2-tokenizer"], status.Select(s => s.Name));
        var gpt2 = status.Single(s => s.Cached);
        Assert.Equal("gpt2-tokenizer", gpt2.Name);
        Assert.Equal(["encoder.json", "vocab.bpe"], gpt2.Files);
        Assert.Equal("1.1.4", gpt2.Version);
        Assert.True(gpt2.SizeBytes > 0);
    }

    [Fact]
    public void Unknown_dataset_names_the_valid_ones()
    {
        var e = Assert.Throws<MatqException>(() => DatasetRegistry.Get("mnist"));
        Assert.Equal("unknown dataset 'mnist': use one of sotu, moby-dick, fashion-mnist, gpt2-tokenizer, or all", e.Message);
        Assert.Equal(4, DatasetRegistry.Resolve("all").Count);
    }
}
